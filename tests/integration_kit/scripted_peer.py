"""A transport that sits between a FaultyTransport and the peer app and answers chosen requests
itself, so a test can fail one ticket's deliveries while the others go through."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support.faults import FaultyTransport

Answer = httpx.Response | type[httpx.TransportError]


@dataclass
class Rule:
    """Requests whose body contains `needle` get `answer`: a response, or a transport error."""

    needle: str
    answer: Callable[[], Answer]
    hits: int = 0


@dataclass
class ScriptedPeer(httpx.AsyncBaseTransport):
    inner: httpx.AsyncBaseTransport
    rules: list[Rule] = field(default_factory=list)

    @classmethod
    def install(cls, outer: FaultyTransport) -> ScriptedPeer:
        """Put a scripted layer under `outer`, in front of the peer app it forwards to."""
        assert outer.inner is not None
        scripted = cls(inner=outer.inner)
        outer.inner = scripted
        return scripted

    def answer(self, needle: str, answer: Callable[[], Answer]) -> Rule:
        rule = Rule(needle, answer)
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        self.rules.clear()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = (await request.aread()).decode()
        for rule in self.rules:
            if rule.needle in body:
                rule.hits += 1
                answer = rule.answer()
                if isinstance(answer, httpx.Response):
                    return answer
                raise answer("injected for this request", request=request)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


def problem(
    status: int, type_: str, detail: str, headers: dict[str, str] | None = None
) -> Callable[[], httpx.Response]:
    """A problem+json answer, as a peer sends it."""
    content = json.dumps({"type": type_, "title": "Scripted", "status": status, "detail": detail})

    def make() -> httpx.Response:
        return httpx.Response(
            status,
            content=content.encode(),
            headers={"content-type": "application/problem+json", **(headers or {})},
        )

    return make


def plain(status: int, headers: dict[str, Any] | None = None) -> Callable[[], httpx.Response]:
    """A bare answer with no body, as a proxy or load balancer sends it."""

    def make() -> httpx.Response:
        return httpx.Response(status, headers=headers or {})

    return make
