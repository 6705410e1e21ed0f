"""The receiving rules of the contract (docs/design.md §3), the same on both sides.

Ticket naming, idempotent message storage, last-writer-wins ticket fields (the rule is
`ticket_fields.wins`; status is the first field), and the reopen-on-customer-
message rule. Services take the caller's session and never commit.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Hashable
from datetime import datetime
from typing import Any, TypeVar, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from generated.models import (
    Attachment,
    FieldError,
    MessageAccepted,
    MessageRequest,
    SenderType,
    StatusAccepted,
    StatusRequest,
    TicketStatus,
)
from integration_kit.changelog import log_change
from integration_kit.hot_sql import hot_sql, load_object, row_object, row_query
from integration_kit.problems import (
    FORBIDDEN_SENDER,
    IDEMPOTENCY_CONFLICT,
    TICKET_LINK_CONFLICT,
    TICKET_NOT_KNOWN,
    VALIDATION,
    ProblemError,
)
from integration_kit.schema import ChangeKind, ChangeLogColumns, MessageColumns, TicketColumns
from integration_kit.ticket_fields import STATUS, FieldChange, TicketField

T = TypeVar("T", bound=TicketColumns)
M = TypeVar("M", bound=MessageColumns)

TELEGRAM_FILE_PREFIX = "https://api.telegram.org/file/"


def not_known(detail: str) -> ProblemError:
    return ProblemError(404, TICKET_NOT_KNOWN, "Ticket not known here", detail)


def link_conflict(detail: str) -> ProblemError:
    return ProblemError(409, TICKET_LINK_CONFLICT, "Ticket ids contradict the stored link", detail)


async def resolve_ticket(
    session: AsyncSession,
    model: type[T],
    *,
    ticket_id: uuid.UUID | None,
    external_ticket_id: uuid.UUID,
    for_update: bool = False,
) -> T:
    """Find the ticket a request names, recording the sender's id where the link is missing.

    By `ticket_id` (ours) when given, else by `external_ticket_id` (the sender's). 404 when we
    have no such ticket (yet); 409 when the two ids contradict what we stored.
    """
    # Read on the driver (hot_sql.load_object): the ORM's query cost most of a received
    # message's database time.
    if ticket_id is not None:
        ticket: T | None = await load_object(
            session, model, ticket_row_query(model, "id", for_update), {"key": ticket_id}
        )
        if ticket is None:
            raise not_known(f"No ticket {ticket_id} here.")
        if ticket.external_id is None:
            other = await session.scalar(
                select(model.id).where(model.external_id == external_ticket_id)
            )
            if other is not None:
                raise link_conflict(
                    f"external_ticket_id {external_ticket_id} is linked to another ticket here."
                )
            ticket.external_id = external_ticket_id
        elif ticket.external_id != external_ticket_id:
            raise link_conflict(
                f"Ticket {ticket_id} is linked to external ticket {ticket.external_id}, "
                f"not {external_ticket_id}."
            )
        return ticket
    ticket = await load_object(
        session,
        model,
        ticket_row_query(model, "external_id", for_update),
        {"key": external_ticket_id},
    )
    if ticket is None:
        raise not_known(f"No ticket linked to external ticket {external_ticket_id} here (yet).")
    return ticket


def ticket_query(model: type[TicketColumns], column: str, for_update: bool) -> Any:
    """The ticket by `column` = :key, built once (building it per request showed up in
    profiles); `for_update` before changing it: two API processes must not interleave
    read-modify-write of one ticket."""
    # A class is hashable; typeshed's Hashable just does not say so for `type[...]`.
    return _ticket_query(cast(Hashable, model), column, for_update)


def ticket_row_query(model: type[TicketColumns], column: str, for_update: bool) -> Any:
    """`ticket_query` as a row of columns, for `hot_sql.load_object`."""
    return _ticket_row_query(cast(Hashable, model), column, for_update)


@functools.cache
def _ticket_row_query(model: Any, column: str, for_update: bool) -> Any:
    query = row_query(model).where(getattr(model, column) == bindparam("key"))
    return query.with_for_update() if for_update else query


@functools.cache
def _ticket_query(model: Any, column: str, for_update: bool) -> Any:
    query = select(model).where(getattr(model, column) == bindparam("key"))
    return query.with_for_update() if for_update else query


def reject_telegram_file_urls(attachments: list[Attachment] | None) -> None:
    """Telegram file URLs embed the bot token: such an attachment is refused, never passed on."""
    for index, attachment in enumerate(attachments or []):
        if attachment.url.startswith(TELEGRAM_FILE_PREFIX):
            raise ProblemError(
                422,
                VALIDATION,
                "Validation failed",
                "Telegram file URLs embed the bot token and are never passed on.",
                errors=[
                    FieldError(
                        loc=["body", "attachments", index, "url"],
                        msg="Telegram file URL refused",
                        type="value_error",
                    )
                ],
            )


def attachments_json(attachments: list[Attachment] | None) -> list[dict[str, Any]]:
    return [a.model_dump(mode="json", exclude_none=True) for a in attachments or []]


async def store_inbound_message(
    session: AsyncSession,
    model: type[M],
    ticket: TicketColumns,
    *,
    sender: SenderType,
    external_message_id: uuid.UUID,
    body: str,
    attachments: list[dict[str, Any]],
    created_at: datetime,
    change_log: type[ChangeLogColumns],
    extra: dict[str, Any] | None = None,
) -> tuple[M, bool]:
    """Store a message received from the peer once, with its change-log row; returns
    (message, created).

    A replay of the same (sender, external_message_id) returns the stored message; the same key
    with a different body or ticket is a 409, never a second row.
    """
    values: dict[str, Any] = {
        "id": uuid.uuid4(),
        "ticket_id": ticket.id,
        "external_message_id": external_message_id,
        "sender_type": sender.value,
        "body": body,
        "attachments": attachments,
        "created_at": created_at,
        **(extra or {}),
    }
    # One statement for the common case (a new message) and for the race with a concurrent
    # duplicate alike: the unique key decides, and a replay stores nothing.
    insert = insert_unless_stored(
        session, model, key=("sender_type", "external_message_id"), returning="seq"
    )
    stored = await (await hot_sql(session)).scalar(insert, values)
    if stored is None:
        existing = await _find_message(session, model, sender, external_message_id)
        if existing is None:  # the conflicting row is there by definition
            raise RuntimeError(f"message {external_message_id} conflicted but is not stored")
        return _same_or_conflict(existing, ticket, body, attachments), False
    # The stored row, as an object for the caller (not added to the session: it is written).
    message = row_object(model, {"seq": stored, **values})
    await log_change(
        session, change_log, kind=ChangeKind.message, ticket_id=ticket.id, message_id=message.id
    )
    changes: dict[str, Any] = {}
    if sender is SenderType.tma:
        status = status_after_customer_message(ticket, at=created_at)
        if status != ticket.status:
            changes["status"] = status
    if created_at > ticket.updated_at:
        changes["updated_at"] = created_at
    await update_ticket(session, ticket, changes)
    return message, True


def insert_unless_stored(
    session: AsyncSession, model: type[Any], *, key: tuple[str, ...], returning: str
) -> Any:
    """INSERT ... ON CONFLICT (key) DO NOTHING RETURNING `returning`: one statement stores a new
    row, and a replay (or a concurrent duplicate) stores nothing and returns no row. SQLite and
    PostgreSQL both have it. Execute it with the row's values."""
    return _insert_unless_stored(
        session.get_bind().dialect.name,
        model.__table__,
        key,
        returning,
    )


@functools.cache
def _insert_unless_stored(dialect: str, table: Table, key: tuple[str, ...], returning: str) -> Any:
    # Built once per table: building it per request showed up in profiles.
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    return insert(table).on_conflict_do_nothing(index_elements=key).returning(table.c[returning])


async def update_ticket(
    session: AsyncSession, ticket: TicketColumns, changes: dict[str, Any]
) -> None:
    """Write changed columns of a loaded ticket with one UPDATE and keep the object in step.

    On the receiving path this replaces the unit of work's flush of the changed ticket, which
    cost more per message than storing the message itself.
    """
    if not changes:
        return
    table = type(ticket).__table__  # type: ignore[attr-defined]
    await write_ticket(session, table, ticket.id, changes)
    for key, value in changes.items():
        set_committed_value(ticket, key, value)


async def write_ticket(
    session: AsyncSession, table: Table, ticket_id: uuid.UUID, changes: dict[str, Any]
) -> None:
    """One UPDATE of the ticket's changed columns, on the driver (hot_sql)."""
    hot = await hot_sql(session)
    columns = tuple(sorted(changes))
    await hot.execute(
        _update_ticket(table, columns),
        {"ticket_id": ticket_id, **{f"new_{k}": changes[k] for k in columns}},
    )


@functools.cache
def _update_ticket(table: Table, columns: tuple[str, ...]) -> Any:
    return (
        update(table)
        .where(table.c.id == bindparam("ticket_id"))
        .values({column: bindparam(f"new_{column}") for column in columns})
    )


async def _find_message(
    session: AsyncSession, model: type[M], sender: SenderType, external_message_id: uuid.UUID
) -> M | None:
    return await session.scalar(
        select(model).where(
            model.sender_type == sender.value, model.external_message_id == external_message_id
        )
    )


def _same_or_conflict(
    existing: M, ticket: TicketColumns, body: str, attachments: list[dict[str, Any]]
) -> M:
    if (
        existing.ticket_id != ticket.id
        or existing.body != body
        or existing.attachments != attachments
    ):
        raise ProblemError(
            409,
            IDEMPOTENCY_CONFLICT,
            "Idempotency key reused",
            f"Message {existing.external_message_id} was already received with a different "
            "ticket or body.",
        )
    return existing


def status_after_customer_message(ticket: TicketColumns, *, at: datetime) -> str:
    """A customer message written after the ticket was closed reopens it; both sides apply the
    same rule, so no status event is needed.

    `status_changed_at` keeps the time of the last status *change* (the close): the status is
    then a function of the last change and the customer's messages, which both sides end up
    holding whatever order they arrived in, so the sides converge (see `receive_status`).
    """
    return reopened_status(ticket.status, ticket.status_changed_at, at=at)


def reopened_status(status: str, status_changed_at: datetime, *, at: datetime) -> str:
    """`status_after_customer_message` from the ticket's status and the time it changed."""
    if status == TicketStatus.closed and at > status_changed_at:
        return TicketStatus.open
    return status


async def log_status(
    session: AsyncSession, change_log: type[ChangeLogColumns], ticket: TicketColumns
) -> None:
    """The change log's row for the status change just applied to `ticket`."""
    await log_change(
        session,
        change_log,
        kind=ChangeKind.status,
        ticket_id=ticket.id,
        status=ticket.status,
        changed_at=ticket.status_changed_at,
    )


async def receive_field_change(
    session: AsyncSession,
    field: TicketField,
    request: FieldChange,
    *,
    ticket_model: type[T],
) -> tuple[T, bool]:
    """A ticket field's change from the peer (live or through reconcile): the ticket it names,
    and whether the change won by last writer wins (`ticket_fields.wins`) and was applied."""
    ticket = await resolve_ticket(
        session,
        ticket_model,
        ticket_id=request.ticket_id,
        external_ticket_id=request.external_ticket_id,
        for_update=True,  # two API processes must not interleave read-modify-write of a ticket
    )
    applied = field.apply(ticket, field.value_of(request), request.changed_at)
    return ticket, applied


def require_sender(sender: SenderType, caller: SenderType) -> None:
    """Only the calling side may be named as a message's sender."""
    if sender is not caller:
        raise ProblemError(
            403,
            FORBIDDEN_SENDER,
            "Sender is not the caller",
            f"The {caller.value} side may only deliver messages with sender={caller.value!r}.",
        )


async def receive_message(
    session: AsyncSession,
    *,
    request: MessageRequest,
    caller: SenderType,
    ticket_model: type[T],
    message_model: type[M],
    change_log: type[ChangeLogColumns],
    extra: dict[str, Any] | None = None,
) -> tuple[MessageAccepted, M, T, bool]:
    """`postMessage`: store the peer's message once; returns (answer, message, ticket, created)."""
    require_sender(request.sender, caller)
    reject_telegram_file_urls(request.attachments)
    ticket = await resolve_ticket(
        session,
        ticket_model,
        ticket_id=request.ticket_id,
        external_ticket_id=request.external_ticket_id,
        for_update=True,  # two API processes must not interleave read-modify-write of a ticket
    )
    message, created = await store_inbound_message(
        session,
        message_model,
        ticket,
        sender=request.sender,
        external_message_id=request.external_message_id,
        body=request.message,
        attachments=attachments_json(request.attachments),
        created_at=request.created_at,
        change_log=change_log,
        extra=extra,
    )
    answer = MessageAccepted(
        message_id=message.id,
        ticket_id=ticket.id,
        external_message_id=request.external_message_id,
    )
    return answer, message, ticket, created


async def receive_status(
    session: AsyncSession,
    *,
    request: StatusRequest,
    ticket_model: type[T],
    message_model: type[MessageColumns],
    change_log: type[ChangeLogColumns],
) -> StatusAccepted:
    """`postStatus`: apply the peer's status change if it is newer than ours."""
    ticket, applied = await receive_field_change(
        session, STATUS, request, ticket_model=ticket_model
    )
    if applied:
        await log_status(session, change_log, ticket)
    if applied and ticket.status == TicketStatus.closed:
        # A close that crossed a customer message written after it: that message reopens the
        # ticket here too, as it did (or will) on the side that stored it first.
        later = await session.scalar(
            select(message_model.id)
            .where(
                message_model.ticket_id == ticket.id,
                message_model.sender_type == SenderType.tma.value,
                message_model.created_at > ticket.status_changed_at,
            )
            .limit(1)
        )
        if later is not None:
            ticket.status = TicketStatus.open
    return StatusAccepted(
        ticket_id=ticket.id,
        status=TicketStatus(ticket.status),
        status_changed_at=ticket.status_changed_at,
        applied=applied,
    )
