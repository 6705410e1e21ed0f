"""The breaking-change check (scripts/contract_compat.py): each rule it enforces fires on an edit
that breaks a peer of the released contract, and compatible edits pass."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from scripts.contract_compat import breaking_changes, check

SPEC = Path(__file__).resolve().parent.parent / "spec" / "integration.yaml"
BASE: dict[str, Any] = yaml.safe_load(SPEC.read_text())

Edit = Callable[[dict[str, Any]], None]


def schemas(spec: dict[str, Any]) -> dict[str, Any]:
    return dict(spec["components"]["schemas"])


def _set(path: str, value: Any) -> Edit:
    def edit(spec: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = spec
        for part in parents:
            node = node[part]
        node[last] = value

    return edit


def _delete(path: str) -> Edit:
    def edit(spec: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        node = spec
        for part in parents:
            node = node[part]
        del node[last]

    return edit


def _append(path: str, value: Any) -> Edit:
    def edit(spec: dict[str, Any]) -> None:
        node = spec
        for part in path.split("/"):
            node = node[part]
        node.append(value)

    return edit


MSG = "components/schemas/MessageRequest"
ACCEPTED = "components/schemas/MessageAccepted"
STATUS = "components/schemas/TicketStatus"


def _new_required(spec: dict[str, Any]) -> None:
    spec["components"]["schemas"]["MessageRequest"]["properties"]["priority"] = {"type": "string"}
    spec["components"]["schemas"]["MessageRequest"]["required"].append("priority")


BREAKING: dict[str, tuple[str, Edit]] = {
    "an operation removed": ("operation-removed", _delete("paths/~status")),
    "a request field removed": ("request-field-removed", _delete(f"{MSG}/properties/attachments")),
    "a new required request field": ("request-field-required", _new_required),
    "an optional request field made required": (
        "request-field-required",
        _append(f"{MSG}/required", "attachments"),
    ),
    "a request type narrowed": (
        "request-type-narrowed",
        _set(f"{MSG}/properties/message/type", "integer"),
    ),
    "a request bound narrowed": (
        "request-bound-narrowed",
        _set(f"{MSG}/properties/message/maxLength", 100),
    ),
    "a request pattern added": (
        "request-bound-narrowed",
        _set(f"{MSG}/properties/message/pattern", "^[a-z]+$"),
    ),
    "an accepted enum value removed": ("request-enum-narrowed", _set(f"{STATUS}/enum", ["open"])),
    "a new enum value in answers": (
        "response-enum-widened",
        _append(f"{STATUS}/enum", "escalated"),
    ),
    "a required answer field removed": (
        "response-field-removed",
        _delete(f"{ACCEPTED}/properties/message_id"),
    ),
    "a required answer field made optional": (
        "response-field-optional",
        lambda spec: spec["components"]["schemas"]["MessageAccepted"]["required"].remove(
            "message_id"
        ),
    ),
    "a success answer removed": (
        "response-status-removed",
        _delete("paths/~messages/post/responses/200"),
    ),
    "a new security requirement": (
        "security-added",
        _set("paths/~messages/post/security", [{"bearerAuth": [], "signature": []}]),
    ),
}

COMPATIBLE: dict[str, Edit] = {
    "an optional request field added": _set(
        f"{MSG}/properties/priority", {"type": "string", "maxLength": 20}
    ),
    "a request bound widened": _set(f"{MSG}/properties/message/maxLength", 8192),
    "an optional answer field added": _set(f"{ACCEPTED}/properties/note", {"type": "string"}),
    "a description changed": _set("info/description", "reworded"),
    "a new error answer documented": _set(
        "paths/~messages/post/responses/429", {"description": "slow down"}
    ),
}


def _edited(edit: Edit) -> dict[str, Any]:
    spec = copy.deepcopy(BASE)
    # Short names for the paths, so the edits above stay readable.
    for name in list(spec["paths"]):
        spec["paths"]["~" + name.rsplit("/", 1)[-1]] = spec["paths"].pop(name)
    edit(spec)
    for name in list(spec["paths"]):
        spec["paths"]["/api/integration/" + name[1:]] = spec["paths"].pop(name)
    return spec


@pytest.mark.parametrize("case", sorted(BREAKING))
def test_a_breaking_edit_is_caught(case: str) -> None:
    rule, edit = BREAKING[case]
    found = breaking_changes(BASE, _edited(edit))
    assert rule in {change.rule for change in found}, found


@pytest.mark.parametrize("case", sorted(COMPATIBLE))
def test_a_compatible_edit_passes(case: str) -> None:
    assert breaking_changes(BASE, _edited(COMPATIBLE[case])) == []


def test_the_spec_is_compatible_with_itself() -> None:
    assert breaking_changes(BASE, copy.deepcopy(BASE)) == []


def _release(tmp_path: Path, spec: dict[str, Any], version: str) -> Path:
    released = tmp_path / "released"
    released.mkdir(exist_ok=True)
    spec = {**spec, "info": {**spec["info"], "version": version}}
    (released / f"{version}.yaml").write_text(yaml.safe_dump(spec))
    return released


def _current(tmp_path: Path, spec: dict[str, Any], version: str) -> Path:
    path = tmp_path / "integration.yaml"
    path.write_text(yaml.safe_dump({**spec, "info": {**spec["info"], "version": version}}))
    return path


def test_a_breaking_change_fails_unless_the_major_version_moved(tmp_path: Path) -> None:
    released = _release(tmp_path, BASE, "1.0.0")
    broken = _edited(BREAKING["a request field removed"][1])
    passes, lines = check(_current(tmp_path, broken, "1.1.0"), released)
    assert not passes
    assert "request-field-removed" in "\n".join(lines)
    passes, lines = check(_current(tmp_path, broken, "2.0.0"), released)
    assert passes
    assert "allowed by the new major version" in lines[0]


def test_the_newest_release_is_the_one_compared(tmp_path: Path) -> None:
    _release(tmp_path, BASE, "1.0.0")
    released = _release(tmp_path, _edited(BREAKING["a request field removed"][1]), "2.0.0")
    passes, _ = check(_current(tmp_path, BASE, "2.1.0"), released)
    assert passes  # 2.1.0 adds the field back: compatible with 2.0.0, the newest release


def test_a_version_older_than_the_release_fails(tmp_path: Path) -> None:
    released = _release(tmp_path, BASE, "1.2.0")
    passes, lines = check(_current(tmp_path, BASE, "1.1.0"), released)
    assert not passes
    assert "older than the released" in lines[0]


def test_no_release_fails(tmp_path: Path) -> None:
    passes, lines = check(_current(tmp_path, BASE, "1.0.0"), tmp_path / "none")
    assert not passes
    assert "no released contract" in lines[0]
