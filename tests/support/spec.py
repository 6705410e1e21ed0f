"""The contract's operations as tests need them, read from `spec/integration.yaml`.

Tests that go through every operation (or every request and answer type) build their lists
here, so an operation added to the spec is covered without editing them. A test that must fail
when the spec changes keeps its own hard-coded copy, marked as a deliberate tripwire.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from generated import models

SPEC_PATH = Path(__file__).resolve().parents[2] / "spec" / "integration.yaml"
METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Operation:
    """One operation of the contract: where it is, who serves it, and its generated types."""

    operation_id: str
    method: str  # upper case, as HTTP writes it
    path: str
    served_by: frozenset[str]
    request: type[BaseModel] | None  # the generated model of its JSON body, if it has one
    answer: type[BaseModel]  # the generated model of its success answers

    @property
    def name(self) -> str:
        """The path under /api/integration (`tickets`, `messages`, ...)."""
        return self.path.rsplit("/", 1)[-1]


@functools.cache
def integration_spec() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text())
    return loaded


def _model(schema: dict[str, Any]) -> type[BaseModel]:
    model: type[BaseModel] = getattr(models, schema["$ref"].rsplit("/", 1)[-1])
    return model


def _answer(operation: dict[str, Any]) -> type[BaseModel]:
    answers = {
        _model(response["content"]["application/json"]["schema"])
        for code, response in operation["responses"].items()
        if code.startswith("2")
    }
    if len(answers) != 1:
        raise ValueError(f"{operation['operationId']} answers success with {answers}")
    return answers.pop()


@functools.cache
def operations() -> tuple[Operation, ...]:
    """Every operation of the contract, in the spec's order."""
    found = []
    for path, item in integration_spec()["paths"].items():
        for method, operation in item.items():
            if method not in METHODS:
                continue
            body = operation.get("requestBody")
            found.append(
                Operation(
                    operation_id=operation["operationId"],
                    method=method.upper(),
                    path=path,
                    served_by=frozenset(operation["x-served-by"]),
                    request=_model(body["content"]["application/json"]["schema"]) if body else None,
                    answer=_answer(operation),
                )
            )
    return tuple(found)


def served_by(side: str, *, method: str | None = None) -> list[Operation]:
    """The operations `side` serves (of one HTTP method if given)."""
    return [
        op
        for op in operations()
        if side in op.served_by and (method is None or op.method == method.upper())
    ]
