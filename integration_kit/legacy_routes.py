"""The audited old routes, answering during the cut-over window only (docs/cutover.md).

Off unless `<PREFIX>LEGACY__ROUTES_ENABLED=true`. They are authenticated by the old deploy token
and nothing else (the old peer cannot sign), answer with `Deprecation` and `Sunset` headers, and
count their calls per route (`legacy_route_calls_total`), so operators see when the old peer has
stopped calling. What a side maps the old bodies to lives in its own legacy package.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.routing import APIRoute
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from integration_kit.auth import bearer_token, token_matches
from integration_kit.legacy_settings import LegacyRouteSettings
from integration_kit.problems import UNAUTHORIZED, ProblemError

log = logging.getLogger(__name__)

# When the audited routes became deprecated: the release of the one contract.
DEPRECATED_SINCE = datetime(2026, 12, 1, tzinfo=UTC)


class LegacyRouteCalls(Collector):
    """`legacy_route_calls_total{route}`: calls to each old route since this process started."""

    def __init__(self, routes: list[str]) -> None:
        self.counts: Counter[str] = Counter(dict.fromkeys(routes, 0))

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "legacy_route_calls",
            "Calls to the audited old routes, by route (0 for long: the old peer is gone).",
            labels=["route"],
        )
        for route, count in sorted(self.counts.items()):
            family.add_metric([route], float(count))
        yield family


def legacy_guard(
    settings: LegacyRouteSettings, calls: LegacyRouteCalls, route: str
) -> Callable[[Request], Awaitable[None]]:
    """A dependency for one old route: counts the call and accepts the old deploy token only."""

    async def guard(request: Request) -> None:
        calls.counts[route] += 1
        token = bearer_token(request)
        if token is None or not token_matches(token, [settings.deploy_token]):
            raise ProblemError(
                401,
                UNAUTHORIZED,
                "Unauthorized",
                "The old deploy token is required on the old routes.",
                headers={"WWW-Authenticate": 'Bearer realm="legacy"'},
            )

    return guard


def install(
    app: FastAPI, settings: LegacyRouteSettings, router: APIRouter, calls: LegacyRouteCalls
) -> None:
    """Serve `router`'s old routes with `Deprecation` and `Sunset` on every answer (problem
    answers too), and count their calls in /metrics."""
    if settings.sunset is None:  # the settings refuse routes without a sunset
        raise ValueError("the old routes need legacy.sunset")
    app.include_router(router)
    paths = frozenset(route.path for route in router.routes if isinstance(route, APIRoute))
    headers = [
        (b"deprecation", f"@{int(DEPRECATED_SINCE.timestamp())}".encode()),
        (b"sunset", format_datetime(settings.sunset.astimezone(UTC), usegmt=True).encode()),
    ]
    app.add_middleware(_DeprecationHeaders, paths=paths, headers=headers)
    app.state.runtime.extras.setdefault("collectors", []).append(calls)


class _DeprecationHeaders:
    """Pure ASGI: adds the headers to answers on the old paths, whatever produced them."""

    def __init__(self, app: ASGIApp, *, paths: frozenset[str], headers: list[Any]) -> None:
        self.app, self.paths, self.headers = app, paths, headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *self.headers]}
            await send(message)

        await self.app(scope, receive, send_with_headers)
