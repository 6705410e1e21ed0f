"""The released contract (the newest spec/released/<version>.yaml) as the tests of rolling
upgrades need it: its operations and who serves them, a client generated from it, and
validators of its request schemas (docs/design.md §6)."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import yaml
from jsonschema import Draft202012Validator

from scripts.codegen import generate_client
from scripts.contract_compat import newest_release

METHODS = ("get", "put", "post", "delete", "patch")
CLIENT_PACKAGE = "released_client"


def released_path() -> Path:
    release = newest_release()
    assert release is not None, "no released contract in spec/released/"
    return release


def released_spec() -> dict[str, Any]:
    return dict(yaml.safe_load(released_path().read_text()))


def _ref_name(node: Mapping[str, Any]) -> str:
    reference = str(node["$ref"])
    assert reference.startswith("#/components/schemas/"), reference
    return reference.rsplit("/", 1)[1]


def _resolve(spec: Mapping[str, Any], node: Mapping[str, Any]) -> Mapping[str, Any]:
    while "$ref" in node:
        target: Any = spec
        for part in str(node["$ref"])[2:].split("/"):
            target = target[part]
        node = target
    return node


@dataclass(frozen=True)
class Operation:
    """One operation of the released contract."""

    operation_id: str
    method: str
    path: str
    served_by: tuple[str, ...]
    # The schema name of the JSON request body, None for a GET.
    request_schema: str | None
    # Success status -> schema name of its JSON answer.
    answers: Mapping[int, str]
    # Parameters by (location, lower-case name), resolved.
    parameters: Mapping[tuple[str, str], Mapping[str, Any]]
    # Header names the security requirement asks for (lower case), bearer as `authorization`.
    security_headers: tuple[str, ...]

    @property
    def module(self) -> str:
        """The module name openapi-python-client gives the operation (snake case)."""
        return "".join(f"_{c.lower()}" if c.isupper() else c for c in self.operation_id)


def operations(spec: Mapping[str, Any]) -> list[Operation]:
    """Every operation of `spec`, as the spec itself lists them."""
    found = []
    schemes = spec["components"].get("securitySchemes", {})
    for path, item in spec["paths"].items():
        for method in METHODS:
            if method not in item:
                continue
            raw = item[method]
            body = raw.get("requestBody", {}).get("content", {}).get("application/json")
            answers = {
                int(status): _ref_name(answer["content"]["application/json"]["schema"])
                for status, answer in raw["responses"].items()
                if str(status).startswith("2")
            }
            parameters = {}
            for parameter in [*item.get("parameters", []), *raw.get("parameters", [])]:
                parameter = _resolve(spec, parameter)
                parameters[(parameter["in"], parameter["name"].lower())] = parameter
            headers = []
            for requirement in raw.get("security", spec.get("security", [])):
                for name in requirement:
                    scheme = schemes[name]
                    headers.append(
                        "authorization" if scheme["type"] == "http" else scheme["name"].lower()
                    )
            found.append(
                Operation(
                    operation_id=raw["operationId"],
                    method=method.upper(),
                    path=path,
                    served_by=tuple(raw["x-served-by"]),
                    request_schema=_ref_name(body["schema"]) if body else None,
                    answers=answers,
                    parameters=parameters,
                    security_headers=tuple(headers),
                )
            )
    return found


def validator(spec: Mapping[str, Any], schema: Mapping[str, Any]) -> Draft202012Validator:
    """A JSON Schema 2020-12 validator (the dialect of OpenAPI 3.1) of `schema`, whose `$ref`s
    point into `spec`, checking formats (uuid, date-time) too."""
    rooted = {**schema, "components": spec["components"]}
    return Draft202012Validator(rooted, format_checker=Draft202012Validator.FORMAT_CHECKER)


@contextmanager
def released_client(target: Path) -> Iterator[ModuleType]:
    """The client openapi-python-client makes from the released spec, written into `target`
    and imported as `released_client` for the block."""
    generate_client(released_path(), target / CLIENT_PACKAGE)
    sys.path.insert(0, str(target))
    try:
        yield importlib.import_module(CLIENT_PACKAGE)
    finally:
        sys.path.remove(str(target))
        for name in [n for n in sys.modules if n.split(".")[0] == CLIENT_PACKAGE]:
            del sys.modules[name]
