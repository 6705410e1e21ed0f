"""Fresh, migrated databases for tests: SQLite, and PostgreSQL when TEST_DATABASE_URL is set.

Each side's schema is migrated once per test run into a template (a SQLite file, a PostgreSQL
template database); every test then gets a copy of it. The migrations still create every database
the tests use, only not once per test: `CREATE DATABASE ... TEMPLATE` takes a tenth of the time.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
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

_templates: dict[tuple[str, str], str] = {}  # (kind, side) -> SQLite path or PostgreSQL name
_made: list[str] = []  # every PostgreSQL template made, for dropping at the end
_template_dir = Path(tempfile.mkdtemp(prefix="tma-crm-test-templates-"))


def backends() -> list[str]:
    """The database kinds this run covers."""
    return ["sqlite", "postgresql"] if POSTGRES_URL else ["sqlite"]


def _admin_dsn() -> str:
    url = make_url(POSTGRES_URL)
    return url.set(drivername="postgresql").render_as_string(hide_password=False)


def _postgres_url(name: str) -> str:
    url = make_url(POSTGRES_URL).set(drivername="postgresql+asyncpg", database=name)
    return url.render_as_string(hide_password=False)


async def _admin(statement: str) -> None:
    admin = await asyncpg.connect(_admin_dsn())
    try:
        await admin.execute(statement)
    finally:
        await admin.close()


async def _template(kind: str, side: str) -> str:
    """The migrated template of `side`, made on first use."""
    # No lock: tests run one at a time; were two to race, each would make a complete template.
    if (kind, side) not in _templates:
        if kind == "sqlite":
            path = _template_dir / f"{side}-{uuid.uuid4().hex[:6]}.db"
            await asyncio.to_thread(upgrade, MIGRATIONS[side], f"sqlite+aiosqlite:///{path}")
            _templates[kind, side] = str(path)
        else:
            name = f"test_template_{side}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            await _admin(f'CREATE DATABASE "{name}"')
            _made.append(name)
            await asyncio.to_thread(upgrade, MIGRATIONS[side], _postgres_url(name))
            _templates[kind, side] = name
    return _templates[kind, side]


@asynccontextmanager
async def fresh_database(kind: str, side: str, tmp_path: Path) -> AsyncIterator[str]:
    """A new database for one side, migrated to head; dropped afterwards (PostgreSQL)."""
    template = await _template(kind, side)
    if kind == "sqlite":
        path = tmp_path / f"{side}-{uuid.uuid4().hex[:6]}.db"
        shutil.copyfile(template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    name = f"test_{side}_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield _postgres_url(name)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def drop_templates() -> None:
    """Remove the templates (called once when the test run ends)."""
    shutil.rmtree(_template_dir, ignore_errors=True)
    names = list(_made)
    _made.clear()
    _templates.clear()
    if names:
        asyncio.run(_drop_all(names))


async def _drop_all(names: list[str]) -> None:
    for name in names:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@asynccontextmanager
async def empty_database(kind: str, tmp_path: Path) -> AsyncIterator[str]:
    """A database nobody has migrated: what a backend meets before `migrate` ran."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'never-migrated.db'}"
        return
    name = f"test_empty_{uuid.uuid4().hex[:12]}"
    await _admin(f'CREATE DATABASE "{name}"')
    try:
        yield _postgres_url(name)
    finally:
        await _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
