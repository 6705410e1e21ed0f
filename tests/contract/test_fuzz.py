"""Each backend against the spec file, operation by operation: every schemathesis check on valid
and invalid data, with the backend's token, with a wrong token and with none, and with the right
token on requests that are unsigned or signed six minutes ago.

With the right token, valid requests are accepted (never 401) and really stored: the generated
ids mostly name seeded tickets, and each run must show messages stored and statuses changed.
Without a valid token or signature, every request is answered 401 and nothing is stored.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings

from tests.contract import sabotage
from tests.contract.acceptance import assert_floors
from tests.contract.harness import (
    SECRETS,
    TOKENS,
    Backend,
    Contract,
    body_failed,
    examples_per_operation,
    load_contract,
    own_case,
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
crm_unsigned = load_contract("crm", credentials="unsigned", max_examples=UNAUTHENTICATED_EXAMPLES)
tma_unsigned = load_contract("tma", credentials="unsigned", max_examples=UNAUTHENTICATED_EXAMPLES)
crm_stale = load_contract("crm", credentials="stale", max_examples=UNAUTHENTICATED_EXAMPLES)
tma_stale = load_contract("tma", credentials="stale", max_examples=UNAUTHENTICATED_EXAMPLES)

# Requests with the right token refused for their signature, per contract: a run must show some.
SIGNATURE_REFUSALS: Counter[tuple[str, str]] = Counter()

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
    wrap = sabotage.from_environment(contract.side, TOKENS[contract.side], SECRETS[contract.side])
    with (
        running_backend(contract.side, db_kind, tmp_path, wrap=wrap) as backend,
        contract.serving(backend),
    ):
        refused_before = SIGNATURE_REFUSALS[contract.side, contract.credentials]
        yield backend
        if body_failed(request):
            return
        if contract.credentials == "valid":
            _assert_requests_were_stored(backend)
            assert_floors(
                backend.acceptance,
                db=db_kind,
                suite="stateless",
                side=contract.side,
                examples=EXAMPLES,
            )
        else:
            if contract.credentials in ("unsigned", "stale"):
                assert SIGNATURE_REFUSALS[contract.side, contract.credentials] > refused_before
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


@pytest.fixture
def crm_unsigned_backend(
    request: pytest.FixtureRequest, db_kind: str, tmp_path: Path
) -> Iterator[Backend]:
    yield from _serve(crm_unsigned, request, db_kind, tmp_path)


@pytest.fixture
def tma_unsigned_backend(
    request: pytest.FixtureRequest, db_kind: str, tmp_path: Path
) -> Iterator[Backend]:
    yield from _serve(tma_unsigned, request, db_kind, tmp_path)


@pytest.fixture
def crm_stale_backend(
    request: pytest.FixtureRequest, db_kind: str, tmp_path: Path
) -> Iterator[Backend]:
    yield from _serve(crm_stale, request, db_kind, tmp_path)


@pytest.fixture
def tma_stale_backend(
    request: pytest.FixtureRequest, db_kind: str, tmp_path: Path
) -> Iterator[Backend]:
    yield from _serve(tma_stale, request, db_kind, tmp_path)


# A request without a valid token or signature is refused before anything touches the database,
# so these run on SQLite only.
sqlite_only = pytest.mark.parametrize("db_kind", ["sqlite"])


def _assert_turned_away(response: Any, contract: Contract) -> None:
    """401 problem+json with a challenge, for valid and invalid data alike (405: no such route)."""
    if contract.credentials in ("unsigned", "stale"):
        _assert_signature_refused(response, contract)
        return
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


def _assert_signature_refused(response: Any, contract: Contract) -> None:
    """The right token on an unsigned or stale request: 401 with the signature problem type."""
    if response.status_code == 405:
        return
    assert response.status_code == 401, response.text
    problem = response.json()
    if response.request.headers.get("Authorization") != f"Bearer {TOKENS[contract.side]}":
        # Invalid data mangled or left out the token: refused for that first.
        assert problem["type"] == "urn:tma-crm:problem:unauthorized", problem
        return
    assert problem["type"] == "urn:tma-crm:problem:signature-refused", problem
    SIGNATURE_REFUSALS[contract.side, contract.credentials] += 1
    if contract.credentials == "unsigned":
        assert "headers are required" in problem["detail"]
    else:
        assert "s behind the receiver's clock" in problem["detail"], problem


@crm.schema.parametrize()
@one_backend_per_operation
def test_crm_serves_its_operations_as_the_spec_says(case: Any, crm_backend: Backend) -> None:
    """Every check passes on the CRM's operations with the TMA's token, valid or invalid data."""
    own_case(case).call_and_validate()


@tma.schema.parametrize()
@one_backend_per_operation
def test_tma_serves_its_operations_as_the_spec_says(case: Any, tma_backend: Backend) -> None:
    """Every check passes on the TMA's operations with the CRM's token, valid or invalid data."""
    own_case(case).call_and_validate()


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


@crm_unsigned.schema.parametrize()
@one_backend_per_operation
@sqlite_only
def test_crm_refuses_an_unsigned_request(case: Any, crm_unsigned_backend: Backend) -> None:
    """The right token without webhook-* headers gets 401 signature-refused from the CRM."""
    _assert_turned_away(case.call_and_validate(), crm_unsigned)


@tma_unsigned.schema.parametrize()
@one_backend_per_operation
@sqlite_only
def test_tma_refuses_an_unsigned_request(case: Any, tma_unsigned_backend: Backend) -> None:
    """The right token without webhook-* headers gets 401 signature-refused from the TMA."""
    _assert_turned_away(case.call_and_validate(), tma_unsigned)


@crm_stale.schema.parametrize()
@one_backend_per_operation
@sqlite_only
def test_crm_refuses_a_stale_signature(case: Any, crm_stale_backend: Backend) -> None:
    """A correct signature made six minutes ago gets 401 signature-refused from the CRM."""
    _assert_turned_away(case.call_and_validate(), crm_stale)


@tma_stale.schema.parametrize()
@one_backend_per_operation
@sqlite_only
def test_tma_refuses_a_stale_signature(case: Any, tma_stale_backend: Backend) -> None:
    """A correct signature made six minutes ago gets 401 signature-refused from the TMA."""
    _assert_turned_away(case.call_and_validate(), tma_stale)
