"""OpenAPI documents of a backend's own APIs (not the contract), made from the running app.

The integration contract is written by hand (spec/integration.yaml) and the code follows it. The
Mini App's user API and the operator API are the other way round: each has one client, in this
repository, so the app is the source and its document is derived from it by `make generate`
(spec/user-api.yaml, spec/operator-api.yaml; `make check-generated` fails on drift). What FastAPI
derives is completed here with what it cannot see: the problem+json answers that the shared
error handlers and middleware give every operation of a given shape.

A backend serves its API's document at `/docs` when `<PREFIX>API_DOCS_ENABLED` is on (the
default in development only): a small HTML page without scripts (the pages' CSP allows no
off-site or inline script) and the raw document as YAML and JSON.
"""

from __future__ import annotations

import copy
import html
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse, JSONResponse, Response

from generated.models import Problem
from integration_kit.problems import (
    CONFLICT,
    FORBIDDEN,
    INTERNAL_ERROR,
    MALFORMED_REQUEST,
    NOT_FOUND,
    PAYLOAD_TOO_LARGE,
    PROBLEM_JSON,
    RATE_LIMITED,
    UNAUTHORIZED,
    UNAVAILABLE,
    UNSUPPORTED_MEDIA_TYPE,
    VALIDATION,
)

__all__ = [
    "LONG_POLL",
    "ApiDocument",
    "build_document",
    "docs_router",
    "problems",
    "render_yaml",
]

# An operation whose answer is a stream or a long poll sets this extension (or answers
# text/event-stream): a stateless fuzzer, which waits for each answer, leaves it out.
LONG_POLL = "x-long-poll"

_PROBLEM_REF = {"$ref": "#/components/schemas/Problem"}

# What each status means on these APIs, with the problem types it carries.
_MEANINGS: dict[int, tuple[str, tuple[str, ...]]] = {
    400: ("The body is not valid JSON.", (MALFORMED_REQUEST,)),
    401: ("The credentials are missing or not accepted.", (UNAUTHORIZED,)),
    403: (
        "Not allowed: a console write without its CSRF token or from another origin, or an "
        "action for admins only.",
        (FORBIDDEN,),
    ),
    404: ("No such resource, or not yours.", (NOT_FOUND,)),
    409: ("An id is already used with other content.", (CONFLICT,)),
    413: ("The body is over 1 MiB.", (PAYLOAD_TOO_LARGE,)),
    415: ("The body is not `application/json`.", (UNSUPPORTED_MEDIA_TYPE,)),
    422: ("A parameter or the body breaks the schema; `errors` says where.", (VALIDATION,)),
    429: (
        "The caller's rate limit is spent (docs/rate-limits.md); retry after `Retry-After`.",
        (RATE_LIMITED,),
    ),
    500: (
        "An unexpected error; `instance` names the request id the logs carry. Retrying is safe: "
        "every write is idempotent.",
        (INTERNAL_ERROR,),
    ),
    503: ("The database is unavailable right now; retry after `Retry-After`.", (UNAVAILABLE,)),
}
_HEADERS: dict[int, dict[str, Any]] = {
    401: {"WWW-Authenticate": {"schema": {"type": "string"}}},
    429: {"Retry-After": {"schema": {"type": "integer", "minimum": 0}}},
    503: {"Retry-After": {"schema": {"type": "integer", "minimum": 0}}},
}


