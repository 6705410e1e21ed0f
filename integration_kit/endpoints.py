"""The `/api/integration` router both backends serve: bearer token and signature, postMessage,
postStatus and listChanges.

A backend adds the operations only it serves (the CRM's createTicket) to the router it gets here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from generated.models import (
    ChangePage,
    MessageAccepted,
    MessageRequest,
    SenderType,
    StatusAccepted,
    StatusRequest,
)
from integration_kit.auth import require_bearer, require_signature
from integration_kit.contract_body import contract_body
from integration_kit.contract_version import record_contract_version
from integration_kit.feed import FeedTables, list_changes
from integration_kit.inbound import receive_message, receive_status
from integration_kit.runtime import Runtime, SessionDep
from integration_kit.schema import MessageColumns, TicketColumns
from integration_kit.throttle import per_token_limit

CURSOR = "^[0-9a-z.]+$"
MAX_PAGE = 500

# Runs in the transaction that stored a new message (never for a replay).
OnMessageStored = Callable[[AsyncSession, TicketColumns, MessageColumns], Awaitable[None]]
# Runs in the transaction that applied a status change (never for an older or equal one).
OnStatusApplied = Callable[[AsyncSession, StatusAccepted], Awaitable[None]]


def admission(runtime: Runtime) -> Callable[[Request], Awaitable[None]]:
    """One dependency running the checks every integration request passes, in this order: bearer
    token, signature, the peer's contract version, rate limit. The rate limit counts only
    requests whose token and signature were accepted: one budget per token, which a forged
    request cannot spend; and only the peer's own requests tell its version.

    One dependency rather than four: FastAPI's resolution of each dependency cost about as much
    as the check itself on the receiving path (profiled under `make bench`'s relay)."""
    bearer = require_bearer(lambda: runtime.settings.inbound_tokens)
    signature = require_signature(lambda: runtime.settings.inbound_signing_secrets, runtime.clock)
    version = record_contract_version(runtime.peer_contract)

    async def admit(request: Request) -> None:
        await bearer(request)
        await signature(request)
        await version(request)
        await per_token_limit(request)

    return admit


def integration_router(
    runtime: Runtime,
    *,
    caller: SenderType,
    ticket_model: type[TicketColumns],
    message_model: type[MessageColumns],
    feed: FeedTables,
    message_columns: Callable[[MessageRequest], dict[str, Any]] | None = None,
    on_message_stored: OnMessageStored | None = None,
    on_status_applied: OnStatusApplied | None = None,
) -> APIRouter:
    """Serve postMessage and postStatus for messages written on the `caller` side, and this
    side's change feed."""
    router = APIRouter(prefix="/api/integration", dependencies=[Depends(admission(runtime))])

    @router.post("/messages", status_code=201, operation_id="postMessage")
    async def post_message(
        request: Annotated[MessageRequest, Depends(contract_body(MessageRequest))],
        response: Response,
        session: SessionDep,
    ) -> MessageAccepted:
        answer, message, ticket, created = await receive_message(
            session,
            request=request,
            caller=caller,
            ticket_model=ticket_model,
            message_model=message_model,
            change_log=feed.log,
            extra=message_columns(request) if message_columns else None,
        )
        if created and on_message_stored is not None:
            await on_message_stored(session, ticket, message)
        response.status_code = 201 if created else 200
        return answer

    @router.post("/status", operation_id="postStatus")
    async def post_status(
        request: Annotated[StatusRequest, Depends(contract_body(StatusRequest))],
        session: SessionDep,
    ) -> StatusAccepted:
        answer = await receive_status(
            session,
            request=request,
            ticket_model=ticket_model,
            message_model=message_model,
            change_log=feed.log,
        )
        if answer.applied and on_status_applied is not None:
            await on_status_applied(session, answer)
        return answer

    # Absent optional fields are left out, never sent as null (the contract says so).
    @router.get("/changes", operation_id="listChanges", response_model_exclude_none=True)
    async def get_changes(
        session: SessionDep,
        after: Annotated[str | None, Query(min_length=1, max_length=128, pattern=CURSOR)] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    ) -> ChangePage:
        return await list_changes(session, feed, after=after, limit=limit, now=runtime.clock.now())

    return router
