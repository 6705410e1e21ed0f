"""`hot_sql`'s driver for PostgreSQL: the asyncpg connection under SQLAlchemy's adapter.

The adapter begins its transaction lazily, at the first statement, and serialises statements on
a mutex; both are kept here (`_transaction`, `_start_transaction`, `_execute_mutex` are the
adapter's own, pinned with SQLAlchemy in requirements.lock). asyncpg prepares each statement
once per connection and keeps it. Errors go through the adapter's own translation, then into
SQLAlchemy's exceptions, as they would through SQLAlchemy."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NoReturn

from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError


class PostgresDriver:
    def __init__(self, adapted: Any, dialect: Dialect) -> None:
        self._adapted = adapted
        self._connection = adapted._connection  # asyncpg.Connection
        self._error: type[Exception] = dialect.loaded_dbapi.Error

    def _raise(self, sql: str, args: Sequence[Any], error: Exception) -> NoReturn:
        try:
            self._adapted._handle_exception(error)  # raises the adapter's DBAPI error
        except self._error as translated:
            raise DBAPIError.instance(sql, list(args), translated, self._error) from translated
        raise error

    async def fetchone(self, sql: str, args: Sequence[Any]) -> Sequence[Any] | None:
        async with self._adapted._execute_mutex:
            try:
                if self._adapted._transaction is None:
                    await self._adapted._start_transaction()
                row: Sequence[Any] | None = await self._connection.fetchrow(sql, *args)
            except Exception as error:
                self._raise(sql, args, error)
        return row

    async def execute(self, sql: str, args: Sequence[Any]) -> None:
        async with self._adapted._execute_mutex:
            try:
                if self._adapted._transaction is None:
                    await self._adapted._start_transaction()
                await self._connection.execute(sql, *args)
            except Exception as error:
                self._raise(sql, args, error)
