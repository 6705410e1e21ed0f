"""The documents of the user and operator APIs (spec/user-api.yaml, spec/operator-api.yaml):
valid OpenAPI 3.1, made from the apps, every problem answer declared, drift caught; an operation
added to an app appears in its document with the answers the shared handlers give it."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import pytest
import schemathesis
import yaml
from fastapi import APIRouter, Depends, FastAPI
from openapi_spec_validator import validate
from pydantic import BaseModel, Field

from integration_kit.api_body import request_body, strict_body
from integration_kit.api_docs import LONG_POLL, build_document, render_yaml
from tests.contract.api_fuzz import streams
from tma_impl.app import build_runtime, create_app
from tma_impl.settings import TmaSettings
from tma_impl.support.auth import current_user
from tma_impl.support.document import USER_API

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = {
    "user-api": ("/api/support", "telegramInitData"),
    "operator-api": ("/api/crm", "operatorToken"),
}
BODY_STATUSES = {"400", "413", "415", "422"}
ALWAYS = {"401", "429", "500", "503"}


def _load(name: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "spec" / f"{name}.yaml").read_text())
    return document


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
    ]


@pytest.mark.parametrize("name", DOCUMENTS)
def test_document_is_valid_openapi_31(name: str) -> None:
    document = _load(name)
    assert document["openapi"].startswith("3.1")
    validate(document)


@pytest.mark.parametrize("name", DOCUMENTS)
def test_every_operation_is_secured_and_declares_every_problem(name: str) -> None:
    prefix, scheme = DOCUMENTS[name]
    document = _load(name)
    assert _operations(document), "no operations"
    assert set(document["components"]["securitySchemes"]) == {scheme}
    for path, method, operation in _operations(document):
        where = f"{method.upper()} {path}"
        assert path.startswith(prefix + "/"), where
        assert operation["security"] == [{scheme: []}], where
        codes = set(operation["responses"])
        assert codes >= ALWAYS, where
        if "requestBody" in operation:
            assert codes >= BODY_STATUSES, where
            assert list(operation["requestBody"]["content"]) == ["application/json"], where
        if "{ticket_id}" in path:
            assert codes >= {"404", "422"}, where
        for code, response in operation["responses"].items():
            if code[0] in "45":
                assert response["content"] == {
                    "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
                }, f"{where} {code}"
                problem_type = "urn:tma-crm:problem:"
                assert code == "500" or problem_type in response["description"], f"{where} {code}"


@pytest.mark.parametrize("name", DOCUMENTS)
def test_every_string_and_array_of_a_request_is_bounded(name: str) -> None:
    document = _load(name)
    schemas = document["components"]["schemas"]
    requests = {
        operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/")[-1]
        for _path, _method, operation in _operations(document)
        if "requestBody" in operation
    }
    assert requests
    unbounded = []
    for name_ in requests:
        for field, prop in schemas[name_]["properties"].items():
            if prop.get("type") == "string" and "format" not in prop and "maxLength" not in prop:
                unbounded.append(f"{name_}.{field}")
            if prop.get("type") == "array" and "maxItems" not in prop:
                unbounded.append(f"{name_}.{field}")
    assert unbounded == []


def test_a_document_edited_by_hand_is_caught(tmp_path: Path) -> None:
    """The drift check is not vacuous: a stale document fails with a clear hint."""
    copy = tmp_path / "repo"
    for part in ["spec", "generated", "scripts"]:
        shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    document = copy / "spec" / "operator-api.yaml"
    document.write_text(document.read_text().replace("maximum: 200", "maximum: 500"))
    result = subprocess.run(
        [sys.executable, "scripts/codegen.py", "check"],
        cwd=copy,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "spec/operator-api.yaml out of date with the app: run `make generate`" in result.stderr
    assert "-          maximum: 500" in result.stdout
    assert "+          maximum: 200" in result.stdout
    assert "spec/user-api.yaml" not in result.stderr


class Feedback(BaseModel):
    score: Annotated[int, Field(ge=1, le=5)]


@pytest.fixture
async def tma_app(tmp_path: Path) -> AsyncIterator[FastAPI]:
    settings = TmaSettings(_env_file=None, database_url=f"sqlite+aiosqlite:///{tmp_path}/x.db")
    runtime = build_runtime(settings)
    try:
        yield create_app(runtime)
    finally:
        await runtime.close()


async def test_an_operation_added_to_the_app_is_documented_with_its_answers(
    tma_app: FastAPI,
) -> None:
    """Another router under /api/support (as the pages add) lands in the document, complete."""
    router = APIRouter(prefix="/api/support", dependencies=[Depends(current_user)])

    @router.post("/tickets/{ticket_id}/feedback", openapi_extra=request_body(Feedback))
    async def feedback(
        ticket_id: uuid.UUID, body: Annotated[Feedback, Depends(strict_body(Feedback))]
    ) -> None:
        """Rate the answer."""

    @router.get("/events", openapi_extra={LONG_POLL: True})
    async def events() -> None:
        """Changes of the user's tickets, as they happen."""

    tma_app.include_router(router)
    document = build_document(tma_app, USER_API)
    added = document["paths"]["/api/support/tickets/{ticket_id}/feedback"]["post"]
    assert set(added["responses"]) == {"200"} | ALWAYS | BODY_STATUSES
    assert added["security"] == [{"telegramInitData": []}]
    body_ref = added["requestBody"]["content"]["application/json"]["schema"]
    assert body_ref == {"$ref": "#/components/schemas/Feedback"}
    assert document["components"]["schemas"]["Feedback"]["properties"]["score"]["maximum"] == 5
    assert document["paths"]["/api/support/events"]["get"][LONG_POLL] is True
    validate(document)
    # What the committed document holds is exactly what the unchanged app makes.
    assert "/api/support/events" not in _load("user-api")["paths"]
    assert (
        render_yaml(build_document(tma_app, USER_API))
        != (ROOT / "spec" / "user-api.yaml").read_text()
    )


def test_streams_are_left_out_of_the_fuzz_by_declaration_not_by_path() -> None:
    """`x-long-poll: true` or a text/event-stream answer excludes an operation; its path does
    not (an operation named like a stream but answering JSON is fuzzed)."""
    ok = {"200": {"description": "ok", "content": {"application/json": {"schema": {}}}}}
    sse = {"200": {"description": "ok", "content": {"text/event-stream": {"schema": {}}}}}
    document = {
        "openapi": "3.1.0",
        "info": {"title": "t", "version": "1"},
        "paths": {
            "/api/support/events": {"get": {"responses": sse}},
            "/api/support/poll": {"get": {"responses": ok, LONG_POLL: True}},
            "/api/support/stream-settings": {"get": {"responses": ok}},
            "/api/support/tickets": {"get": {"responses": ok}},
        },
    }
    schema = schemathesis.openapi.from_dict(document).exclude(func=streams)
    fuzzed = sorted(op.ok().path for op in schema.get_all_operations())
    assert fuzzed == ["/api/support/stream-settings", "/api/support/tickets"]
