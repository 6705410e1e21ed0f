"""`harness.own_case`: a run sends a copy of each case, so the run on the next database gets the
case as it was generated, not what the first run's call and checks left of it."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, find, settings

from tests.contract.acceptance import forget
from tests.contract.harness import load_contract, own_case, running_backend

crm = load_contract("crm", max_examples=5)


def _valid_message_case() -> Any:
    operation = crm.schema["/api/integration/messages"]["POST"]
    return find(
        operation.as_strategy(),
        lambda case: (
            case.meta is not None
            and case.meta.generation.mode.is_positive
            and isinstance(case.body, dict)
        ),
        settings=settings(database=None, suppress_health_check=list(HealthCheck)),
    )


def test_sending_a_copy_leaves_the_generated_case_as_it_was(db_kind: str, tmp_path: Path) -> None:
    case = _valid_message_case()
    headers, body = dict(case.headers), copy.deepcopy(case.body)
    components = dict(case.meta.components)

    with running_backend("crm", db_kind, tmp_path) as backend, crm.serving(backend):
        first = own_case(case)
        first.call_and_validate()
        second = own_case(case)
        second.call_and_validate()
        # Not fuzzing: out of the session's accepted counts (tests.contract.acceptance).
        forget(backend.acceptance, db=db_kind, suite="stateless", side="crm")

    # Sending changed the copy (its metadata froze at the call) ...
    assert first._freeze_metadata
    assert second._freeze_metadata
    # ... and nothing of the case itself: the next copy starts from what was generated.
    assert not case._freeze_metadata
    assert dict(case.headers) == headers
    assert case.body == body
    assert case.meta.components == components
    assert case.meta.generation.mode.is_positive
    assert first.meta is not case.meta
    assert first.headers is not case.headers
    assert first.operation is case.operation
    assert (second.body, second.meta.generation.mode) == (first.body, first.meta.generation.mode)
