"""Alembic, shared: each backend's migrations/env.py calls `run_env`, and `upgrade` runs them.

The database is only ever created by migrating; production code never calls create_all.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from alembic import command, context
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from sqlalchemy import MetaData, pool
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from integration_kit.db import async_url


def alembic_config(script_location: Path, url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", async_url(url).replace("%", "%%"))
    return config


def upgrade(script_location: Path, url: str, revision: str = "head") -> None:
    """Migrate the database at `url` to `revision` (blocking; call it off the event loop)."""
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(script_location, url), revision)
    if url.startswith("sqlite"):
        database = url.split("///", 1)[-1]
        if database and database != ":memory:":
            # WAL lets readers and the one writer work at once; set here, once, while no other
            # process has the file open (switching needs an exclusive lock).
            with sqlite3.connect(database) as connection:
                connection.execute("PRAGMA journal_mode=WAL")


def run_env(metadata: MetaData) -> None:
    """The body of a backend's env.py."""
    url = context.config.get_main_option("sqlalchemy.url") or ""
    if context.is_offline_mode():
        context.configure(
            url=url,
            target_metadata=metadata,
            literal_binds=True,
            render_as_batch=url.startswith("sqlite"),
        )
        with context.begin_transaction():
            context.run_migrations()
        return
    asyncio.run(_run_online(url, metadata))


async def _run_online(url: str, metadata: MetaData) -> None:
    engine = create_async_engine(url, poolclass=pool.NullPool)
    async with engine.connect() as connection:
        await connection.run_sync(_do_run, metadata)
    await engine.dispose()


def _do_run(connection: Connection, metadata: MetaData) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


async def schema_differences(url: str, metadata: MetaData) -> list[Any]:
    """What Alembic would change to make the database at `url` match `metadata` ([] if nothing)."""

    def compare(connection: Connection) -> list[Any]:
        migration = MigrationContext.configure(connection, opts={"compare_type": True})
        return list(compare_metadata(migration, metadata))

    engine = create_async_engine(async_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            return await connection.run_sync(compare)
    finally:
        await engine.dispose()
