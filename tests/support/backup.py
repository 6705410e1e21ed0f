"""Copies of a side's database taken during a test, and restoring one: what an operator does
with last night's backup (a file copy for SQLite, a copied database for PostgreSQL)."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from pathlib import Path

from sqlalchemy.engine import make_url

from integration_kit.runtime import Runtime
from tests.support.databases import _admin


async def take_backup(runtime: Runtime, tmp_path: Path) -> str:
    """A consistent copy of the runtime's database now; returns where it is."""
    url = make_url(runtime.db.url)
    await runtime.db.engine.dispose()  # PostgreSQL copies a database nobody is connected to
    if url.drivername.startswith("sqlite"):
        copy = tmp_path / f"backup-{uuid.uuid4().hex[:6]}.db"
        await asyncio.to_thread(_sqlite_copy, str(url.database), str(copy))
        return str(copy)
    name = f"test_backup_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{url.database}"')
    return name


async def restore_backup(runtime: Runtime, backup: str) -> None:
    """Put the backup back in place of the runtime's database (its connections are dropped)."""
    url = make_url(runtime.db.url)
    await runtime.db.engine.dispose()
    if url.drivername.startswith("sqlite"):
        await asyncio.to_thread(_sqlite_copy, backup, str(url.database))
        return
    await _admin(f'DROP DATABASE "{url.database}" WITH (FORCE)')
    await _admin(f'CREATE DATABASE "{url.database}" TEMPLATE "{backup}"')
    await _admin(f'DROP DATABASE "{backup}"')


def _sqlite_copy(source: str, target: str) -> None:
    # The backup API copies a consistent image, WAL contents included, and replaces the target.
    with sqlite3.connect(source) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    src.close()
    dst.close()
