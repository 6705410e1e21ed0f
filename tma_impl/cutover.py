"""The TMA's side of the cut-over commands: what `link` and `backfill` need to know of it."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from generated.models import Attachment, CreateTicketRequest, SenderType
from integration_kit.backfill import PeerMessage, match
from integration_kit.link import LinkSide
from integration_kit.outbound import MESSAGE, enqueue_message_event
from integration_kit.outbox import enqueue
from tma_impl.legacy import peer_ticket_id
from tma_impl.support.service import TICKET_CREATED, customer_of
from tma_impl.tables import Message, Outbox, TelegramUser, Ticket


async def _customer(session: AsyncSession, ticket: Any) -> dict[str, Any]:
    user = await session.get(TelegramUser, ticket.telegram_user_id)
    if user is None:
        return {}
    return {
        "telegram_user_id": user.id,
        "first_name": user.first_name or None,
        "last_name": user.last_name,
        "username": user.username,
        "language_code": user.language_code,
    }


LINK = LinkSide(
    name="tma",
    ticket_model=Ticket,
    message_model=Message,
    legacy_peer_id=peer_ticket_id,
    export_customer=_customer,
)


@dataclass
class BackfillReport:
    matched: list[tuple[uuid.UUID, uuid.UUID]] = field(default_factory=list)  # (CRM's, ours)
    sent: int = 0
    created: int = 0
    lines: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"matched {len(self.matched)} message(s) both sides have, queued {self.sent} "
            f"message(s) the CRM never got, {self.created} ticket(s) it never got"
        )


async def backfill(
    session: AsyncSession, *, peers: Sequence[PeerMessage], window: timedelta, now: datetime
) -> BackfillReport:
    """Match the old messages here against the CRM's copies; queue what the CRM never got.

    Considered: messages without the CRM's id and without an outbox event (those from the old
    TMA, and replies an old CRM delivered through the old webhook), so a second run finds
    nothing new to do. A ticket is created on the CRM only when it has no link here and the
    CRM's export does not name it.
    """
    report = BackfillReport()
    by_ticket: dict[uuid.UUID, list[PeerMessage]] = defaultdict(list)
    for peer in peers:
        by_ticket[peer.tma_ticket_id].append(peer)
    on_crm = {p.tma_ticket_id for p in peers} | {p.crm_ticket_id for p in peers}
    rows = await session.scalars(
        select(Message)
        .where(Message.external_message_id.is_(None), Message.sender_type.in_(["tma", "crm"]))
        .order_by(Message.seq)
    )
    old: dict[uuid.UUID, list[Message]] = defaultdict(list)
    for message in rows:
        old[message.ticket_id].append(message)
    for ticket_id, messages in old.items():
        ticket = await session.get(Ticket, ticket_id)
        if ticket is None:  # the foreign key makes this impossible
            raise RuntimeError(f"message of ticket {ticket_id}, which is not stored")
        queued = await _queued_message_ids(session, ticket_id)
        if ticket.external_id is None:
            if ticket_id in on_crm:
                report.lines.append(
                    f"ticket {ticket_id}: the CRM has it but it is not linked: link"
                )
            elif not queued:
                await _create_on_crm(session, ticket, messages, now=now, report=report)
            continue
        found = match(messages, by_ticket.get(ticket_id, []), window=window)
        for ours, theirs in found.pairs:
            ours.external_message_id = theirs.message_id
            report.matched.append((theirs.message_id, ours.id))
        for ours in found.only_here:
            if ours.sender_type != SenderType.tma:
                report.lines.append(f"message {ours.id}: an operator reply the CRM has not got")
            elif str(ours.id) not in queued:
                await enqueue_message_event(
                    session, Outbox, message=ours, sender=SenderType.tma, now=now
                )
                report.sent += 1
        for theirs in found.only_there:
            report.lines.append(
                f"CRM message {theirs.message_id} of ticket {ticket_id}: no copy here"
            )
    elsewhere = set(by_ticket) - set(old)
    if elsewhere:
        here = set(await session.scalars(select(Ticket.id).where(Ticket.id.in_(elsewhere))))
        for ticket_id in sorted(elsewhere - here):
            crm_id = by_ticket[ticket_id][0].crm_ticket_id
            report.lines.append(f"CRM ticket {crm_id}: not a ticket of the TMA; left alone")
    return report


async def _queued_message_ids(session: AsyncSession, ticket_id: uuid.UUID) -> set[str]:
    payloads = await session.scalars(
        select(Outbox.payload).where(
            Outbox.ticket_id == ticket_id, Outbox.kind.in_([MESSAGE, TICKET_CREATED])
        )
    )
    return {str(p.get("message_id")) for p in payloads}


async def _create_on_crm(
    session: AsyncSession,
    ticket: Ticket,
    messages: Sequence[Message],
    *,
    now: datetime,
    report: BackfillReport,
) -> None:
    """A ticket the old CRM never got: createTicket with its first message, then the rest."""
    first, *rest = messages
    user = await session.get(TelegramUser, ticket.telegram_user_id)
    if user is None:  # the foreign key makes this impossible
        raise RuntimeError(f"ticket {ticket.id} of user {ticket.telegram_user_id}, not stored")
    request = CreateTicketRequest(
        external_ticket_id=ticket.id,
        subject=ticket.subject,
        message=first.body,
        external_message_id=first.id,
        attachments=[Attachment.model_validate(a) for a in first.attachments] or None,
        customer=customer_of(user),
        created_at=first.created_at,
    )
    enqueue(
        session,
        Outbox,
        ticket_id=ticket.id,
        kind=TICKET_CREATED,
        now=now,
        payload={
            "message_id": str(first.id),
            "request": request.model_dump(mode="json", exclude_none=True),
        },
    )
    report.created += 1
    for message in rest:
        await enqueue_message_event(
            session, Outbox, message=message, sender=SenderType.tma, now=now
        )
        report.sent += 1


async def backfill_step(
    session: AsyncSession, peers: list[PeerMessage], window: timedelta, now: datetime
) -> tuple[list[str], list[tuple[uuid.UUID, uuid.UUID]]]:
    """`backfill --peer-messages`: the report's lines and the matches for the CRM."""
    report = await backfill(session, peers=peers, window=window, now=now)
    return [*report.lines, report.summary()], report.matched
