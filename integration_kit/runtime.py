"""What one backend process holds: its database, dispatcher and peer client, and their lifecycle."""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from sqlalchemy.ext.asyncio import AsyncSession

from generated.client import AuthenticatedClient
from integration_kit.clock import Clock
from integration_kit.contract_version import PeerContract
from integration_kit.db import Database
from integration_kit.dispatcher import Dispatcher, DispatcherConfig, EventSender
from integration_kit.narrowing import narrowed
from integration_kit.outbox import OutboxRepository
from integration_kit.ratelimit import INTEGRATION_SCOPE, RateLimiter
from integration_kit.retry import RetryPolicy
from integration_kit.settings import IntegrationSettings


@dataclass
class Runtime:
    """A backend's live parts. Tests build one per app with their own clock and transports."""

    settings: IntegrationSettings
    db: Database
    clock: Clock
    outbox: OutboxRepository
    peer: AuthenticatedClient
    dispatcher: Dispatcher
    # Request rate limits; the backends build it from settings (build_rate_limiter).
    limiter: RateLimiter = field(default_factory=lambda: RateLimiter(limits={}))
    extras: dict[str, Any] = field(default_factory=dict)
    # The peer's contract version as last announced to this process (the same object the peer
    # client records answers in).
    peer_contract: PeerContract = field(default_factory=PeerContract)
    run_dispatcher: bool = True
    closers: list[Callable[[], Any]] = field(default_factory=list)
    # Background work started with the dispatcher (start()) and stopped before it (stop()).
    services: list[Any] = field(default_factory=list)

    def start_delivery(self) -> None:
        self.dispatcher.start()
        for service in self.services:
            service.start()

    # Called (on the event loop) as soon as the server is asked to stop, before it waits for
    # open requests: long-lived responses (the Mini App's event streams) end themselves there.
    on_stopping: list[Callable[[], None]] = field(default_factory=list)
    # Set when the server begins to stop (from its signal handler, hence a threading.Event):
    # long-lived responses such as event streams end on it instead of holding the stop up.
    stopping: threading.Event = field(default_factory=threading.Event)

    async def close(self) -> None:
        for service in self.services:
            await service.stop()
        await self.dispatcher.stop()
        for closer in self.closers:
            result = closer()
            if hasattr(result, "__await__"):
                await result
        await self.peer.get_async_httpx_client().aclose()
        await self.limiter.close()
        await self.db.dispose()


def build_dispatcher(
    *,
    settings: IntegrationSettings,
    db: Database,
    repository: OutboxRepository,
    senders: Mapping[str, EventSender],
    clock: Clock,
) -> Dispatcher:
    """A dispatcher configured from settings and wired to wake after outbox commits."""
    policy = RetryPolicy(
        base_seconds=settings.retry.base_seconds,
        cap_seconds=settings.retry.cap_seconds,
        max_age_seconds=settings.retry.max_age_seconds,
        jitter=settings.retry.jitter,
    )
    config = DispatcherConfig(
        batch_size=settings.dispatcher_batch_size,
        concurrency=settings.dispatcher_concurrency,
        poll_seconds=settings.dispatcher_poll_seconds,
        lease_seconds=settings.lease_seconds,
        send_timeout_seconds=settings.peer_timeout_seconds,
        outage_base_seconds=settings.database_retry_base_seconds,
        outage_cap_seconds=settings.database_retry_cap_seconds,
    )
    dispatcher = Dispatcher(
        db=db, repository=repository, senders=senders, policy=policy, config=config, clock=clock
    )
    db.on_outbox_commit(dispatcher.wake)
    return dispatcher


def build_rate_limiter(
    settings: IntegrationSettings, *, side: str, limits: Mapping[str, str]
) -> RateLimiter:
    """The side's limiter: the integration API's limit per token plus the side's own `limits`."""
    return RateLimiter(
        limits={INTEGRATION_SCOPE: settings.integration_rate_limit, **limits},
        storage_url=settings.rate_limit_storage_url,
        key_prefix=f"{settings.rate_limit_key_prefix}:{side}",
    )


def lifespan_for(runtime: Runtime) -> Callable[[FastAPI], Any]:
    """Start the dispatcher with the app (unless it runs as a separate worker) and stop both."""

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if runtime.run_dispatcher:
            runtime.start_delivery()
        try:
            yield
        finally:
            await runtime.close()

    return lifespan


def runtime_of(request: Request) -> Runtime:
    return narrowed(request.app.state.runtime, Runtime)


async def session_dependency(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's session: commits after the endpoint returns, rolls back on any error."""
    async with runtime_of(request).db.transaction() as session:
        yield session


# `scope="function"` commits before the response is sent: a 201 is only ever sent for stored data.
SessionDep = Annotated[AsyncSession, Depends(session_dependency, scope="function")]
