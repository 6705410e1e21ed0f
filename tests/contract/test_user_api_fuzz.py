"""The Mini App's user API against its committed document (spec/user-api.yaml): every
schemathesis check on valid and invalid data, with a seeded user's valid initData, with initData
signed by another bot, and with none. See tests/contract/api_fuzz.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.contract.api_fuzz import ApiContract, load_api, serving_api
from tests.contract.harness import Backend, body_failed, examples_per_operation, own_case

EXAMPLES = examples_per_operation(40)
UNAUTHENTICATED_EXAMPLES = max(EXAMPLES // 4, 5)

user_api = load_api("user-api", max_examples=EXAMPLES)
wrong_initdata = load_api("user-api", credentials="wrong", max_examples=UNAUTHENTICATED_EXAMPLES)
no_initdata = load_api("user-api", credentials="none", max_examples=UNAUTHENTICATED_EXAMPLES)

one_backend_per_operation = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
sqlite_only = pytest.mark.parametrize("db_kind", ["sqlite"])


def _serve(
    contract: ApiContract, request: pytest.FixtureRequest, db_kind: str, tmp_path: Path
) -> Iterator[Backend]:
    with serving_api(contract.api, db_kind, tmp_path) as backend, contract.serving(backend):
        yield backend
        if body_failed(request):
            return
        if contract.credentials == "valid":
            # Valid cases reached the code that reads and stores, not only the refusals. An
            # operation added later may need rows to succeed on: seed them in api_fuzz.py.
            unreached = contract.operations_without_success()
            assert unreached == [], f"never answered 2xx: {unreached}; {contract.answers}"
        else:
            assert {status for _op, status in contract.answers} <= {401, 405}, contract.answers


@pytest.fixture
def user_backend(request: pytest.FixtureRequest, db_kind: str, tmp_path: Path) -> Iterator[Backend]:
    yield from _serve(user_api, request, db_kind, tmp_path)


@pytest.fixture
def wrong_initdata_backend(
    request: pytest.FixtureRequest, db_kind: str, tmp_path: Path
) -> Iterator[Backend]:
    yield from _serve(wrong_initdata, request, db_kind, tmp_path)


@pytest.fixture
def no_initdata_backend(
    request: pytest.FixtureRequest, db_kind: str, tmp_path: Path
) -> Iterator[Backend]:
    yield from _serve(no_initdata, request, db_kind, tmp_path)


def _assert_turned_away(response: Any) -> None:
    if response.status_code == 405:
        return
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == ["tma"]
    assert response.json()["type"] == "urn:tma-crm:problem:unauthorized"


@user_api.schema.parametrize()
@one_backend_per_operation
def test_user_api_serves_its_document(case: Any, user_backend: Backend) -> None:
    """Every check passes with the seeded user's initData, valid or invalid data."""
    own_case(case).call_and_validate()


@wrong_initdata.schema.parametrize()
@one_backend_per_operation
@sqlite_only
def test_user_api_refuses_initdata_of_another_bot(
    case: Any, wrong_initdata_backend: Backend
) -> None:
    """initData signed with another bot's token: 401 whatever the request."""
    _assert_turned_away(case.call_and_validate())


@no_initdata.schema.parametrize()
@one_backend_per_operation
@sqlite_only
def test_user_api_refuses_a_request_without_initdata(
    case: Any, no_initdata_backend: Backend
) -> None:
    """No Authorization header: 401 whatever the request."""
    _assert_turned_away(case.call_and_validate())
