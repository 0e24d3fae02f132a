"""The one way to reach the database: statements built from the tables, run in a transaction.

Every statement is a SQLAlchemy construct built from the SQLModel tables. A :class:`Statement`
is compiled once per dialect and kept: its SQL text, the order of its parameters with the
column type's own converter for each, and the converters of the columns it returns. A
:class:`Tx` runs it on the transaction's driver connection (``sqlite3`` called inline, or
``asyncpg``), so a chat turn pays neither the ORM nor SQLAlchemy's per-call execution path,
and every value still crosses as the column's type says (times, days, JSON, booleans).

A transaction begins and ends explicitly: :meth:`Database.transaction
<storage.db.Database.transaction>` commits on success and rolls back on error. The ``BEGIN``
itself is sent with the first statement that writes or locks (``INSERT``/``UPDATE``/
``DELETE``, ``SELECT … FOR UPDATE``): reads before it see what they would see inside the
transaction at READ COMMITTED, and a transaction that only reads, or writes in one final
statement, saves two round trips. :meth:`Tx.savepoint` nests, the same way on both databases.

Example::

    CLAIM = Statement(upsert_ignore(ProcessedEvent), keys=("platform", "event_id", "at"))
    async with db.transaction() as store:
        added = await store.tx.count(CLAIM, platform="slack", event_id="Ev1", at=now)
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import asyncpg
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import asyncpg as pg_asyncpg
from sqlalchemy.dialects.sqlite import pysqlite
from sqlalchemy.sql.dml import UpdateBase
from sqlmodel import SQLModel

Row = tuple[Any, ...]
Processor = Callable[[Any], Any] | None
M = TypeVar("M", bound=SQLModel)
T = TypeVar("T")

DIALECTS: dict[str, sa.Dialect] = {
    "sqlite": pysqlite.dialect(),
    "postgresql": pg_asyncpg.dialect(),  # type: ignore[no-untyped-call]
}
_REQUIRED = object()

INTEGRITY_ERRORS: tuple[type[Exception], ...] = (sqlite3.IntegrityError, asyncpg.IntegrityConstraintViolationError)
"""A unique key or constraint refused a write."""

CONNECTION_ERRORS: tuple[type[Exception], ...] = (
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    ConnectionError,
)
"""The connection died under a statement (a restarted server, ``pg_terminate_backend``)."""


def unique_conflict(exc: BaseException) -> str | None:
    """The table whose unique key refused a write, or None for any other error."""
    if isinstance(exc, asyncpg.UniqueViolationError):
        return exc.table_name or None
    if isinstance(exc, sqlite3.IntegrityError):
        text = str(exc)
        if text.startswith("UNIQUE constraint failed: "):
            return text.removeprefix("UNIQUE constraint failed: ").split(".", 1)[0]
    return None


class DatabaseUnavailable(Exception):
    """The database could not be reached; nothing was written."""


DATABASE_ERRORS: tuple[type[Exception], ...] = (
    sqlite3.Error,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    DatabaseUnavailable,
    sa.exc.DBAPIError,
)
"""What a database call raises when the database, not the caller, failed (counted as database errors)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """A statement compiled for one dialect."""

    sql: str
    binds: tuple[tuple[str, Processor, Any], ...]  # name, the column type's converter, default
    results: tuple[Processor, ...]  # one converter per returned column
    writes: bool  # it writes or locks rows: the transaction must have begun


class Statement:
    """A statement built from the tables, compiled once for each dialect it runs on.

    ``build`` is the construct itself, or a function of the dialect's name for statements that
    differ between the databases (``ON CONFLICT``). ``keys`` names the columns an ``INSERT``
    takes as parameters (as ``Connection.execute(insert, {...})`` does); an ``UPDATE`` or a
    ``SELECT`` names its parameters with ``sa.bindparam``. ``writes`` marks a ``SELECT`` whose
    CTEs write.
    """

    __slots__ = ("_build", "_keys", "_plans", "_writes")

    def __init__(
        self,
        build: sa.Executable | Callable[[str], sa.Executable],
        *,
        keys: Sequence[str] | None = None,
        writes: bool = False,
    ) -> None:
        self._build = build
        self._keys = list(keys) if keys is not None else None
        self._writes = writes
        self._plans: dict[str, Plan] = {}

    def plan(self, dialect: str) -> Plan:
        plan = self._plans.get(dialect)
        if plan is None:
            stmt = self._build if isinstance(self._build, sa.Executable) else self._build(dialect)
            plan = self._plans[dialect] = compile_plan(stmt, dialect, keys=self._keys, writes=self._writes)
        return plan


