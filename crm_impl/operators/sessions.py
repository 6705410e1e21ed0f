"""Console sign-in sessions: a random id in an HttpOnly cookie, only its SHA-256 in the database.

The CSRF token is derived from the session id (an HMAC keyed by it), so it needs no column, is
different for every session, and cannot be computed from what the database holds.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from crm_impl.tables import ConsoleSession, Operator

COOKIE = "crm_console"
CSRF_HEADER = "X-CSRF-Token"


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def csrf_token(session_id: str) -> str:
    """The CSRF token the console page sends back in a header with every write."""
    return hmac.new(session_id.encode(), b"crm-console-csrf", hashlib.sha256).hexdigest()


def csrf_matches(session_id: str, sent: str | None) -> bool:
    """Constant-time comparison of a sent CSRF token with the session's."""
    return sent is not None and hmac.compare_digest(csrf_token(session_id), sent)


async def start(
    session: AsyncSession, *, operator_id: uuid.UUID, now: datetime, lifetime: timedelta
) -> str:
    """A new session for the operator; returns the id for the cookie (stored only hashed)."""
    session_id = secrets.token_urlsafe(32)
    session.add(
        ConsoleSession(
            id_hash=_hash(session_id),
            operator_id=operator_id,
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    # Expired sessions of anyone are removed on the way; they open nothing anyway.
    await session.execute(delete(ConsoleSession).where(ConsoleSession.expires_at <= now))
    return session_id


async def operator_of(session: AsyncSession, session_id: str, *, now: datetime) -> Operator | None:
    """The operator signed in with `session_id`: none once expired, ended, or revoked."""
    return await session.scalar(
        select(Operator)
        .join(ConsoleSession, ConsoleSession.operator_id == Operator.id)
        .where(
            ConsoleSession.id_hash == _hash(session_id),
            ConsoleSession.expires_at > now,
            Operator.revoked_at.is_(None),
        )
    )


async def end(session: AsyncSession, session_id: str) -> None:
    """Sign out: the session row is deleted, so the cookie opens nothing any more."""
    await session.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == _hash(session_id)))


async def end_all_of(session: AsyncSession, operator_id: uuid.UUID) -> None:
    """End every session of an operator (on revoke)."""
    await session.execute(delete(ConsoleSession).where(ConsoleSession.operator_id == operator_id))
