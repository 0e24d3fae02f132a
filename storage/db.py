"""Database set-up: one async engine, SQLite tuned for concurrent writers.

SQLite runs in WAL mode with a busy timeout, and every transaction that writes starts with
``BEGIN IMMEDIATE`` so two writers queue for the lock instead of one failing with
"database is locked" when it upgrades a read lock. Its calls run inline on the event loop
(see :mod:`storage._sqlite_inline`). Inside one process a SQLite database has a single
connection, shared by the ORM and the turn path and taken in turn under an ``asyncio.Lock``,
so turns queue on the lock rather than wait on SQLite's. PostgreSQL gets a normal pool.

Example::

    db = Database.connect("sqlite+aiosqlite:///brm-bot.db")
    async with db.transaction() as session:
        session.add(person)
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import asyncpg
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from storage._sqlite_inline import SharedConnection, inline_connector
from storage.tx import AsyncpgTx, SqliteTx, Tx

SQLITE_BUSY_TIMEOUT_MS = 5_000
CLOSE_SECONDS = 5.0


_SQLALCHEMY_ONLY = ("async_fallback", "async_creator_fn", "prepared_statement_name_func")


def asyncpg_options(options: dict[str, Any]) -> dict[str, Any]:
    """The URL's connect options as ``asyncpg.connect`` takes them, as SQLAlchemy's dialect passes
    them: its own options dropped, ``prepared_statement_cache_size`` (``=0`` behind pgbouncer)
    applied to asyncpg's statement cache."""
    options = {k: v for k, v in options.items() if k not in _SQLALCHEMY_ONLY}
    cache = options.pop("prepared_statement_cache_size", None)
    if cache is not None:
        options.setdefault("statement_cache_size", int(cache))
    return options


class TurnConnections:
    """The asyncpg connections of chat turns, opened on demand, at most ``size`` at once.

    Taking one that is free and giving it back neither waits nor starts a task, and nothing runs
    on the connection in between: a turn ends its own transaction. SQLAlchemy's pool (through a
    greenlet) or asyncpg's (a reset, and a task a return) cost a third of a short turn's CPU.
    A connection the server closed is noticed by asyncpg and dropped when next taken.
    """

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], *, size: int) -> None:
        self._connect = connect
        self._free: list[asyncpg.Connection] = []  # the most recently used first: warm and alive
        self._room = asyncio.Semaphore(size)  # connections taken (or opening) never exceed size
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

    def give_back(self, connection: asyncpg.Connection, *, reusable: bool) -> None:
        if reusable and not self._closed and not connection.is_closed() and not connection.is_in_transaction():
            self._free.append(connection)
        else:
            connection.terminate()
        self._room.release()

    async def close(self) -> None:
        """Close the free connections; one still in a turn is closed when it is given back."""
        self._closed = True
        free, self._free = self._free, []
        for connection in free:
            try:
                await connection.close(timeout=CLOSE_SECONDS)
            except (OSError, TimeoutError, asyncpg.PostgresError):
                connection.terminate()


class _SqliteTurn:
    """:meth:`Database.tx` on SQLite: the shared connection, taken in turn, committed or rolled back."""

    __slots__ = ("_connection", "_db", "_shared")

    def __init__(self, db: Database, shared: SharedConnection) -> None:
        self._db = db
        self._shared = shared

    async def __aenter__(self) -> Tx:
        await self._db._acquire()
        try:
            self._connection = self._shared.get()
        except BaseException:
            self._db._release()
            raise
        return SqliteTx(self._connection)

    async def __aexit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            if exc_type is not None:
                self._rollback()
                return
            try:
                self._connection.commit()
            except BaseException:
                self._rollback()  # a failed COMMIT leaves the transaction open
                raise
        finally:
            self._db._release()

    def _rollback(self) -> None:
        try:
            self._connection.rollback()
        except sqlite3.Error:
            self._shared.close(self._connection)  # opened afresh by its next user


