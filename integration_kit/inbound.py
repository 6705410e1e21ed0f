"""The receiving rules of the contract (DESIGN §3), the same on both sides.

Ticket naming, idempotent message storage, last-writer-wins status, and the reopen-on-customer-
message rule. Services take the caller's session and never commit.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from types import UnionType
from typing import Any, TypeVar, Union, get_args, get_origin

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import AwareDatetime, BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from generated.models import (
    Attachment,
    MessageAccepted,
    MessageRequest,
    SenderType,
    StatusAccepted,
    StatusRequest,
    TicketStatus,
)
from integration_kit.problems import (
    FORBIDDEN_SENDER,
    IDEMPOTENCY_CONFLICT,
    TICKET_LINK_CONFLICT,
    TICKET_NOT_KNOWN,
    ProblemError,
)
from integration_kit.schema import MessageColumns, TicketColumns

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
    if ticket_id is not None:
        ticket = await session.get(model, ticket_id, with_for_update=for_update)
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
    query = select(model).where(model.external_id == external_ticket_id)
    if for_update:
        query = query.with_for_update()
    ticket = await session.scalar(query)
    if ticket is None:
        raise not_known(f"No ticket linked to external ticket {external_ticket_id} here (yet).")
    return ticket


def reject_telegram_file_urls(attachments: list[Attachment] | None) -> None:
    """Telegram file URLs embed the bot token: such an attachment is refused, never passed on."""
    for index, attachment in enumerate(attachments or []):
        if attachment.url.startswith(TELEGRAM_FILE_PREFIX):
            raise ProblemError(
                422,
                "urn:tma-crm:problem:validation",
                "Validation failed",
                "Telegram file URLs embed the bot token and are never passed on.",
                errors=[
                    _field_error(["body", "attachments", index, "url"], "Telegram file URL refused")
                ],
            )


def _field_error(loc: list[str | int], msg: str) -> Any:
    from generated.models import FieldError

    return FieldError(loc=loc, msg=msg, type="value_error")


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
    extra: dict[str, Any] | None = None,
) -> tuple[M, bool]:
    """Store a message received from the peer once; returns (message, created).

    A replay of the same (sender, external_message_id) returns the stored message; the same key
    with a different body or ticket is a 409, never a second row.
    """
    existing = await _find_message(session, model, sender, external_message_id)
    if existing is not None:
        return _same_or_conflict(existing, ticket, body, attachments), False
    message = model(
        id=uuid.uuid4(),
        ticket_id=ticket.id,
        external_message_id=external_message_id,
        sender_type=sender.value,
        body=body,
        attachments=attachments,
        created_at=created_at,
        **(extra or {}),
    )
    try:
        # A savepoint, so losing a race with a concurrent duplicate leaves the transaction usable.
        async with session.begin_nested():
            session.add(message)
    except IntegrityError:
        existing = await _find_message(session, model, sender, external_message_id)
        if existing is None:
            raise
        return _same_or_conflict(existing, ticket, body, attachments), False
    if sender is SenderType.tma:
        reopen_on_customer_message(ticket, at=created_at)
    touch(ticket, created_at)
    return message, True


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


def reopen_on_customer_message(ticket: TicketColumns, *, at: datetime) -> None:
    """A customer message written after the ticket was closed reopens it; both sides apply the
    same rule, so no status event is needed.

    `status_changed_at` keeps the time of the last status *change* (the close): the status is
    then a function of the last change and the customer's messages, which both sides end up
    holding whatever order they arrived in, so the sides converge (see `receive_status`).
    """
    if ticket.status == TicketStatus.closed and at > ticket.status_changed_at:
        ticket.status = TicketStatus.open


def apply_status(ticket: TicketColumns, request: StatusRequest) -> bool:
    """Last writer wins by changed_at; an older or equal change is acknowledged and ignored."""
    if request.changed_at <= ticket.status_changed_at:
        return False
    ticket.status = request.status.value
    ticket.status_changed_at = request.changed_at
    touch(ticket, request.changed_at)
    return True


def touch(ticket: TicketColumns, at: datetime) -> None:
    if at > ticket.updated_at:
        ticket.updated_at = at


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
) -> StatusAccepted:
    """`postStatus`: apply the peer's status change if it is newer than ours."""
    ticket = await resolve_ticket(
        session,
        ticket_model,
        ticket_id=request.ticket_id,
        external_ticket_id=request.external_ticket_id,
        for_update=True,  # two API processes must not interleave read-modify-write of a ticket
    )
    applied = apply_status(ticket, request)
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


# --- Reading request bodies as the contract's JSON Schema does ----------------------------------
#
# Pydantic is laxer than JSON Schema where it matters here: it takes "5" and false for integers,
# unix timestamps, "1700000000" and dates without seconds for date-times, UUIDs without hyphens,
# and null for optional fields the schema does not let be null. A peer that relies on any of that
# would break against another implementation of the same spec, so these bodies are read strictly:
# JSON types as JSON Schema has them (strict mode, but an integral 5.0 is an integer), RFC 3339
# date-times (a leap second is held as the last microsecond of its minute), hyphenated UUIDs, and
# no null for a known field (no request property of the spec is nullable; unknown fields are still
# ignored, tolerant reader).

