"""Senders for the events both sides emit the same way: a message, and a change of a ticket
field (status, or any `TicketField`).

The event payload holds the contract body as written at commit time, without the receiver's ticket
id; that id is filled in at send time from the ticket's stored link, so an event written before the
link was known still names the ticket the receiver's way once it is.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from generated import models
from generated.client import AuthenticatedClient
from generated.client.models import MessageAccepted, MessageRequest
from generated.client.types import Response
from generated.models import SenderType
from integration_kit import ticket_fields
from integration_kit.clock import Clock
from integration_kit.outbox import ClaimedEvent, Delivery, enqueue
from integration_kit.retry import Delivered, Outcome, classify_failure
from integration_kit.schema import MessageColumns, OutboxColumns, TicketColumns
from integration_kit.ticket_fields import TicketField

MESSAGE = "message"
STATUS = ticket_fields.STATUS.name

PostMessage = Callable[..., Awaitable[Response[Any]]]
PostFieldChange = Callable[..., Awaitable[Response[Any]]]


def outcome_of(response: Response[Any], *, expected: type, now: datetime) -> Outcome:
    """Delivered with the parsed body for 2xx, else retry-later or give-up by the delivery rules."""
    if 200 <= response.status_code < 300 and isinstance(response.parsed, expected):
        return Delivered(response.parsed)
    headers = {key.lower(): value for key, value in response.headers.items()}
    return classify_failure(response.status_code, response.content, headers, now=now)


def with_peer_ticket(payload: dict[str, Any], peer_ticket_id: uuid.UUID | None) -> dict[str, Any]:
    body = dict(payload["request"])
    if peer_ticket_id is not None:
        body["ticket_id"] = str(peer_ticket_id)
    return body


async def record_peer_ticket_ids(
    session: AsyncSession,
    ticket_model: type[TicketColumns],
    answers: Sequence[tuple[ClaimedEvent, uuid.UUID]],
) -> None:
    """Store the peer's ticket ids we did not know yet (each event with the id its answer named);
    a different id than the one stored, or two ids for one ticket, is an error.

    A round sends many events per ticket, often before the link was known (a backlog of new
    tickets): one executemany and one read check them all.
    """
    wanted: dict[uuid.UUID, uuid.UUID] = {}
    for event, peer_ticket_id in answers:
        if peer_ticket_id == event.peer_ticket_id:
            continue  # the link the event was sent with: stored already
        named = wanted.setdefault(event.ticket_id, peer_ticket_id)
        if named != peer_ticket_id:
            raise ValueError(
                f"the peer answered with tickets {named} and {peer_ticket_id} for ticket "
                f"{event.ticket_id}"
            )
    if not wanted:
        return
    table = ticket_model.__table__  # type: ignore[attr-defined]
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("ours"), table.c.external_id.is_(None))
        .values(external_id=bindparam("theirs")),
        [{"ours": ours, "theirs": theirs} for ours, theirs in wanted.items()],
    )
    known: dict[uuid.UUID, uuid.UUID | None] = dict(
        (
            await session.execute(
                select(table.c.id, table.c.external_id).where(table.c.id.in_(list(wanted)))
            )
        ).all()
    )
    for ours, theirs in wanted.items():
        stored = known.get(ours)
        if stored is not None and stored != theirs:
            raise ValueError(
                f"the peer answered with ticket {theirs}, but ticket {ours} is linked to {stored}"
            )


async def record_peer_message_ids(
    session: AsyncSession,
    message_model: type[MessageColumns],
    pairs: Sequence[tuple[str, uuid.UUID]],
) -> None:
    """Store the peer's id of each of our messages (ours as written in the event's payload), in
    one executemany statement: a round settles hundreds of them."""
    if not pairs:
        return
    table = message_model.__table__  # type: ignore[attr-defined]
    await session.execute(
        update(table)
        .where(table.c.id == bindparam("ours"))
        .values(external_message_id=bindparam("theirs")),
        [{"ours": uuid.UUID(ours), "theirs": theirs} for ours, theirs in pairs],
    )


A = TypeVar("A")


def accepted_as(result: Any, expected: type[A]) -> A:
    """The receiver's parsed answer, as the type its operation documents."""
    if not isinstance(result, expected):
        raise TypeError(f"expected {expected.__name__}, got {type(result).__name__}")
    return result


