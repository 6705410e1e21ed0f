"""Hot paths' statements run on the database driver, inside the session's transaction.

SQLAlchemy's execution path (ORM session, compiled cache lookup by cache key, execution context,
result objects, the greenlet bridge) cost more per statement than the statement itself: profiled
under `make bench`'s relay, it was most of both backends' CPU per message. The statements stay
SQLAlchemy Core constructs, built once from the tables (so the schema keeps one definition);
this module compiles each once per dialect and runs it on the raw driver connection of the
session's own transaction, with SQLAlchemy's own conversions of the parameters and results.
So a hot statement commits or rolls back with everything else the session does.

The driver calls are in one small module per dialect (`hot_sqlite`, `hot_postgres`) behind the
`Driver` interface. Driver errors come out as SQLAlchemy's exceptions, as they would through
SQLAlchemy (a locked or lost database is still a 503). Statements are reported to the engine's
`before_cursor_execute` listeners, so what counts or traces statements still sees them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from sqlalchemy import inspect, select
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import SessionTransaction
from sqlalchemy.orm.attributes import instance_state

from integration_kit.narrowing import narrowed

__all__ = ["Driver", "HotSQL", "hot_sql", "load_object", "row_object", "row_query"]

M = TypeVar("M")

_SESSION_KEY = "hot_sql"


class Driver(Protocol):
    """One dialect's way of running a compiled statement on its driver connection."""

    async def fetchone(self, sql: str, args: Sequence[Any]) -> Sequence[Any] | None: ...

    async def execute(self, sql: str, args: Sequence[Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class _Compiled:
    sql: str
    names: tuple[str, ...]  # the parameters in the order the SQL takes them
    fixed: Mapping[str, Any]  # values bound in the statement itself (literal(0) and the like)
    binders: tuple[Callable[[Any], Any] | None, ...]
    readers: tuple[Callable[[Any], Any] | None, ...]


_COMPILED: dict[tuple[Any, str, tuple[str, ...]], _Compiled] = {}


def _compile(statement: Any, dialect: Dialect, keys: tuple[str, ...]) -> _Compiled:
    compiled: Any = statement.compile(dialect=dialect, column_keys=list(keys))
    if compiled.insert_prefetch or compiled.update_prefetch:
        # A Python-side column default would be left out here: hot statements get every value.
        raise ValueError(f"hot statement needs column defaults: {compiled.string}")
    names = tuple(compiled.positiontup or ())
    fixed = {
        name: bind.value
        for name, bind in compiled.binds.items()
        if name in names and name not in keys and bind.value is not None
    }
    # The per-type conversions SQLAlchemy itself applies (UUIDs as hex on SQLite, JSON encoded,
    # aware datetimes stored as UTC); read from the compiled statement as SQLAlchemy does.
    processors = compiled._bind_processors
    binders = tuple(processors.get(name) for name in names)
    columns = getattr(statement, "exported_columns", ())
    readers = tuple(column.type._cached_result_processor(dialect, None) for column in columns)
    return _Compiled(compiled.string, names, fixed, binders, readers)


class HotSQL:
    """Runs Core statements on the driver connection of one session's transaction."""

    def __init__(
        self,
        driver: Driver,
        dialect: Dialect,
        connection: Connection,
        transaction: SessionTransaction | None,
    ) -> None:
        self._driver = driver
        self._dialect = dialect
        self._connection = connection
        self.transaction = transaction

    @property
    def dialect_name(self) -> str:
        return str(self._dialect.name)

    def _args(self, statement: Any, params: Mapping[str, Any]) -> tuple[_Compiled, list[Any]]:
        keys = tuple(params)
        key = (statement, self._dialect.name, keys)
        compiled = _COMPILED.get(key)
        if compiled is None:
            compiled = _COMPILED[key] = _compile(statement, self._dialect, keys)
        fixed = compiled.fixed
        args = [
            (params[name] if name in params else fixed[name])
            if binder is None
            else binder(params[name] if name in params else fixed[name])
            for name, binder in zip(compiled.names, compiled.binders, strict=True)
        ]
        listeners = self._connection.engine.dispatch.before_cursor_execute
        if listeners:
            listeners(self._connection, None, compiled.sql, args, None, False)
        return compiled, args

    async def execute(self, statement: Any, params: Mapping[str, Any]) -> None:
        compiled, args = self._args(statement, params)
        await self._driver.execute(compiled.sql, args)

    async def first(self, statement: Any, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row, converted as SQLAlchemy would, or None."""
        compiled, args = self._args(statement, params)
        row = await self._driver.fetchone(compiled.sql, args)
        if row is None:
            return None
        return tuple(
            value if reader is None else reader(value)
            for value, reader in zip(row, compiled.readers, strict=True)
        )

    async def scalar(self, statement: Any, params: Mapping[str, Any]) -> Any:
        row = await self.first(statement, params)
        return None if row is None else row[0]


async def hot_sql(session: AsyncSession) -> HotSQL:
    """The session's transaction, for statements on the driver (begun if it was not yet).

    Objects added to the session are flushed first, as SQLAlchemy's autoflush would before a
    statement, so a hot statement sees (and may refer to) everything written before it."""
    sync = session.sync_session
    if sync.new or sync.dirty or sync.deleted:
        await session.flush()
    cached: HotSQL | None = session.info.get(_SESSION_KEY)
    transaction = sync.get_transaction()
    if cached is not None and transaction is not None and cached.transaction is transaction:
        return cached
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    dialect = connection.dialect
    driver: Driver
    if dialect.name == "sqlite":
        from integration_kit import hot_sqlite

        driver = hot_sqlite.SQLiteDriver(raw.driver_connection)
    else:
        from integration_kit import hot_postgres

        driver = hot_postgres.PostgresDriver(raw.dbapi_connection, dialect)
    sync_connection = narrowed(connection.sync_connection, Connection)
    hot = HotSQL(driver, dialect, sync_connection, sync.get_transaction())
    session.info[_SESSION_KEY] = hot
    return hot


def row_query(model: type[Any]) -> Any:
    """A SELECT of every mapped column of `model`, in the order `load_object` reads them."""
    return select(*(attr.columns[0] for attr in inspect(model).column_attrs))


async def load_object(
    session: AsyncSession, model: type[M], statement: Any, params: Mapping[str, Any]
) -> M | None:
    """The first row of `statement` (a `row_query(model)`, filtered) as a persistent object of
    the session, as `session.scalar(select(model)...)` would give it, read on the driver.

    An object the session holds already for that row is returned as it is (the ORM's own rule:
    a query does not overwrite loaded objects). A new one is made from the row and attached
    with its history clean, so only what the caller changes is flushed.

    The new object is made the way the ORM's own loader makes one (`sqlalchemy.orm.loading`,
    pinned with SQLAlchemy in requirements.lock): an instance without `__init__`, its values
    written straight into its state as loaded values, its identity key set, and put in the
    session's identity map. Building it through the constructor, `make_transient_to_detached`
    and `session.add` cost more than reading the row (profiled on the CRM's receiving path)."""
    hot = await hot_sql(session)
    row = await hot.first(statement, params)
    if row is None:
        return None
    shape = _shape_of(model)
    values = dict(zip(shape.keys, row, strict=True))
    key = (model, tuple(values[name] for name in shape.primary_key), None)
    sync = session.sync_session
    held: M | None = sync.identity_map.get(key)
    if held is not None:
        return held
    loaded: M = shape.manager.new_instance()
    state = instance_state(loaded)
    state.dict.update(values)
    state.key = key
    state.identity_token = None
    state.session_id = sync.hash_key
    sync.identity_map._add_unpresent(state, key)
    return loaded


def row_object(model: type[M], values: Mapping[str, Any]) -> M:
    """An instance of `model` holding `values` as its loaded state, in no session: a row just
    written on the driver, handed to code that only reads it (never added to a session).

    Made as `load_object` makes one, without the constructor: setting each attribute through
    the ORM's instrumentation cost more than the INSERT that stored the row."""
    loaded: M = _shape_of(model).manager.new_instance()
    instance_state(loaded).dict.update(values)
    return loaded


@dataclass(frozen=True, slots=True)
class _Shape:
    manager: Any  # the mapper's ClassManager
    keys: tuple[str, ...]  # the mapped columns' attribute keys, in `row_query`'s order
    primary_key: tuple[str, ...]


_SHAPES: dict[type[Any], _Shape] = {}


def _shape_of(model: type[Any]) -> _Shape:
    shape = _SHAPES.get(model)
    if shape is None:
        mapper = inspect(model)
        if mapper.inherits is not None or mapper.polymorphic_on is not None:
            # The identity key below is the mapper's own only for a plain mapped class.
            raise ValueError(f"load_object needs a plain mapped class, not {model!r}")
        keys = tuple(attr.key for attr in mapper.column_attrs)
        by_column = {attr.columns[0]: attr.key for attr in mapper.column_attrs}
        primary_key = tuple(by_column[column] for column in mapper.primary_key)
        shape = _SHAPES[model] = _Shape(mapper.class_manager, keys, primary_key)
    return shape
