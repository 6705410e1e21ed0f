"""The accepted-case counts and their floors (tests/contract/acceptance.py): a run that reaches
the success paths too rarely must fail, naming what fell short."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from tests.contract.acceptance import (
    FLOORS,
    Counts,
    assert_floors,
    forget,
    record,
    shortfalls,
    table,
    write_report,
)
from tests.contract.harness import SPEC_PATH


def _case(operation: str, *, positive: bool = True) -> Any:
    mode = SimpleNamespace(is_positive=positive)
    return SimpleNamespace(
        operation=SimpleNamespace(definition=SimpleNamespace(raw={"operationId": operation})),
        meta=SimpleNamespace(generation=SimpleNamespace(mode=mode)),
    )


def test_counts_valid_cases_and_those_accepted_and_those_that_changed_something() -> None:
    tally: dict[str, Counts] = {}
    session: dict[tuple[str, str, str, str], Counts] = {}
    where: dict[str, Any] = {"db": "sqlite", "suite": "stateless", "side": "crm"}
    record(tally, **where, case=_case("postMessage"), status=201, session=session)
    record(tally, **where, case=_case("postMessage"), status=200, session=session)
    record(tally, **where, case=_case("postMessage"), status=404, session=session)
    record(tally, **where, case=_case("postMessage", positive=False), status=201, session=session)
    applied, stale = {"applied": True}, {"applied": False}
    record(tally, **where, case=_case("postStatus"), status=200, answer=applied, session=session)
    record(tally, **where, case=_case("postStatus"), status=200, answer=stale, session=session)

    assert tally["postMessage"] == Counts(cases=4, positive=3, accepted=2, changed=1)
    assert tally["postStatus"] == Counts(cases=2, positive=2, accepted=2, changed=1)
    assert session["sqlite", "stateless", "crm", "postMessage"] == tally["postMessage"]

    forget(tally, **where, session=session)
    assert tally == {}
    assert session["sqlite", "stateless", "crm", "postMessage"] == Counts()


def test_a_count_under_its_floor_fails_naming_side_operation_count_and_floor() -> None:
    floors = {("stateless", "tma", "postMessage"): 20, ("stateless", "tma", "postStatus"): 10}
    tally = {
        "postMessage": Counts(cases=90, positive=40, accepted=19),
        "postStatus": Counts(cases=50, positive=20, accepted=10),
    }
    where: dict[str, Any] = {"db": "sqlite", "suite": "stateless", "side": "tma"}
    found = shortfalls(tally, **where, examples=40, floors=floors)
    assert found == [
        "tma postMessage (stateless, sqlite): 19 of 40 valid cases accepted (2xx), under the "
        "floor of 20 (tests/contract/acceptance.py)"
    ]
    with pytest.raises(AssertionError, match="tma postMessage \\(stateless, sqlite\\): 19 of"):
        assert_floors(tally, **where, examples=40, floors=floors)


def test_counts_at_their_floors_pass() -> None:
    floors = {("stateful", "crm", "createTicket"): 12}
    tally = {"createTicket": Counts(cases=12, positive=12, accepted=12)}
    assert_floors(tally, db="sqlite", suite="stateful", side="crm", examples=20, floors=floors)


def test_floors_scale_with_the_number_of_cases_asked_for() -> None:
    floors = {("stateless", "crm", "postStatus"): 20}
    tally = {"postStatus": Counts(cases=30, positive=15, accepted=15)}
    where: dict[str, Any] = {"db": "sqlite", "suite": "stateless", "side": "crm"}
    # CONTRACT_EXAMPLES=20 asks half the default 40 cases: the floor halves too.
    assert shortfalls(tally, **where, examples=20, floors=floors) == []
    assert shortfalls(tally, **where, examples=40, floors=floors) != []


def test_the_floor_is_the_same_on_every_database_and_in_either_position() -> None:
    target = ("stateless", "crm", "postMessage")
    floors = {target: 30}
    tally = {"postMessage": Counts(cases=190, positive=49, accepted=29)}
    where: dict[str, Any] = {"suite": "stateless", "side": "crm", "examples": 40, "floors": floors}
    # Whichever database ran first in the session, each is held to the one floor.
    for db in ("sqlite", "postgresql"):
        assert shortfalls(tally, db=db, **where) != []
    tally["postMessage"] = Counts(cases=190, positive=49, accepted=30)
    for db in ("sqlite", "postgresql"):
        assert shortfalls(tally, db=db, **where) == []


def test_every_operation_the_spec_assigns_has_floors() -> None:
    """Each operation, on each side that serves it (stateful: the writes), has a floor above 0:
    with none, its success paths could go unreached unnoticed. Built from the spec."""
    spec = yaml.safe_load(SPEC_PATH.read_text())
    expected = set()
    for methods in spec["paths"].values():
        for method, operation in methods.items():
            for side in operation["x-served-by"]:
                expected.add(("stateless", side, operation["operationId"]))
                if method != "get":
                    expected.add(("stateful", side, operation["operationId"]))
    assert {target for target, floor in FLOORS.items() if floor > 0} == expected


def test_the_report_is_a_table_and_a_json_file(tmp_path: Path) -> None:
    session = {("postgresql", "stateless", "crm", "createTicket"): Counts(80, 30, 25, 24)}
    lines = table(session)
    assert lines[0].split() == [
        "database", "suite", "side", "operation", "cases", "valid", "accepted", "changed", "floor"
    ]  # fmt: skip
    assert lines[1].split()[:8] == [
        "postgresql", "stateless", "crm", "createTicket", "80", "30", "25", "24"
    ]  # fmt: skip
    write_report(session, tmp_path / "accepted.json")
    (row,) = json.loads((tmp_path / "accepted.json").read_text())
    assert row["operation"] == "createTicket"
    assert (row["valid"], row["accepted"], row["changed"]) == (30, 25, 24)
