"""Plain SQL on the driver connection of one transaction: the path every chat turn takes.

SQLAlchemy's ORM session costs about 0.2 ms a statement and as much again to open and commit
a session, while SQLite answers these statements in a few µs and asyncpg in tens. A chat
turn runs only a handful of small, fixed statements, so it runs them here: written once as
SQL with ``:name`` parameters, translated once per dialect, executed straight on the pooled
driver connection (``sqlite3`` inline, ``asyncpg``) inside a transaction of our own.

The same statements also run inside an ORM session (``await as_tx(session)``), so code that
holds a session (the CLI, the delivery worker, tests) calls the same queries and shares its
transaction. Values cross in the database's own form: :meth:`Tx.dt`, :meth:`Tx.json` and
friends read them back.

Example::

    async with db.tx() as tx:
        n = await tx.execute(CLAIM, {"platform": "slack", "event_id": "Ev1", "at": now})
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

import asyncpg
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

_PARAM = re.compile(r"(?<![:\w]):([a-z_][a-z0-9_]*)")
Row = Sequence[Any]


class Sql:
    """One statement with ``:name`` parameters, kept in each dialect's own form."""

    __slots__ = ("names", "numbered", "text", "writes")

    def __init__(self, text: str) -> None:
        self.text = " ".join(text.split())
        self.writes = self.text.split(" ", 1)[0].upper() in ("INSERT", "UPDATE", "DELETE", "WITH")
        names: list[str] = []

        def number(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in names:
                names.append(name)
            return f"${names.index(name) + 1}"

        self.numbered = _PARAM.sub(number, self.text)  # asyncpg: $1, $2, …
        self.names = tuple(names)

    def __repr__(self) -> str:
        return f"Sql({self.text!r})"


class Tx:
    """A transaction's connection: plain SQL in, rows (tuples) and row counts out."""

    dialect: str

    async def execute(self, sql: Sql, params: Mapping[str, Any]) -> int:
        """Run a write; the number of rows it touched."""
        raise NotImplementedError

    async def fetch(self, sql: Sql, params: Mapping[str, Any]) -> list[Row]:
        raise NotImplementedError

    async def fetchone(self, sql: Sql, params: Mapping[str, Any]) -> Row | None:
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    async def last(self, sql: Sql, params: Mapping[str, Any]) -> list[Row]:
        """The transaction's final statement. Alone (nothing written before it) it needs no
        transaction around it, so on PostgreSQL it runs without BEGIN and COMMIT."""
        return await self.fetch(sql, params)

    # --- values the drivers hand back in their own form --------------------------------------

    @staticmethod
    def dt(value: Any) -> datetime | None:
        """A stored time as an aware UTC datetime (SQLite keeps naive UTC text)."""
        if value is None:
            return None
        if isinstance(value, str):
            value = datetime.fromisoformat(value)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)

    @staticmethod
    def day(value: Any) -> date | None:
        if value is None or isinstance(value, date):
            return value
        return date.fromisoformat(str(value))

    @staticmethod
    def json(value: Any) -> Any:
        """A JSON column's value (asyncpg decodes it already; SQLite returns the text)."""
        return json.loads(value) if isinstance(value, str | bytes) else value


def _for_sqlite(value: Any) -> Any:
    """Values as SQLAlchemy's SQLite types store them, so both paths read each other's rows."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: store timezone-aware UTC times only")
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, dict | list):
        return json.dumps(value)
    return value


_AS_IS = frozenset({str, int, float, bool, bytes, type(None)})  # passed to either driver unchanged


def _sqlite_params(params: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v if type(v) in _AS_IS else _for_sqlite(v) for k, v in params.items()}


def _asyncpg_args(sql: Sql, params: Mapping[str, Any]) -> list[Any]:
    values = [params[name] for name in sql.names]
    for i, value in enumerate(values):
        if type(value) not in _AS_IS:
            values[i] = _for_asyncpg(value)
    return values


def _for_asyncpg(value: Any) -> Any:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError("naive datetime: store timezone-aware UTC times only")
        return value
    if isinstance(value, dict | list):
        return json.dumps(value)  # SQLAlchemy's json codec on these connections takes text
    return value


class SqliteTx(Tx):
    """``sqlite3`` called inline: it opens ``BEGIN IMMEDIATE`` itself at the first write."""

    dialect = "sqlite"

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._conn = connection

    async def execute(self, sql: Sql, params: Mapping[str, Any]) -> int:
        return self._conn.execute(sql.text, _sqlite_params(params)).rowcount

    async def fetch(self, sql: Sql, params: Mapping[str, Any]) -> list[Row]:
        return self._conn.execute(sql.text, _sqlite_params(params)).fetchall()


class AsyncpgTx(Tx):
    """An ``asyncpg`` connection that begins its transaction at the first write.

    Reads before it run on their own, which under READ COMMITTED sees what a statement inside
    the transaction would. A turn that writes only in its final statement (:meth:`last`)
    never opens a transaction at all: two round trips fewer.
    """

    dialect = "postgresql"

    def __init__(self, connection: Any) -> None:
        self._conn = connection
        self.transaction: Any = None

    async def _begin(self) -> None:
        if self.transaction is None:
            self.transaction = self._conn.transaction()
            await self.transaction.start()

    async def execute(self, sql: Sql, params: Mapping[str, Any]) -> int:
        if sql.writes:
            await self._begin()
        status = await self._conn.execute(sql.numbered, *_asyncpg_args(sql, params))
        return int(status.rsplit(" ", 1)[-1]) if status and status[-1].isdigit() else 0

    async def fetch(self, sql: Sql, params: Mapping[str, Any]) -> list[Row]:
        if sql.writes:
            await self._begin()
        return await self.last(sql, params)

    async def last(self, sql: Sql, params: Mapping[str, Any]) -> list[Row]:
        return list(await self._conn.fetch(sql.numbered, *_asyncpg_args(sql, params)))


class SessionTx(Tx):
    """The same statements inside an ORM session's transaction, through SQLAlchemy."""

    def __init__(self, connection: AsyncConnection) -> None:
        self._conn = connection
        self.dialect = connection.dialect.name

    def _args(self, sql: Sql, params: Mapping[str, Any]) -> tuple[str, Any]:
        if self.dialect == "postgresql":
            return sql.numbered, tuple(_asyncpg_args(sql, params))
        return sql.text, _sqlite_params(params)

    async def execute(self, sql: Sql, params: Mapping[str, Any]) -> int:
        result = await self._conn.exec_driver_sql(*self._args(sql, params))
        return int(result.rowcount or 0)

    async def fetch(self, sql: Sql, params: Mapping[str, Any]) -> list[Row]:
        result = await self._conn.exec_driver_sql(*self._args(sql, params))
        return [tuple(row) for row in result.all()] if result.returns_rows else []


async def as_tx(db: Tx | AsyncSession) -> Tx:
    """``db`` itself, or a :class:`Tx` sharing an ORM session's transaction."""
    return db if isinstance(db, Tx) else SessionTx(await db.connection())


INTEGRITY_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.IntegrityError,
    sqlite3.IntegrityError,
    asyncpg.IntegrityConstraintViolationError,
)
"""A unique key or constraint refused a write, whichever path the statement took."""