B = TypeVar("B", bound=BaseModel)

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_DATE_TIME = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(?:[Zz]|([+-])([0-9]{2}):([0-9]{2}))"
)
_NOT_RFC3339 = "Input should be an RFC 3339 date-time"


def contract_body(model: type[B]) -> Callable[[Request], Awaitable[B]]:
    """A FastAPI dependency that reads the request body as `model`, strictly (see above).

    A body that is not JSON is a 400, one that breaks the schema a 422 listing the fields.
    """

    async def read(request: Request) -> B:
        raw = await request.body()
        huge: list[str] = []

        def parse_int(digits: str) -> int | float:
            # Valid JSON however long, but past Python's conversion limit: out of any range.
            if len(digits) > 4000:
                huge.append(digits)
                return float("-inf") if digits.startswith("-") else float("inf")
            return int(digits)

        try:
            # JSON between systems is UTF-8 (RFC 8259); json.loads alone would take UTF-16 too.
            data = json.loads(raw.decode(), parse_constant=_reject_constant, parse_int=parse_int)
        except (ValueError, RecursionError):
            raise RequestValidationError(
                [{"type": "json_invalid", "loc": ("body",), "msg": "Invalid JSON"}]
            ) from None
        reading = _Reading()
        conformed = _conform(model, data, ("body",), reading)
        if reading.errors:
            raise RequestValidationError(reading.errors)
        # Usually nothing needed rewriting, and pydantic reads the raw body as it came.
        body = json.dumps(conformed) if reading.rewritten or huge else raw
        try:
            return model.model_validate_json(body, strict=True)
        except ValidationError as exc:
            raise RequestValidationError(
                [
                    {"type": err["type"], "loc": ("body", *err["loc"]), "msg": err["msg"]}
                    for err in exc.errors(include_url=False)
                ]
            ) from None

    return read


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


@dataclass
class _Reading:
    errors: list[dict[str, Any]] = field(default_factory=list)
    rewritten: bool = False  # a value was rewritten for pydantic to read it as JSON Schema does


def _conform(annotation: Any, value: Any, loc: tuple[str | int, ...], reading: _Reading) -> Any:
    """`value` with JSON Schema's reading applied where pydantic's differs; errors noted."""
    annotation = _without_none(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if not isinstance(value, dict):
            return value
        conformed = dict(value)
        for name, info in annotation.model_fields.items():
            key = info.alias or name
            if key not in value:
                continue
            if value[key] is None:
                reading.errors.append(_error((*loc, key), "null_not_allowed", "Leave it out"))
                continue
            conformed[key] = _conform(info.annotation, value[key], (*loc, key), reading)
        return conformed
    if get_origin(annotation) is list and isinstance(value, list):
        (item,) = get_args(annotation)
        return [_conform(item, v, (*loc, i), reading) for i, v in enumerate(value)]
    if annotation is uuid.UUID and isinstance(value, str) and not _UUID.fullmatch(value):
        reading.errors.append(_error(loc, "uuid_format", "Input should be a hyphenated UUID"))
    elif annotation in (datetime, AwareDatetime) and isinstance(value, str):
        return _rfc3339(value, loc, reading)
    elif annotation is int and isinstance(value, float) and value.is_integer():
        reading.rewritten = True
        return int(value)  # JSON Schema: 5.0 is an integer
    return value


def _without_none(annotation: Any) -> Any:
    if get_origin(annotation) in (Union, UnionType):
        args = [a for a in get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _rfc3339(value: str, loc: tuple[str | int, ...], reading: _Reading) -> str:
    """The date-time in a form pydantic reads the same, or `value` with an error appended."""
    found = _DATE_TIME.fullmatch(value)
    if found is None:
        reading.errors.append(_error(loc, "datetime_format", _NOT_RFC3339))
        return value
    year, month, day, hour, minute, second = (int(part) for part in found.group(1, 2, 3, 4, 5, 6))
    fraction, sign, zone_hours, zone_minutes = found.group(7, 8, 9, 10)
    micro = int((fraction or "0")[:6].ljust(6, "0"))
    offset = timedelta(hours=int(zone_hours or 0), minutes=int(zone_minutes or 0))
    try:
        if second > 60 or int(zone_minutes or 0) > 59:
            raise ValueError
        zone = timezone(-offset if sign == "-" else offset)  # ValueError from 24:00 on
        moment = datetime(year or 1, month, day, hour, minute, min(second, 59), micro, zone)
    except ValueError:
        reading.errors.append(_error(loc, "datetime_format", _NOT_RFC3339))
        return value
    try:
        if year == 0:
            raise OverflowError
        in_utc = moment.astimezone(UTC)
    except OverflowError:
        reading.errors.append(_error(loc, "datetime_range", "Date-time outside years 1-9999 UTC"))
        return value
    if second != 60:
        return value  # pydantic reads it as it is
    if (in_utc.hour, in_utc.minute) != (23, 59):
        reading.errors.append(_error(loc, "datetime_format", "Second 60 only at a leap second"))
        return value
    reading.rewritten = True
    return moment.replace(microsecond=999999).isoformat()


def _error(loc: tuple[str | int, ...], type_: str, msg: str) -> dict[str, Any]:
    return {"type": type_, "loc": loc, "msg": msg}