def compile_plan(
    stmt: sa.Executable,
    dialect_name: str,
    *,
    keys: list[str] | None = None,
    writes: bool = False,
    values: Mapping[str, Any] | None = None,
) -> Plan:
    """Compile ``stmt``. With ``values`` (a statement built for one call) every parameter's value
    is fixed in the plan, and ``IN`` lists are expanded."""
    dialect = DIALECTS[dialect_name]
    if values is None:
        compiled = stmt.compile(dialect=dialect, column_keys=keys)  # type: ignore[attr-defined]
        fixed: Mapping[str, Any] = {}
    else:
        compiled = stmt.compile(  # type: ignore[attr-defined]
            dialect=dialect, column_keys=keys, compile_kwargs={"render_postcompile": True}
        )
        fixed = compiled.construct_params(dict(values))
    sql = compiled.string
    if "POSTCOMPILE" in sql:
        raise ValueError("an IN list of parameters cannot be compiled once: use constants() or a statement per call")
    binds: list[tuple[str, Processor, Any]] = []
    for name in compiled.positiontup or ():
        bind = compiled.binds[name] if name in compiled.binds else compiled.binds[name.rsplit("_", 1)[0]]
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if values is not None:
            default = fixed[name]
        else:
            default = _REQUIRED if bind.required else bind.effective_value
        binds.append((name, processor, default))
    if isinstance(stmt, sa.Select | sa.CompoundSelect):
        types = [c.type for c in stmt.selected_columns]
    elif isinstance(stmt, UpdateBase):
        types = [d["type"] for d in stmt.returning_column_descriptions]
    else:
        types = []
    results = tuple(t.dialect_impl(dialect).result_processor(dialect, None) for t in types)
    locks = " FOR UPDATE" in sql or " FOR SHARE" in sql or " FOR NO KEY UPDATE" in sql
    return Plan(sql, tuple(binds), results, writes or locks or isinstance(stmt, UpdateBase))


def constants(values: Sequence[str]) -> list[sa.ColumnElement[Any]]:
    """Fixed words (statuses, roles) for an ``IN (…)`` compiled into the statement itself."""
    out: list[sa.ColumnElement[Any]] = []
    for value in values:
        if not value.replace(" ", "").replace("_", "").isalnum():
            raise ValueError(f"not a plain constant: {value!r}")
        out.append(sa.literal_column(f"'{value}'"))
    return out


def insert_ignoring(table: Any) -> Callable[[str], sa.Executable]:
    """``INSERT … ON CONFLICT DO NOTHING`` for each dialect (a repeat of a unique key is a no-op)."""

    def build(dialect: str) -> sa.Executable:
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        return insert(table).on_conflict_do_nothing()

    return build


def dialect_insert(dialect: str) -> Any:
    return postgresql.insert if dialect == "postgresql" else sqlite.insert


class Tx:
    """One transaction on one driver connection: statements in, converted rows out."""

    dialect: str

    def __init__(self) -> None:
        self.begun = False
        self._savepoints = 0

    # --- what callers use ----------------------------------------------------------------------

    async def rows(self, stmt: Statement | sa.Executable, params: Mapping[str, Any] | None = None, /,
                   **kw: Any) -> list[Row]:
        plan = self._plan(stmt, params, kw)
        raw = await self._fetch(plan, self._args(plan, params, kw))
        results = plan.results
        if not any(results):
            return [tuple(row) for row in raw]
        return [tuple(v if p is None else p(v) for p, v in zip(results, row, strict=True)) for row in raw]

    async def first(self, stmt: Statement | sa.Executable, params: Mapping[str, Any] | None = None, /,
                    **kw: Any) -> Row | None:
        rows = await self.rows(stmt, params, **kw)
        return rows[0] if rows else None

    async def scalar(self, stmt: Statement | sa.Executable, params: Mapping[str, Any] | None = None, /,
                     **kw: Any) -> Any:
        row = await self.first(stmt, params, **kw)
        return row[0] if row is not None else None

    async def scalars(self, stmt: Statement | sa.Executable, params: Mapping[str, Any] | None = None, /,
                      **kw: Any) -> list[Any]:
        return [row[0] for row in await self.rows(stmt, params, **kw)]

    async def count(self, stmt: Statement | sa.Executable, params: Mapping[str, Any] | None = None, /,
                    **kw: Any) -> int:
        """Run a write without ``RETURNING``; the number of rows it touched."""
        plan = self._plan(stmt, params, kw)
        return await self._execute(plan, self._args(plan, params, kw))

    async def models(self, model: type[M], stmt: Statement | sa.Executable,
                     params: Mapping[str, Any] | None = None, /, **kw: Any) -> list[M]:
        """Rows of ``SELECT <table>`` as model objects."""
        names = [c.name for c in model.__table__.c]  # type: ignore[attr-defined]
        return [as_model(model, names, row) for row in await self.rows(stmt, params, **kw)]

    async def model(self, model: type[M], stmt: Statement | sa.Executable,
                    params: Mapping[str, Any] | None = None, /, **kw: Any) -> M | None:
        found = await self.models(model, stmt, params, **kw)
        return found[0] if found else None

    @asynccontextmanager
    async def savepoint(self) -> AsyncIterator[None]:
        """A nested transaction: an error inside rolls back only what was written inside."""
        await self.begin()
        self._savepoints += 1
        name = f"sp_{self._savepoints}"
        await self._raw(f"SAVEPOINT {name}")
        try:
            yield
        except BaseException:
            await self._raw(f"ROLLBACK TO SAVEPOINT {name}")
            await self._raw(f"RELEASE SAVEPOINT {name}")
            raise
        else:
            await self._raw(f"RELEASE SAVEPOINT {name}")
        finally:
            self._savepoints -= 1

    # --- the driver's side ---------------------------------------------------------------------

    def _plan(self, stmt: Statement | sa.Executable, params: Mapping[str, Any] | None, kw: Mapping[str, Any]) -> Plan:
        if isinstance(stmt, Statement):
            return stmt.plan(self.dialect)
        values = {**(params or {}), **kw}
        keys = list(values) if isinstance(stmt, sa.Insert) and values else None
        return compile_plan(stmt, self.dialect, keys=keys, values=values)

    @staticmethod
    def _args(plan: Plan, params: Mapping[str, Any] | None, kw: Mapping[str, Any]) -> list[Any]:
        given = {**params, **kw} if params and kw else (params or kw)
        args: list[Any] = []
        for name, processor, default in plan.binds:
            value = given.get(name, default)
            if value is _REQUIRED:
                raise KeyError(f"a value is required for the parameter {name!r}")
            args.append(value if processor is None or value is None else processor(value))
        return args

    async def begin(self) -> None:
        raise NotImplementedError

    async def _raw(self, sql: str) -> None:
        raise NotImplementedError

    async def _fetch(self, plan: Plan, args: list[Any]) -> Sequence[Sequence[Any]]:
        raise NotImplementedError

    async def _execute(self, plan: Plan, args: list[Any]) -> int:
        raise NotImplementedError

    async def commit(self) -> None:
        raise NotImplementedError

    async def rollback(self) -> None:
        raise NotImplementedError