class MessageSender:
    """Sends `message` events with the generated `postMessage` of the peer's tag."""

    def __init__(
        self,
        *,
        client: AuthenticatedClient,
        post_message: PostMessage,
        clock: Clock,
        ticket_model: type[TicketColumns],
        message_model: type[MessageColumns],
    ) -> None:
        self.client = client
        self.post_message = post_message
        self.clock = clock
        self.ticket_model = ticket_model
        self.message_model = message_model

    async def send(self, event: ClaimedEvent) -> Outcome:
        body = MessageRequest.from_dict(with_peer_ticket(event.payload, event.peer_ticket_id))
        response = await self.post_message(client=self.client, body=body)
        return outcome_of(response, expected=MessageAccepted, now=self.clock.now())

    async def record_deliveries(
        self, session: AsyncSession, deliveries: Sequence[Delivery]
    ) -> None:
        accepted = [(event, accepted_as(result, MessageAccepted)) for event, result in deliveries]
        await record_peer_message_ids(
            session,
            self.message_model,
            [(event.payload["message_id"], result.message_id) for event, result in accepted],
        )
        await record_peer_ticket_ids(
            session, self.ticket_model, [(event, result.ticket_id) for event, result in accepted]
        )


class TicketFieldSender:
    """Sends a ticket field's events (kind `field.name`) with the generated operation that
    carries its change, `operation` being that operation's `asyncio_detailed` in the peer's tag.

    One sender for every field: a field is a `TicketField` declaration, not a copy of this.
    """

    def __init__(
        self,
        *,
        field: TicketField,
        client: AuthenticatedClient,
        operation: PostFieldChange,
        clock: Clock,
        ticket_model: type[TicketColumns],
    ) -> None:
        self.field = field
        self.client = client
        self.operation = operation
        self.clock = clock
        self.ticket_model = ticket_model

    async def send(self, event: ClaimedEvent) -> Outcome:
        body = self.field.wire_request.from_dict(
            with_peer_ticket(event.payload, event.peer_ticket_id)
        )
        response = await self.operation(client=self.client, body=body)
        return outcome_of(response, expected=self.field.answer, now=self.clock.now())

    async def record_deliveries(
        self, session: AsyncSession, deliveries: Sequence[Delivery]
    ) -> None:
        await record_peer_ticket_ids(
            session,
            self.ticket_model,
            [
                (event, accepted_as(result, self.field.answer).ticket_id)
                for event, result in deliveries
            ],
        )


def enqueue_message_event(
    session: AsyncSession,
    outbox_model: type[OutboxColumns],
    *,
    message: MessageColumns,
    sender: SenderType,
    now: datetime,
    operator_name: str | None = None,
) -> None:
    """Announce a message written here, in the transaction that stores it."""
    request = models.MessageRequest(
        external_ticket_id=message.ticket_id,
        external_message_id=message.id,
        sender=sender,
        message=message.body,
        attachments=[models.Attachment.model_validate(a) for a in message.attachments] or None,
        created_at=message.created_at,
        operator_name=operator_name,
    )
    enqueue(
        session,
        outbox_model,
        ticket_id=message.ticket_id,
        kind=MESSAGE,
        now=now,
        payload={
            "message_id": str(message.id),
            "request": request.model_dump(mode="json", exclude_none=True),
        },
    )


def enqueue_field_event(
    session: AsyncSession,
    outbox_model: type[OutboxColumns],
    field: TicketField,
    *,
    ticket: TicketColumns,
    now: datetime,
) -> None:
    """Announce the value of `field` the ticket holds now, in the transaction that changed it.

    The event's kind is the field's name and its payload the contract's request as written now
    (`{"request": ...}`), the same for every field and the same as status events always had.
    """
    request = field.change_request(ticket)
    enqueue(
        session,
        outbox_model,
        ticket_id=ticket.id,
        kind=field.name,
        now=now,
        payload={"request": request.model_dump(mode="json", exclude_none=True)},
    )
