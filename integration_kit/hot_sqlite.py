"""`hot_sql`'s driver for SQLite: the one sqlite3 connection, on the event loop's thread
(see sqlite_inline), through sqlite3's own cache of prepared statements."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from sqlalchemy.exc import DBAPIError

from integration_kit.narrowing import narrowed
from integration_kit.sqlite_inline import InlineConnection


class SQLiteDriver:
    def __init__(self, driver_connection: Any) -> None:
        self._connection = narrowed(driver_connection, InlineConnection).sqlite_connection

    async def fetchone(self, sql: str, args: Sequence[Any]) -> Sequence[Any] | None:
        try:
            row: Sequence[Any] | None = self._connection.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            raise DBAPIError.instance(sql, args, exc, sqlite3.Error) from exc
        return row

    async def execute(self, sql: str, args: Sequence[Any]) -> None:
        try:
            self._connection.execute(sql, args)
        except sqlite3.Error as exc:
            raise DBAPIError.instance(sql, args, exc, sqlite3.Error) from exc