class Database:
    def __init__(self, engine: AsyncEngine, *, sqlite: SharedConnection | None = None, turn_pool_size: int = 0) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
        self._sqlite = sqlite
        self._lock = asyncio.Lock() if sqlite is not None else None
        self._holder: asyncio.Task[Any] | None = None
        self._turn_pool_size = turn_pool_size
        self._turn_connections: TurnConnections | None = None

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @classmethod
    def connect(cls, url: str, *, pool_size: int = 20) -> Database:
        """Build the engine for ``url`` (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``)."""
        parsed = sa.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            shared = SharedConnection(parsed.database or ":memory:", busy_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000)
            engine = create_async_engine(
                url,
                async_creator=inline_connector(shared),
                poolclass=sa.pool.StaticPool,  # the one connection; whose turn it is, the lock decides
                pool_reset_on_return=None,  # sessions always end their own transactions
            )
            return cls(engine, sqlite=shared)
        # ``pool_size`` connections in all. The ORM, used off the hot path, gets a quarter (at least
        # two): a fixed pool (no overflow connections opened and closed under load), recycled
        # hourly rather than pinged before every use (a ping is a round trip), and not rolled back
        # on return (sessions always end their own transactions). Chat turns get the rest, as
        # connections of their own (see :meth:`tx`).
        orm = max(2, pool_size // 4)
        engine = create_async_engine(
            url, pool_size=orm, max_overflow=0, pool_timeout=60, pool_recycle=3600, pool_reset_on_return=None
        )
        return cls(engine, turn_pool_size=max(1, pool_size - orm))

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """SQLite: wait for the connection (one user at a time). PostgreSQL: nothing to wait for."""
        if self._lock is None:
            yield
            return
        await self._acquire()
        try:
            yield
        finally:
            self._release()

    async def _acquire(self) -> None:
        assert self._lock is not None
        task = asyncio.current_task()
        if task is not None and task is self._holder:
            raise RuntimeError("nested use of the SQLite connection by one task would wait for itself")
        await self._lock.acquire()
        self._holder = task

    def _release(self) -> None:
        assert self._lock is not None
        self._holder = None
        self._lock.release()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.exclusive(), self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def begin(self) -> AsyncIterator[AsyncConnection]:
        """A Core connection inside one transaction (migrations)."""
        async with self.exclusive(), self.engine.begin() as conn:
            yield conn

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[AsyncConnection]:
        async with self.exclusive(), self.engine.connect() as conn:
            yield conn

    def tx(self) -> AbstractAsyncContextManager[Tx]:
        """One transaction of plain SQL on the driver connection (see :mod:`storage.tx`).

        Committed on success, rolled back on error. SQLite: the shared connection, taken in
        turn. PostgreSQL: one of the turns' own connections (:class:`TurnConnections`); after a
        cancellation or a failed rollback it is closed rather than reused.
        """
        return _SqliteTurn(self, self._sqlite) if self._sqlite is not None else self._pooled_tx()

    @asynccontextmanager
    async def _pooled_tx(self) -> AsyncIterator[Tx]:
        connections = self._turn_connections
        if connections is None:
            args, options = self.engine.dialect.create_connect_args(self.engine.url)
            connections = self._turn_connections = TurnConnections(
                functools.partial(asyncpg.connect, *args, **asyncpg_options(options)), size=self._turn_pool_size
            )
        connection = await connections.take()
        reusable = False
        try:
            tx = AsyncpgTx(connection)
            try:
                yield tx
            except Exception:
                if tx.transaction is not None and not connection.is_closed():
                    await tx.transaction.rollback()
                reusable = True
                raise
            if tx.transaction is not None:
                await tx.transaction.commit()
            reusable = True
        finally:
            # After a cancellation or a failed rollback a statement may still run: closed, not reused.
            connections.give_back(connection, reusable=reusable)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session for reads (it still runs in a transaction, rolled back at the end)."""
        async with self.exclusive(), self.sessions() as session:
            yield session

    async def ping(self) -> bool:
        try:
            async with self.connection() as conn:
                await conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        if self._turn_connections is not None:
            await self._turn_connections.close()  # closed for good: a turn after this fails
        await self.engine.dispose()
        if self._sqlite is not None:
            self._sqlite.close()