def as_model(model: type[M], names: Sequence[str], row: Sequence[Any]) -> M:
    """A row of ``model``'s table as the model object (no validation: it came from our table)."""
    return cast(M, model.model_construct(**dict(zip(names, row, strict=True))))


class SqliteTx(Tx):
    """``sqlite3`` in autocommit mode, called inline: ``BEGIN IMMEDIATE`` before the first write."""

    dialect = "sqlite"

    def __init__(self, connection: sqlite3.Connection) -> None:
        super().__init__()
        self.connection = connection

    async def begin(self) -> None:
        if not self.begun:
            self.connection.execute("BEGIN IMMEDIATE")
            self.begun = True

    async def _raw(self, sql: str) -> None:
        self.connection.execute(sql)

    async def _fetch(self, plan: Plan, args: list[Any]) -> Sequence[Sequence[Any]]:
        if plan.writes and not self.begun:
            await self.begin()
        return self.connection.execute(plan.sql, args).fetchall()

    async def _execute(self, plan: Plan, args: list[Any]) -> int:
        if plan.writes and not self.begun:
            await self.begin()
        return self.connection.execute(plan.sql, args).rowcount

    async def commit(self) -> None:
        if self.begun:
            self.connection.execute("COMMIT")
            self.begun = False

    async def rollback(self) -> None:
        if self.begun:
            self.begun = False
            if self.connection.in_transaction:
                self.connection.execute("ROLLBACK")


class AsyncpgTx(Tx):
    """An ``asyncpg`` connection; ``BEGIN`` goes with the first statement that writes or locks.

    A connection the server dropped while it sat in the pool (a restart, ``pg_terminate_backend``)
    fails its first statement; nothing has happened on the server yet, so that statement is sent
    again once on a fresh connection (``replace``).
    """

    dialect = "postgresql"

    def __init__(
        self, connection: asyncpg.Connection, replace: Callable[[asyncpg.Connection], Awaitable[asyncpg.Connection]]
    ) -> None:
        super().__init__()
        self.connection = connection
        self._replace = replace
        self.used = False  # a statement reached the server: no more transparent retries

    async def _call(self, run: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self.used:
            return await run(self.connection)
        try:
            result = await run(self.connection)
        except CONNECTION_ERRORS:
            self.connection = await self._replace(self.connection)
            result = await run(self.connection)
        self.used = True
        return result

    async def begin(self) -> None:
        if not self.begun:
            await self._call(lambda c: c.execute("BEGIN"))
            self.begun = True

    async def _raw(self, sql: str) -> None:
        await self._call(lambda c: c.execute(sql))

    async def _fetch(self, plan: Plan, args: list[Any]) -> Sequence[Sequence[Any]]:
        if plan.writes and not self.begun:
            await self.begin()
        return cast(Sequence[Sequence[Any]], await self._call(lambda c: c.fetch(plan.sql, *args)))

    async def _execute(self, plan: Plan, args: list[Any]) -> int:
        if plan.writes and not self.begun:
            await self.begin()
        status: str = await self._call(lambda c: c.execute(plan.sql, *args))
        return int(status.rsplit(" ", 1)[-1]) if status and status[-1].isdigit() else 0

    async def commit(self) -> None:
        if self.begun:
            self.begun = False
            await self.connection.execute("COMMIT")

    async def rollback(self) -> None:
        if self.begun:
            self.begun = False
            await self.connection.execute("ROLLBACK")
