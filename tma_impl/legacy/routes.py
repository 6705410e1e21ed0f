"""The old TMA's webhooks, served during the cut-over window for an old CRM.

`POST /api/support/webhook/message` (the audit: `ticket_id`, `message`, `attachments`, `project`)
and `POST /api/support/webhook/status` (the audit names no path or body for it; assumed: the same
prefix, `ticket_id` and `status`). The old CRM named the TMA's own ticket id. A message is stored
as an operator reply like one from the contract (same bounds, Telegram file URLs refused, the
user notified through the outbox) but without the CRM's id, which the old body does not carry;
`backfill` matches it later.

Retries: the old body has no message id, so a message equal (body and attachments) to the
ticket's latest operator reply stored within RETRY_WINDOW is taken for the old CRM's retry and
stored no second time. That fails both ways: an operator who really sends the same text twice
within the window loses the second, and a retry arriving after another reply of the ticket, or
after the window, is stored twice.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Depends, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from generated.models import Attachment, SenderType, TicketStatus
from integration_kit.changelog import log_change
from integration_kit.inbound import (
    attachments_json,
    insert_unless_stored,
    log_status,
    not_known,
    reject_telegram_file_urls,
    ticket_query,
    update_ticket,
)
from integration_kit.legacy_routes import LegacyRouteCalls, legacy_guard
from integration_kit.runtime import Runtime, SessionDep
from integration_kit.schema import ChangeKind
from integration_kit.ticket_fields import wins
from tma_impl.notifications import enqueue_reply_notification
from tma_impl.support import events
from tma_impl.tables import ChangeLog, Message, Ticket

OLD_MESSAGE = "/api/support/webhook/message"
OLD_STATUS = "/api/support/webhook/status"
ROUTES = [OLD_MESSAGE, OLD_STATUS]
RETRY_WINDOW = timedelta(minutes=10)


class OldMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ticket_id: uuid.UUID
    message: str = Field(min_length=1, max_length=4096)
    attachments: list[Attachment] = Field(default_factory=list, max_length=10)
    project: str | None = None


class OldStatus(BaseModel):
    model_config = ConfigDict(extra="ignore")

    ticket_id: uuid.UUID
    status: TicketStatus


async def _ticket(session: Any, ticket_id: uuid.UUID) -> Ticket:
    ticket: Ticket | None = await session.scalar(
        ticket_query(Ticket, "id", True), {"key": ticket_id}
    )
    if ticket is None:
        raise not_known(f"No ticket {ticket_id} here.")
    return ticket


def legacy_router(runtime: Runtime, calls: LegacyRouteCalls) -> APIRouter:
    settings = runtime.settings.legacy
    router = APIRouter()

    @router.post(
        OLD_MESSAGE,
        status_code=201,
        dependencies=[Depends(legacy_guard(settings, calls, OLD_MESSAGE))],
    )
    async def old_message(body: OldMessage, response: Response, session: SessionDep) -> Any:
        reject_telegram_file_urls(body.attachments)
        ticket = await _ticket(session, body.ticket_id)
        now = runtime.clock.now()
        attachments = attachments_json(body.attachments)
        latest = await session.scalar(
            select(Message)
            .where(Message.ticket_id == ticket.id, Message.sender_type == SenderType.crm.value)
            .order_by(Message.seq.desc())
            .limit(1)
        )
        if (
            latest is not None
            and latest.body == body.message
            and latest.attachments == attachments
            and latest.created_at >= now - RETRY_WINDOW
        ):
            response.status_code = 200
            return {"ticket_id": ticket.id, "message_id": latest.id}
        values: dict[str, Any] = {
            "id": uuid.uuid4(),
            "ticket_id": ticket.id,
            "sender_type": SenderType.crm.value,
            "body": body.message,
            "attachments": attachments,
            "created_at": now,
        }
        stored = await session.scalar(
            insert_unless_stored(session, Message, key=("id",), returning="seq"), values
        )
        message = Message(seq=stored, **values)
        await update_ticket(session, ticket, {"updated_at": now} if now > ticket.updated_at else {})
        # As a reply received over the contract: in the change feed, on the Mini App's stream
        # (the ticket's row is locked by _ticket), and notified once.
        await log_change(
            session, ChangeLog, kind=ChangeKind.message, ticket_id=ticket.id, message_id=message.id
        )
        await events.record_message(session, ticket, message)
        enqueue_reply_notification(session, ticket=ticket, message=message, now=now)
        return {"ticket_id": ticket.id, "message_id": message.id}

    @router.post(OLD_STATUS, dependencies=[Depends(legacy_guard(settings, calls, OLD_STATUS))])
    async def old_status(body: OldStatus, session: SessionDep) -> Any:
        ticket = await _ticket(session, body.ticket_id)
        now = runtime.clock.now()
        # The old body has no time: the change is as new as its arrival (a retry changes
        # nothing, the status is already set).
        if ticket.status != body.status.value and wins(now, over=ticket.status_changed_at):
            await update_ticket(
                session,
                ticket,
                {"status": body.status.value, "status_changed_at": now, "updated_at": now},
            )
            await log_status(session, ChangeLog, ticket)
            await events.record_event(
                session, ticket_id=ticket.id, kind=events.STATUS, status=body.status.value, at=now
            )
        return {"ticket_id": ticket.id, "status": ticket.status}

    return router