def problems(
    *statuses: int, also: Mapping[int | str, dict[str, Any]] | None = None
) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: the problem answers only it gives (404, 409, ...), and `also`
    other answers (a retry's 200)."""
    responses: dict[int | str, dict[str, Any]] = {**(also or {})}
    responses.update({status: {"description": _describe(status)} for status in statuses})
    return responses


def _describe(status: int) -> str:
    if status not in _MEANINGS:
        # A new kind of answer (say 429 from rate limiting) is described here once, for all.
        raise ValueError(f"no meaning for status {status}: add it to _MEANINGS in {__name__}")
    meaning, types = _MEANINGS[status]
    if not types:
        return meaning
    return f"{meaning} Problem type: " + ", ".join(f"`{t}`" for t in types) + "."


@dataclass(frozen=True)
class ApiDocument:
    """One API of a backend: the routes under `prefix`, documented as `file` (spec/<name>.yaml).

    `always` are the statuses every operation can answer (authentication, the database, an
    unexpected error); the shape of an operation adds the rest (a body: 400, 413, 415, 422;
    parameters: 422).
    """

    name: str
    title: str
    version: str
    description: str
    prefix: str
    always: tuple[int, ...] = (401, 429, 500, 503)

    @property
    def file(self) -> str:
        return f"spec/{self.name}.yaml"


def build_document(app: FastAPI, api: ApiDocument) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the routes of `app` under `api.prefix`."""
    # A copy: the routes' openapi_extra may be shared with what get_openapi returns.
    document = copy.deepcopy(
        get_openapi(
            title=api.title,
            version=api.version,
            openapi_version="3.1.0",
            description=api.description,
            routes=app.routes,
        )
    )
    document["paths"] = {
        path: item
        for path, item in document.get("paths", {}).items()
        if path == api.prefix or path.startswith(api.prefix + "/")
    }
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas.update(_problem_schemas())
    for item in document["paths"].values():
        for operation in item.values():
            _hoist_body_schema(operation, schemas)
            _complete(operation, api)
    _keep_only_what_paths_use(document)
    return document


def _keep_only_what_paths_use(document: dict[str, Any]) -> None:
    """Drop the schemas and security schemes of the app's other routes."""
    components = document["components"]
    schemas = components.get("schemas", {})
    used: set[str] = set()
    pending = [document["paths"]]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
                name = ref.rsplit("/", 1)[-1]
                if name not in used:
                    used.add(name)
                    pending.append(schemas[name])
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    components["schemas"] = {name: schema for name, schema in schemas.items() if name in used}
    schemes = {
        name
        for item in document["paths"].values()
        for operation in item.values()
        for requirement in operation.get("security", [])
        for name in requirement
    }
    declared = components.get("securitySchemes", {})
    if declared:
        components["securitySchemes"] = {n: s for n, s in declared.items() if n in schemes}


def _hoist_body_schema(operation: dict[str, Any], schemas: dict[str, Any]) -> None:
    """A body schema from `api_body.request_body` (a model's whole JSON Schema) becomes a
    reference to the components, beside the schemas it uses."""
    content = operation.get("requestBody", {}).get("content", {}).get("application/json", {})
    schema = content.get("schema", {})
    if "$ref" in schema or "title" not in schema:
        return
    schema = dict(schema)
    definitions = {**schema.pop("$defs", {}), schema["title"]: schema}
    for name, definition in definitions.items():
        if schemas.setdefault(name, definition) != definition:
            # Two models of one name: the document would silently describe only one of them.
            raise ValueError(f"two different schemas are named {name!r}; rename one model")
    content["schema"] = {"$ref": f"#/components/schemas/{schema['title']}"}


def _problem_schemas() -> dict[str, Any]:
    schema = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = schema.pop("$defs", {})
    return {"Problem": schema, **definitions}


def _complete(operation: dict[str, Any], api: ApiDocument) -> None:
    responses: dict[str, Any] = operation["responses"]
    statuses = set(api.always)
    if not operation.get("security"):
        statuses.discard(401)
    if "requestBody" in operation:
        statuses |= {400, 413, 415, 422}
    if operation.get("parameters"):
        statuses.add(422)
    for status in statuses:
        # FastAPI's own 422 ("Validation Error", HTTPValidationError) is replaced: ours differs.
        responses[str(status)] = {"description": _describe(status)}
    for code, response in responses.items():
        if code[0] in "45":
            response["content"] = {PROBLEM_JSON: {"schema": dict(_PROBLEM_REF)}}
            if int(code) in _HEADERS:
                response["headers"] = copy.deepcopy(_HEADERS[int(code)])
    operation["responses"] = dict(sorted(responses.items()))


class _Dumper(yaml.SafeDumper):
    """Block YAML; text of several lines as a literal block, as a person would write it."""


def _text_representer(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    node: yaml.Node = dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)
    return node


_Dumper.add_representer(str, _text_representer)


def render_yaml(document: Mapping[str, Any]) -> str:
    """The document as committed: block YAML in the order FastAPI built it, long lines kept."""
    header = "# Made from the app by `make generate` (integration_kit/api_docs.py). Do not edit.\n"
    body: str = yaml.dump(
        dict(document),
        Dumper=_Dumper,
        sort_keys=False,
        allow_unicode=True,
        width=100_000,
        default_flow_style=False,
    )
    return header + body


def docs_router(api: ApiDocument) -> APIRouter:
    """`/docs` (an HTML index), `/docs/openapi.yaml` and `/docs/openapi.json` of `api`."""
    router = APIRouter(prefix="/docs", include_in_schema=False)

    def document_of(app: FastAPI) -> tuple[dict[str, Any], str]:
        # Made on first request, when every router is in place, and kept with the app.
        made: dict[str, tuple[dict[str, Any], str]] = app.state.__dict__.setdefault(
            "api_documents", {}
        )
        if api.name not in made:
            document = build_document(app, api)
            made[api.name] = document, render_yaml(document)
        return made[api.name]

    @router.get("")
    async def index(request: Request) -> HTMLResponse:
        document, _text = document_of(request.app)
        return HTMLResponse(_index_page(document), headers=_NO_FRAMES)

    @router.get("/openapi.yaml")
    async def as_yaml(request: Request) -> Response:
        _document, text = document_of(request.app)
        return Response(text, media_type="application/yaml; charset=utf-8")

    @router.get("/openapi.json")
    async def as_json(request: Request) -> JSONResponse:
        document, _text = document_of(request.app)
        return JSONResponse(document)

    return router


# The index has no script and no style: nothing for a content security policy to allow.
_NO_FRAMES = {"Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"}


def _index_page(document: Mapping[str, Any]) -> str:
    info = document["info"]
    rows = "\n".join(_operation_rows(document.get("paths", {})))
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{_text(info["title"])}</title>
</head>
<body>
<h1>{_text(info["title"])} <small>{_text(info["version"])}</small></h1>
<p>The OpenAPI document: <a href="docs/openapi.yaml">openapi.yaml</a>,
<a href="docs/openapi.json">openapi.json</a>.</p>
<pre>{_text(info.get("description", ""))}</pre>
<table>
<thead><tr><th>method</th><th>path</th><th>what</th><th>answers</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
</body>
</html>
"""


def _operation_rows(paths: Mapping[str, Any]) -> Iterable[str]:
    for path, item in paths.items():
        for method, operation in item.items():
            answers = ", ".join(operation.get("responses", {}))
            what = operation.get("description") or operation.get("summary", "")
            yield (
                f"<tr><td>{_text(method.upper())}</td><td><code>{_text(path)}</code></td>"
                f"<td>{_text(what)}</td><td>{_text(answers)}</td></tr>"
            )


def _text(value: str) -> str:
    return html.escape(value, quote=True)
