"""Assembles the CRM: runtime (database, peer client, dispatcher) and the FastAPI app."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from crm_impl.console.pages import STATIC, console_router
from crm_impl.console.security import ConsoleHeaders
from crm_impl.integration.endpoints import integration_router
from crm_impl.operators.endpoints import operator_router
from crm_impl.settings import CrmSettings
from crm_impl.tables import Message, Outbox, Ticket
from generated.client.api.tma import post_message, post_status
from integration_kit.app import create_backend_app
from integration_kit.clock import Clock, SystemClock
from integration_kit.db import Database
from integration_kit.dispatcher import EventSender
from integration_kit.outbound import MESSAGE, STATUS, MessageSender, StatusSender
from integration_kit.outbox import OutboxRepository
from integration_kit.peer import make_peer_client
from integration_kit.runtime import Runtime, build_dispatcher


def build_runtime(
    settings: CrmSettings,
    *,
    clock: Clock | None = None,
    peer_transport: httpx.AsyncBaseTransport | None = None,
) -> Runtime:
    """The CRM's live parts; tests pass their own clock and a transport to the TMA app."""
    clock = clock or SystemClock()
    db = Database.for_backend(settings, "crm")
    peer = make_peer_client(
        base_url=settings.peer_url,
        token=settings.peer_token,
        timeout_seconds=settings.peer_timeout_seconds,
        transport=peer_transport,
    )
    repository = OutboxRepository(Outbox, Ticket)
    senders: dict[str, EventSender] = {
        MESSAGE: MessageSender(
            client=peer,
            post_message=post_message.asyncio_detailed,
            clock=clock,
            ticket_model=Ticket,
            message_model=Message,
        ),
        STATUS: StatusSender(
            client=peer, post_status=post_status.asyncio_detailed, clock=clock, ticket_model=Ticket
        ),
    }
    dispatcher = build_dispatcher(
        settings=settings, db=db, repository=repository, senders=senders, clock=clock
    )
    return Runtime(
        settings=settings, db=db, clock=clock, outbox=repository, peer=peer, dispatcher=dispatcher
    )


def create_app(runtime: Runtime) -> FastAPI:
    app = create_backend_app(
        runtime,
        title="CRM helpdesk",
        routers=[integration_router(runtime), operator_router(runtime), console_router(runtime)],
    )
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    app.add_middleware(ConsoleHeaders)
    return app
