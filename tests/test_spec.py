"""The contract itself: valid OpenAPI 3.1, every operation secured and bounded, audit names gone."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from openapi_spec_validator import validate

ROOT = Path(__file__).resolve().parent.parent
SPEC_PATH = ROOT / "spec" / "integration.yaml"


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return yaml.safe_load(SPEC_PATH.read_text())


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
        if method in {"get", "post", "put", "patch", "delete"}
    ]


SIGNED_BEARER = {"bearerAuth": [], "webhookId": [], "webhookTimestamp": [], "webhookSignature": []}


def test_the_signature_headers_are_api_key_schemes_not_parameters(spec: dict[str, Any]) -> None:
    """Security schemes, so the generated calls keep their signatures (no header arguments)."""
    schemes = spec["components"]["securitySchemes"]
    for scheme, header in [
        ("webhookId", "webhook-id"),
        ("webhookTimestamp", "webhook-timestamp"),
        ("webhookSignature", "webhook-signature"),
    ]:
        assert schemes[scheme] | {"description": ""} == {
            "type": "apiKey",
            "in": "header",
            "name": header,
            "description": "",
        }
    assert spec["security"] == [SIGNED_BEARER]
    for _path, _method, op in _operations(spec):
        assert not [p for p in op.get("parameters", []) if p.get("in") == "header"]
    assert "urn:tma-crm:problem:signature-refused" in spec["info"]["description"]


def test_spec_is_valid_openapi_31(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1")
    validate(spec)


def test_every_operation_is_under_the_integration_prefix_and_secured(spec: dict[str, Any]) -> None:
    for path, _method, op in _operations(spec):
        assert path.startswith("/api/integration/"), path
        # The bearer token and the three Standard Webhooks headers, all required together.
        assert op.get("security") == [SIGNED_BEARER], op["operationId"]
        assert set(op["x-served-by"]) <= {"tma", "crm"}
        assert set(op["tags"]) == set(op["x-served-by"]), op["operationId"]


def test_operations_are_the_contract_of_the_design(spec: dict[str, Any]) -> None:
    """A deliberate tripwire: the operations table of docs/design.md §3, copied by hand, so
    adding, moving or removing an operation fails here until the design says so too. (Tests
    that go through every operation build their lists from the spec: tests/support/spec.py.)"""
    served = {(path, method): sorted(op["x-served-by"]) for path, method, op in _operations(spec)}
    assert served == {
        ("/api/integration/tickets", "post"): ["crm"],
        ("/api/integration/messages", "post"): ["crm", "tma"],
        ("/api/integration/status", "post"): ["crm", "tma"],
        ("/api/integration/changes", "get"): ["crm", "tma"],
    }


def test_every_error_is_problem_json(spec: dict[str, Any]) -> None:
    responses = spec["components"]["responses"]
    for _path, _method, op in _operations(spec):
        codes = set(op["responses"])
        assert {"400", "401", "405", "413", "422", "429", "500"} <= codes, op["operationId"]
        if "requestBody" in op:  # a body of another media type
            assert "415" in codes, op["operationId"]
        for code, response in op["responses"].items():
            if code.startswith(("4", "5")):
                resolved = responses[response["$ref"].rsplit("/", 1)[-1]]
                assert list(resolved["content"]) == ["application/problem+json"]


def test_every_string_and_array_is_bounded(spec: dict[str, Any]) -> None:
    schemas = spec["components"]["schemas"]
    unbounded = []
    for name, schema in schemas.items():
        if name in {"Problem", "FieldError"}:
            continue  # responses written by our own code, not input to bound
        for field, prop in schema.get("properties", {}).items():
            if prop.get("type") == "string" and "format" not in prop and "maxLength" not in prop:
                unbounded.append(f"{name}.{field}")
            if prop.get("type") == "array" and "maxItems" not in prop:
                unbounded.append(f"{name}.{field}")
    assert unbounded == []


def test_requests_follow_the_tolerant_reader_rule(spec: dict[str, Any]) -> None:
    for name, schema in spec["components"]["schemas"].items():
        assert schema.get("additionalProperties", True) is not False, name


# The cut-over's description of the audited old systems (docs/cutover.md): the one place the old
# names may appear.
LEGACY_PACKAGES = ("tma_impl/legacy/", "crm_impl/legacy/")


def test_audit_names_are_gone_from_the_contract_and_code() -> None:
    """`theme` became `subject` and the `local` sender became `tma` (audit items 4 and 5); the
    legacy packages, which describe the old systems, aside."""
    offenders = []
    folders = ["spec", "generated", "integration_kit", "tma_impl", "crm_impl"]
    for folder in folders:
        for path in (ROOT / folder).rglob("*"):
            if path.suffix not in {".py", ".yaml", ".yml", ".json", ".ini", ".mako"}:
                continue
            if path.relative_to(ROOT).as_posix().startswith(LEGACY_PACKAGES):
                continue
            text = path.read_text()
            if re.search(r"\btheme\b", text, re.IGNORECASE):
                offenders.append(f"{path.relative_to(ROOT)}: theme")
            if re.search(r"""['"]local['"]""", text):
                offenders.append(f"{path.relative_to(ROOT)}: 'local' value")
    assert offenders == []
    spec = yaml.safe_load(SPEC_PATH.read_text())
    # A deliberate tripwire (audit item 5): the two senders, copied by hand.
    assert spec["components"]["schemas"]["SenderType"]["enum"] == ["tma", "crm"]
