"""Each backend against the spec file, operation by operation: every schemathesis check on valid
and invalid data, with the backend's token, with a wrong token and with none.

With the right token, valid requests are accepted (never 401) and really stored: the generated
ids mostly name seeded tickets, and each run must show messages stored and statuses changed.
Without a valid token, every request is answered 401 and nothing is stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.contract import sabotage
from tests.contract.harness import (
    TOKENS,
    Backend,
    Contract,
    body_failed,
    examples_per_operation,
    load_contract,
    running_backend,
)
from tests.contract.seeding import CALLER, SEEDED

EXAMPLES = examples_per_operation(40)
# A missing or wrong token is refused before the body is read, so fewer cases show it.
UNAUTHENTICATED_EXAMPLES = max(EXAMPLES // 4, 5)

crm = load_contract("crm", max_examples=EXAMPLES)
tma = load_contract("tma", max_examples=EXAMPLES)
crm_wrong_token = load_contract("crm", credentials="wrong", max_examples=UNAUTHENTICATED_EXAMPLES)
tma_wrong_token = load_contract("tma", credentials="wrong", max_examples=UNAUTHENTICATED_EXAMPLES)
crm_no_token = load_contract("crm", credentials="none", max_examples=UNAUTHENTICATED_EXAMPLES)
tma_no_token = load_contract("tma", credentials="none", max_examples=UNAUTHENTICATED_EXAMPLES)

# One backend serves all the cases of an operation, as a deployed one would: state builds up
# (replays, conflicts, reopened tickets) instead of being reset per case.
one_backend_per_operation = settings(suppress_health_check=[HealthCheck.function_scoped_fixture])


def _assert_requests_were_stored(backend: Backend) -> None:
    """The run reached the code that stores, not only the rejections."""
    paths = {path for path, _status in backend.answers}
    if "/api/integration/tickets" in paths:
        assert backend.answers["/api/integration/tickets", 201] > 0
        assert backend.count("tickets") > len(SEEDED[backend.side])
    if "/api/integration/messages" in paths:
        assert backend.answers["/api/integration/messages", 201] > 0
        assert backend.stored_messages(sender=CALLER[backend.side]) > 0
    if "/api/integration/status" in paths:
        assert backend.answers["/api/integration/status", 200] > 0
        assert backend.statuses_applied() > 0


def _assert_nothing_was_stored(backend: Backend) -> None:
    assert {status for _path, status in backend.answers} <= {401, 405}, backend.answers
    assert backend.count("messages") == 0
    assert backend.count("tickets") == len(SEEDED[backend.side])


def _serve(
    contract: Contract, request: pytest.FixtureRequest, db_kind: str, tmp_path: Path
) -> Iterator[Backend]:
    # Only test_suite_catches_drift.py sets CONTRACT_SABOTAGE: then the backend is broken.
    wrap = sabotage.from_environment(contract.side, TOKENS[contract.side])
    with (
        running_backend(contract.side, db_kind, tmp_path, wrap=wrap) as backend,
        contract.serving(backend),
    ):
        yield backend
        if body_failed(request):
            return
        if contract.credentials == "valid":
            _assert_requests_were_stored(backend)
        else:
            _assert_nothing_was_stored(backend)


@pytest.fixture
def crm_backend(request: pytest.FixtureRequest, db_kind: str, tmp_path: Path) -> Iterator[Backend]:
    yield from _serve(crm, request, db_kind, tmp_path)


@pytest.fixture
def tma_backend(request: pytest.FixtureRequest, db_kind: str, tmp_path: Path) -> Iterator[Backend]:
    yield from _serve(tma, request, db_kind, tmp_path)


@pytest.fixture
def crm_wrong_token_backend(
    request: pytest.FixtureRequest, db_kind: str, tmp_path: Path
) -> Iterator[Backend]:
    yield from _serve(crm_wrong_token, request, db_kind, tmp_path)


@pytest.fixture
def tma_wrong_token_backend(
    request: pytest.FixtureRequest, db_kind: str, tmp_path: Path
) -> Iterator[Backend]:
    yield from _serve(tma_wrong_token, request, db_kind, tmp_path)


@pytest.fixture
def crm_no_token_backend(
    request: pytest.FixtureRequest, db_kind: str, tmp_path: Path
) -> Iterator[Backend]:
    yield from _serve(crm_no_token, request, db_kind, tmp_path)


@pytest.fixture
def tma_no_token_backend(
    request: pytest.FixtureRequest, db_kind: str, tmp_path: Path
) -> Iterator[Backend]:
    yield from _serve(tma_no_token, request, db_kind, tmp_path)


# A request without a valid token is refused before anything touches the database, so these run
# on SQLite only.
sqlite_only = pytest.mark.parametrize("db_kind", ["sqlite"])


def _assert_turned_away(response: Any, contract: Contract) -> None:
    """401 problem+json with a challenge, for valid and invalid data alike (405: no such route)."""
    sent = response.request.headers.get("Authorization")
    if contract.credentials == "none":
        assert sent is None
    else:
        # The wrong token, or what invalid data made of the header (left out, mangled).
        assert sent != f"Bearer {TOKENS[contract.side]}"
    if response.status_code == 405:
        return
    assert response.status_code == 401
    assert response.headers["www-authenticate"][0].startswith("Bearer")
    assert response.json()["type"] == "urn:tma-crm:problem:unauthorized"


@crm.schema.parametrize()
@one_backend_per_operation
def test_crm_serves_its_operations_as_the_spec_says(case: Any, crm_backend: Backend) -> None:
    """Every check passes on the CRM's operations with the TMA's token, valid or invalid data."""
    case.call_and_validate()


@tma.schema.parametrize()
@one_backend_per_operation
def test_tma_serves_its_operations_as_the_spec_says(case: Any, tma_backend: Backend) -> None:
    """Every check passes on the TMA's operations with the CRM's token, valid or invalid data."""
    case.call_and_validate()


@crm_wrong_token.schema.parametrize()
@one_backend_per_operation
@sqlite_only
def test_crm_refuses_a_wrong_token(case: Any, crm_wrong_token_backend: Backend) -> None:
    """A wrong token gets 401 from the CRM whatever the body."""
    _assert_turned_away(case.call_and_validate(), crm_wrong_token)


@tma_wrong_token.schema.parametrize()
@one_backend_per_operation
@sqlite_only
def test_tma_refuses_a_wrong_token(case: Any, tma_wrong_token_backend: Backend) -> None:
    """A wrong token gets 401 from the TMA whatever the body."""
    _assert_turned_away(case.call_and_validate(), tma_wrong_token)


@crm_no_token.schema.parametrize()
@one_backend_per_operation
@sqlite_only
def test_crm_refuses_a_request_without_token(case: Any, crm_no_token_backend: Backend) -> None:
    """No token gets 401 from the CRM whatever the body."""
    _assert_turned_away(case.call_and_validate(), crm_no_token)


@tma_no_token.schema.parametrize()
@one_backend_per_operation
@sqlite_only
def test_tma_refuses_a_request_without_token(case: Any, tma_no_token_backend: Backend) -> None:
    """No token gets 401 from the TMA whatever the body."""
    _assert_turned_away(case.call_and_validate(), tma_no_token)
