"""Assembles the TMA: runtime (database, CRM client, Bot API, dispatcher) and the FastAPI app."""

from __future__ import annotations

import httpx
from fastapi import FastAPI

from generated.client.api.crm import post_message, post_status
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
from integration_kit.ratelimit import USER_SCOPE
from integration_kit.runtime import Runtime, build_dispatcher, build_rate_limiter
from tma_impl.integration.endpoints import integration_router
from tma_impl.integration.reconcile import reconcile_side
from tma_impl.legacy import routes as legacy_routes
from tma_impl.miniapp.routes import miniapp_router
from tma_impl.notifications import NOTIFY_REPLY, ReplyNotificationSender
from tma_impl.outbound import TicketCreatedSender
from tma_impl.settings import TmaSettings
from tma_impl.support import events
from tma_impl.support.document import USER_API
from tma_impl.support.endpoints import HUB, WAKEUPS, support_router
from tma_impl.support.live import PostgresWakeups, TicketEventHub, plain_postgres_dsn
from tma_impl.support.service import TICKET_CREATED
from tma_impl.tables import Message, Outbox, Ticket
from tma_impl.telegram import BotApi, LogBotApi
from tma_impl.telegram import MessageSender as BotSender


def build_runtime(
    settings: TmaSettings,
    *,
    clock: Clock | None = None,
    peer_transport: httpx.AsyncBaseTransport | None = None,
    bot_transport: httpx.AsyncBaseTransport | None = None,
) -> Runtime:
    """The TMA's live parts; tests pass their own clock, a transport to the CRM app and one to a
    fake Bot API."""
    clock = clock or SystemClock()
    peer_contract = PeerContract()  # what the peer announces, on its answers and requests
    db = Database.for_backend(settings, "tma")
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
    closers = []
    bot: BotSender
    if settings.bot_token:
        bot_http = httpx.AsyncClient(transport=bot_transport, timeout=settings.peer_timeout_seconds)
        closers.append(bot_http.aclose)
        bot = BotApi(http=bot_http, base_url=settings.bot_api_base_url, token=settings.bot_token)
    else:
        bot = LogBotApi()  # development without a bot: notifications go to the log
    repository = OutboxRepository(Outbox, Ticket)
    senders: dict[str, EventSender] = {
        TICKET_CREATED: TicketCreatedSender(client=peer, clock=clock),
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
        NOTIFY_REPLY: ReplyNotificationSender(bot=bot, webapp_url=settings.webapp_url),
    }
    dispatcher = build_dispatcher(
        settings=settings, db=db, repository=repository, senders=senders, clock=clock
    )
    hub = TicketEventHub()
    db.on_commit(events.WRITTEN, hub.notify)
    extras: dict[str, object] = {HUB: hub}
    if not db.is_sqlite:
        wakeups = PostgresWakeups(plain_postgres_dsn(db.url), hub)
        extras[WAKEUPS] = wakeups
        closers.append(wakeups.close)
    runtime = Runtime(
        settings=settings,
        db=db,
        clock=clock,
        outbox=repository,
        peer=peer,
        dispatcher=dispatcher,
        limiter=build_rate_limiter(
            settings, side="tma", limits={USER_SCOPE: settings.user_rate_limit}
        ),
        closers=list(closers),
        extras=extras,
        peer_contract=peer_contract,
        on_stopping=[hub.stop],
    )
    loop = reconcile_loop.attach(runtime, reconcile_side(outbox=repository))
    if loop is not None:
        runtime.services.append(loop)
    return runtime


def create_app(runtime: Runtime) -> FastAPI:
    docs = [docs_router(USER_API)] if runtime.settings.serves_api_docs else []
    app = create_backend_app(
        runtime,
        title="Mini App support",
        routers=[
            integration_router(runtime),
            support_router(runtime),
            miniapp_router(runtime),
            *docs,
        ],
    )
    if runtime.settings.legacy.routes_enabled:  # the cut-over window (docs/cutover.md)
        calls = LegacyRouteCalls(legacy_routes.ROUTES)
        install(app, runtime.settings.legacy, legacy_routes.legacy_router(runtime, calls), calls)
    return app
