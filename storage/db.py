"""The database: its connections, and the one transaction API everyone uses.

``async with db.transaction() as store:`` is the only way in, for chat turns, the CLI, the
delivery worker, jobs and tests alike. It yields a :class:`~storage.store.Store` (queries
grouped by role) on one transaction, committed when the block ends and rolled back if it
raises. Opening a second transaction inside the first, in the same task, is an error on both
databases (it would wait for itself on SQLite); :meth:`Tx.savepoint <storage.tx.Tx.savepoint>`
nests instead.

SQLite: one ``sqlite3`` connection per database, in WAL mode with a busy timeout, called inline
on the event loop (a call takes microseconds; a hop to a worker thread and back cost more than
the statement). Tasks take it in turn under an ``asyncio.Lock``. A transaction takes the write
lock with ``BEGIN IMMEDIATE`` at its first write, so writers in several processes queue for
the lock instead of failing. PostgreSQL: at most ``pool_size`` ``asyncpg`` connections,
taken and given back without a round trip.

Migrations (Alembic) need a SQLAlchemy connection: :meth:`Database.migration_connection`.

Example::

    db = Database.connect("sqlite+aiosqlite:///brm-bot.db")
    async with db.transaction() as store:
        person = await store.people.by_email("alice@example.com")
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, create_async_engine

from storage.store import EVENT, Store
from storage.tx import AsyncpgTx, DatabaseUnavailable, SqliteTx, Tx

SQLITE_BUSY_TIMEOUT_S = 5.0
CLOSE_SECONDS = 5.0
CONNECT_SECONDS = 10.0

# libpq's sslmode as asyncpg's ssl argument (asyncpg takes the same words).
_SSLMODES = frozenset({"disable", "allow", "prefer", "require", "verify-ca", "verify-full"})
_PG_OPTIONS = {
    "sslmode": "ssl",
    "ssl": "ssl",
    "connect_timeout": "timeout",
    "command_timeout": "command_timeout",
    "application_name": "application_name",
    "prepared_statement_cache_size": "statement_cache_size",
    "statement_cache_size": "statement_cache_size",
    "target_session_attrs": "target_session_attrs",
}


class DatabaseUrlError(ValueError):
    """``DATABASE_URL`` cannot be used as written; the message says why in one line."""


def postgres_connect_args(url: str) -> dict[str, Any]:
    """``asyncpg.connect`` arguments for a ``postgresql+asyncpg://`` URL.

    The URL's query options are the ones people copy from managed PostgreSQL (``sslmode``,
    ``connect_timeout``, ``application_name``) and ``prepared_statement_cache_size`` (``=0``
    behind pgbouncer); anything else is refused with one line rather than a traceback later.
    """
    parsed = sa.make_url(url)
    args: dict[str, Any] = {
        "host": parsed.host or "127.0.0.1",
        "port": parsed.port or 5432,
        "user": parsed.username,
        "password": parsed.password,
        "database": parsed.database,
        "timeout": CONNECT_SECONDS,
    }
    settings: dict[str, str] = {}
    for key, raw in parsed.query.items():
        value = raw[-1] if isinstance(raw, tuple) else raw
        target = _PG_OPTIONS.get(key)
        if target is None:
            known = ", ".join(sorted(_PG_OPTIONS))
            raise DatabaseUrlError(f"DATABASE_URL: unknown option {key!r} (known: {known})")
        if target == "ssl":
            if value not in _SSLMODES and value not in ("true", "false"):
                raise DatabaseUrlError(f"DATABASE_URL: {key}={value!r} is not one of {', '.join(sorted(_SSLMODES))}")
            args["ssl"] = {"true": "require", "false": "disable"}.get(value, value)
        elif target == "application_name":
            settings["application_name"] = value
        elif target == "target_session_attrs":
            args[target] = value
        else:
            try:
                args[target] = float(value) if target in ("timeout", "command_timeout") else int(value)
            except ValueError:
                raise DatabaseUrlError(f"DATABASE_URL: {key}={value!r} is not a number") from None
    if settings:
        args["server_settings"] = settings
    return args


async def _open_postgres(args: dict[str, Any]) -> asyncpg.Connection:
    connection = await asyncpg.connect(**args)
    # JSON columns: SQLAlchemy's JSON type serialises on the way in; decode on the way out.
    for kind in ("json", "jsonb"):
        await connection.set_type_codec(kind, encoder=str, decoder=json.loads, schema="pg_catalog", format="text")
    return connection


class Connections:
    """PostgreSQL connections, opened on demand, at most ``size`` at once.

    Taking a free one and giving it back neither waits nor sends anything: a transaction ends
    its own work (COMMIT or ROLLBACK) before the connection comes back.
    """

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], *, size: int) -> None:
        self._connect = connect
        self._free: list[asyncpg.Connection] = []  # the most recently used last: warm and alive
        self._room = asyncio.Semaphore(size)
        self._closed = False

    async def take(self) -> asyncpg.Connection:
        await self._room.acquire()
        try:
            if self._closed:
                raise RuntimeError("the database was closed")
            while self._free:
                connection = self._free.pop()
                if not connection.is_closed():
                    return connection
            return await self._connect()
        except BaseException:
            self._room.release()
            raise

    async def replace(self, dead: asyncpg.Connection) -> asyncpg.Connection:
        """A fresh connection for one that died; the idle ones likely died with it (a restart)."""
        dead.terminate()
        stale, self._free = self._free, []
        for connection in stale:
            connection.terminate()
        if self._closed:
            raise RuntimeError("the database was closed")
        return await self._connect()

    def give_back(self, connection: asyncpg.Connection, *, reusable: bool) -> None:
        if reusable and not self._closed and not connection.is_closed() and not connection.is_in_transaction():
            self._free.append(connection)
        else:
            connection.terminate()
        self._room.release()

    async def close(self) -> None:
        self._closed = True
        free, self._free = self._free, []
        for connection in free:
            try:
                await connection.close(timeout=CLOSE_SECONDS)
            except (OSError, TimeoutError, asyncpg.PostgresError):
                connection.terminate()


class SharedConnection:
    """The one ``sqlite3`` connection of a SQLite database (a file, or ``:memory:``)."""

    def __init__(self, path: str, *, busy_timeout: float) -> None:
        self.path = path
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None

    def get(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = _open_sqlite(self.path, self._busy_timeout)
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _open_sqlite(path: str, busy_timeout: float) -> sqlite3.Connection:
    """Autocommit mode (transactions are begun by :class:`SqliteTx`), WAL, a busy timeout."""
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
    for pragma in ("journal_mode=WAL", f"busy_timeout={int(busy_timeout * 1000)}", "synchronous=NORMAL",
                   "foreign_keys=ON"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


class Database:
    """One database: ``transaction()`` for everything, ``migration_connection()`` for Alembic."""

    def __init__(self, url: str, *, pool_size: int = 20) -> None:
        self.url = url
        parsed = sa.make_url(url)
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise DatabaseUrlError(f"DATABASE_URL: {backend!r} is not supported (use sqlite or postgresql)")
        self.dialect = backend
        self._holders: set[asyncio.Task[Any] | None] = set()
        self._sqlite: SharedConnection | None = None
        self._lock: asyncio.Lock | None = None
        self._pg: Connections | None = None
        if backend == "sqlite":
            if parsed.query:
                raise DatabaseUrlError(f"DATABASE_URL: unknown option {next(iter(parsed.query))!r} for SQLite")
            self._sqlite = SharedConnection(parsed.database or ":memory:", busy_timeout=SQLITE_BUSY_TIMEOUT_S)
            self._lock = asyncio.Lock()
        else:
            args = postgres_connect_args(url)
            self._pg = Connections(lambda: _open_postgres(args), size=max(1, pool_size))
        self._closed = False

    @classmethod
    def connect(cls, url: str, *, pool_size: int = 20) -> Database:
        """The database at ``url`` (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``); nothing
        is opened until the first transaction."""
        return cls(url, pool_size=pool_size)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Store]:
        """One transaction: committed when the block ends, rolled back if it raises."""
        task = asyncio.current_task()
        if task in self._holders:
            raise RuntimeError("a transaction inside a transaction of the same task: use tx.savepoint()")
        self._holders.add(task)
        try:
            async with self._tx() as tx:
                yield Store(tx)
        finally:
            self._holders.discard(task)

    @asynccontextmanager
    async def _tx(self) -> AsyncIterator[Tx]:
        if self._closed:
            raise RuntimeError("the database was closed")
        if self._sqlite is not None:
            assert self._lock is not None
            async with self._lock:
                sqlite_tx = SqliteTx(self._sqlite.get())
                try:
                    yield sqlite_tx
                except BaseException:
                    try:
                        await sqlite_tx.rollback()
                    except sqlite3.Error:
                        self._sqlite.close()  # opened afresh by the next transaction
                    raise
                try:
                    await sqlite_tx.commit()
                except BaseException:
                    await sqlite_tx.rollback()
                    raise
            return
        assert self._pg is not None
        connections = self._pg
        try:
            connection = await connections.take()
        except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
            raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}") from exc
        pg_tx = AsyncpgTx(connection, connections.replace)
        reusable = False
        try:
            try:
                yield pg_tx
            except Exception:
                if not pg_tx.connection.is_closed():
                    await pg_tx.rollback()
                reusable = True
                raise
            await pg_tx.commit()
            reusable = True
        finally:
            # After a cancellation or a failed rollback a statement may still run: closed, not reused.
            connections.give_back(pg_tx.connection, reusable=reusable)

    async def ping(self) -> bool:
        try:
            async with self.transaction() as store:
                await store.tx.scalar(sa.select(sa.literal(1)))
            return True
        except Exception:
            return False

    async def check_writable(self) -> None:
        """Raise if the database refuses writes (a read-only SQLite file, a read-only replica).

        A write that touches no row: neither SQLite in WAL mode nor a PostgreSQL standby refuses
        a bare ``BEGIN``, but both refuse the first write statement.
        """
        async with self.transaction() as store:
            await store.tx.count(sa.delete(EVENT).where(sa.false()))

    @asynccontextmanager
    async def migration_connection(self) -> AsyncIterator[AsyncConnection | sa.Connection]:
        """A SQLAlchemy connection for Alembic, inside one transaction.

        SQLite: a synchronous connection on the database's own ``sqlite3`` connection (so an
        in-memory database is the same database), under the same lock. PostgreSQL: a short-lived
        async engine with the same connect arguments.
        """
        if self._sqlite is not None:
            assert self._lock is not None
            async with self._lock:
                with self._sqlite_engine_connection() as conn:
                    yield conn
            return
        args = postgres_connect_args(self.url)
        engine = create_async_engine(
            "postgresql+asyncpg://", async_creator=lambda: asyncpg.connect(**args), poolclass=sa.pool.NullPool
        )
        try:
            async with engine.begin() as conn:
                yield conn
        finally:
            await engine.dispose()

    @contextmanager
    def _sqlite_engine_connection(self) -> Iterator[sa.Connection]:
        assert self._sqlite is not None
        raw = self._sqlite.get()
        engine = sa.create_engine("sqlite://", creator=lambda: raw, poolclass=sa.pool.StaticPool)
        conn = engine.connect()
        raw.execute("BEGIN IMMEDIATE")  # DDL inside the transaction: a failed migration changes nothing
        try:
            yield conn
        except BaseException:
            if raw.in_transaction:
                raw.execute("ROLLBACK")
            raise
        else:
            if raw.in_transaction:
                raw.execute("COMMIT")
        finally:
            conn.close()

    @property
    def sqlite_path(self) -> Path | None:
        if self._sqlite is None or self._sqlite.path == ":memory:":
            return None
        return Path(self._sqlite.path)

    async def dispose(self) -> None:
        """Close every connection; a transaction after this fails."""
        self._closed = True
        if self._pg is not None:
            await self._pg.close()
        if self._sqlite is not None:
            if self._lock is not None:
                async with self._lock:
                    self._sqlite.close()
            else:
                self._sqlite.close()
