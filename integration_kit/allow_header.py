"""A 405's `Allow` names every method of its path, not only those of the first route matched.

Starlette answers a method no route of the path takes with the methods of the first route whose
path matched, so `OPTIONS /api/support/tickets` said `Allow: POST` though GET is served there too
(RFC 9110 §10.2.1 asks for all of them; schemathesis's allow_header_conformance check found it).
"""

from __future__ import annotations

from fastapi.routing import iter_route_contexts
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["CompleteAllowHeader"]


class CompleteAllowHeader:
    """ASGI middleware: on a 405, replace `Allow` with the methods of every route of the path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def completing_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 405:
                allowed = _methods_of(scope)
                if allowed:
                    headers = [(k, v) for k, v in message["headers"] if k.lower() != b"allow"]
                    headers.append((b"allow", ", ".join(allowed).encode()))
                    message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, completing_send)


def _methods_of(scope: Scope) -> list[str]:
    app = scope.get("app")
    path = scope.get("path", "")
    methods: set[str] = set()
    for route in iter_route_contexts(getattr(app, "routes", [])):
        regex = getattr(route, "path_regex", None)
        if route.methods and regex is not None and regex.match(path):
            methods |= route.methods
    return sorted(methods)
