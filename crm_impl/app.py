"""Assembles the CRM: runtime (database, peer client, dispatcher) and the FastAPI app."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from crm_impl.console.pages import STATIC, console_router
from crm_impl.console.security import ConsoleHeaders
from crm_impl.integration.endpoints import integration_router
from crm_impl.integration.reconcile import reconcile_side
from crm_impl.legacy import routes as legacy_routes
from crm_impl.operators.document import OPERATOR_API
from crm_impl.operators.endpoints import operator_router
from crm_impl.settings import CrmSettings
from crm_impl.tables import Message, Outbox, Ticket
from generated.client.api.tma import post_message, post_status
from integration_kit import reconcile_loop, ticket_fields
from integration_kit.api_docs import docs_router
from integration_kit.app import create_backend_app
from integration_kit.clock import Clock, SystemClock
from integration_kit.contract_version import PeerContract
from integration_kit.db import Database
from integration_kit.dispatcher import EventSender
from integration_kit.legacy_routes import LegacyRouteCalls, install
from integration_kit.outbound import MESSAGE, STATUS, MessageSender, TicketFieldSender
from integration_kit.outbox import OutboxRepository
from integration_kit.peer import make_peer_client
from integration_kit.ratelimit import OPERATOR_SCOPE
from integration_kit.runtime import Runtime, build_dispatcher, build_rate_limiter


def build_runtime(
    settings: CrmSettings,
    *,
    clock: Clock | None = None,
    peer_transport: httpx.AsyncBaseTransport | None = None,
) -> Runtime:
    """The CRM's live parts; tests pass their own clock and a transport to the TMA app."""
    clock = clock or SystemClock()
    peer_contract = PeerContract()  # what the peer announces, on its answers and requests
    db = Database.for_backend(settings, "crm")
    peer = make_peer_client(
        base_url=settings.peer_url,
        token=settings.peer_token,
        timeout_seconds=settings.peer_timeout_seconds,
        # Read per request: a sender switched to a new secret signs with it at once.
        signing_secret=lambda: settings.peer_signing_secret,
        clock=clock,
        transport=peer_transport,
        peer_contract=peer_contract,
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
        STATUS: TicketFieldSender(
            field=ticket_fields.STATUS,
            client=peer,
            operation=post_status.asyncio_detailed,
            clock=clock,
            ticket_model=Ticket,
        ),
    }
    dispatcher = build_dispatcher(
        settings=settings, db=db, repository=repository, senders=senders, clock=clock
    )
    limiter = build_rate_limiter(
        settings, side="crm", limits={OPERATOR_SCOPE: settings.operator_rate_limit}
    )
    runtime = Runtime(
        settings=settings,
        db=db,
        clock=clock,
        outbox=repository,
        peer=peer,
        dispatcher=dispatcher,
        limiter=limiter,
        peer_contract=peer_contract,
    )
    loop = reconcile_loop.attach(runtime, reconcile_side(outbox=repository, clock=clock))
    if loop is not None:
        runtime.services.append(loop)
    return runtime


def create_app(runtime: Runtime) -> FastAPI:
    docs = [docs_router(OPERATOR_API)] if runtime.settings.serves_api_docs else []
    app = create_backend_app(
        runtime,
        title="CRM helpdesk",
        routers=[
            integration_router(runtime),
            operator_router(runtime),
            console_router(runtime),
            *docs,
        ],
    )
    app.mount("/console/static", StaticFiles(directory=STATIC), name="console-static")
    app.add_middleware(ConsoleHeaders)
    if runtime.settings.legacy.routes_enabled:  # the cut-over window (docs/cutover.md)
        calls = LegacyRouteCalls(legacy_routes.ROUTES)
        install(app, runtime.settings.legacy, legacy_routes.legacy_router(runtime, calls), calls)
    return app
