"""Fresh, migrated databases for tests: SQLite, and PostgreSQL when TEST_DATABASE_URL is set."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from sqlalchemy.engine import make_url

from integration_kit.migrate import upgrade

ROOT = Path(__file__).resolve().parents[2]
MIGRATIONS = {"tma": ROOT / "tma_impl" / "migrations", "crm": ROOT / "crm_impl" / "migrations"}
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL", "")


def backends() -> list[str]:
    """The database kinds this run covers."""
    return ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]


def _admin_dsn() -> str:
    url = make_url(POSTGRES_URL)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


@asynccontextmanager
async def fresh_database(kind: str, side: str, tmp_path: Path) -> AsyncIterator[str]:
    """A new database for one side, migrated to head; dropped afterwards (PostgreSQL)."""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / f'{side}-{uuid.uuid4().hex[:6]}.db'}"
        await asyncio.to_thread(upgrade, MIGRATIONS[side], url)
        yield url
        return
    name = f"test_{side}_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_admin_dsn())
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = make_url(POSTGRES_URL).set(drivername="postgresql+asyncpg", database=name)
    rendered = url.render_as_string(hide_password=False)
    try:
        await asyncio.to_thread(upgrade, MIGRATIONS[side], rendered)
        yield rendered
    finally:
        admin = await asyncpg.connect(_admin_dsn())
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
