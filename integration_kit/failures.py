"""Failures of the database, told in one line that says what to do, never with a traceback.

The command line prints these instead of a traceback (`--debug` shows it), and the dispatcher
logs one such line per attempt while the database is away. A database URL is never repeated
whole: it may carry a password; only its host, port and database name are named.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from dataclasses import dataclass

from alembic.util import CommandError as AlembicError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, InterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError


@dataclass(frozen=True)
class Where:
    """The database a backend uses, as a message may name it."""

    url: str
    prefix: str  # "TMA_": settings are TMA_DATABASE_URL, TMA_DATA_DIR
    program: str  # "python -m tma_impl"

    @property
    def name(self) -> str:
        parsed = make_url(self.url)
        if parsed.drivername.startswith("sqlite"):
            return f"SQLite database {parsed.database}"
        port = parsed.port or 5432
        return f"PostgreSQL database {parsed.host or 'localhost'}:{port}/{parsed.database or ''}"


class DatabaseNotReady(Exception):
    """The database answers but cannot be used as it is (not migrated, or by newer code)."""


def first_line(exc: BaseException) -> str:
    """An exception's own text, first line only (no SQL, no parameters)."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    lines = str(exc).strip().splitlines()
    return lines[0][:300] if lines else type(exc).__name__


def one_line(exc: BaseException) -> str:
    """`Type: text` for a log line; for a socket error, the system's words for its errno."""
    inner = exc.orig if isinstance(exc, DBAPIError) and exc.orig is not None else exc
    if isinstance(inner, OSError) and inner.errno and inner.errno > 0:
        return f"{type(inner).__name__}: {os.strerror(inner.errno).lower()}"
    if isinstance(inner, OSError) and inner.strerror:
        return f"{type(inner).__name__}: {inner.strerror.lower()}"
    return f"{type(inner).__name__}: {first_line(exc)}"


def _unreachable(exc: BaseException) -> bool:
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        return _unreachable(exc.orig)
    if isinstance(exc, ConnectionError | socket.gaierror | TimeoutError | PoolTimeoutError):
        return True
    if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError | PermissionError):
        return True
    text = str(exc).lower()
    # asyncpg's errors for a connection lost or a server shutting down, wrapped by SQLAlchemy.
    return any(
        marker in text
        for marker in (
            "connection was closed",
            "connection is closed",
            "connection refused",
            "the database system is shutting down",
            "the database system is starting up",
            "terminating connection",
        )
    )


def is_database_outage(exc: BaseException) -> bool:
    """True for a database that does not answer or broke the connection."""
    return isinstance(exc, InterfaceError) or _unreachable(exc)


def is_database_error(exc: BaseException) -> bool:
    """True for any error the database or its driver raised (not a bug of ours)."""
    return isinstance(exc, DBAPIError | sqlite3.Error | PoolTimeoutError) or _unreachable(exc)


def describe(exc: BaseException, where: Where) -> str | None:
    """What went wrong with the database and what to do, in one line; None if not recognised."""
    if isinstance(exc, DatabaseNotReady):
        return str(exc)
    if isinstance(exc, AlembicError):
        text = first_line(exc)
        if "Can't locate revision" in text:
            return (
                f"the {where.name} was migrated by a newer version of this code ({text}): run "
                f"that version, or point {where.prefix}DATABASE_URL at another database"
            )
        return f"migrating the {where.name} failed: {text}"
    if not isinstance(exc, DBAPIError | OSError | sqlite3.Error):
        return None
    text = first_line(exc)
    lowered = text.lower()
    if "no such table" in lowered or ("relation" in lowered and "does not exist" in lowered):
        return f"the database has no tables yet: run `{where.program} migrate` ({text})"
    if lowered.startswith("database") and "does not exist" in lowered:
        return (
            f"the {where.name} does not exist ({text}): create it (CREATE DATABASE), or fix "
            f"{where.prefix}DATABASE_URL"
        )
    if "password authentication failed" in lowered or (
        lowered.startswith("role") and "does not exist" in lowered
    ):
        return (
            f"the {where.name} refused the login ({text}): fix the user or password in "
            f"{where.prefix}DATABASE_URL"
        )
    if "unable to open database file" in lowered:
        return (
            f"cannot open the {where.name} ({text}): check {where.prefix}DATABASE_URL or "
            f"{where.prefix}DATA_DIR"
        )
    if "database is locked" in lowered:
        return f"the {where.name} is locked by another process ({text}): try again later"
    if _unreachable(exc):
        return (
            f"cannot reach the {where.name} ({one_line(exc)}): start the database server, or "
            f"point {where.prefix}DATABASE_URL at a running one"
        )
    if isinstance(exc, OSError):
        return f"{exc.strerror or text}: {exc.filename or where.name}"
    return f"database unavailable: {text}"
