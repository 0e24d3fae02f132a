"""Database set-up: one async engine, SQLite tuned for concurrent writers.

SQLite runs in WAL mode with a busy timeout, and every transaction that writes starts with
``BEGIN IMMEDIATE`` so two writers queue for the lock instead of one failing with
"database is locked" when it upgrades a read lock. Its calls run inline on the event loop
(see :mod:`storage._sqlite_inline`). Inside one process the pool holds a single connection
for a SQLite file, so turns queue on the pool rather than wait on the lock. PostgreSQL gets
a normal pool.

Example::

    db = Database.connect("sqlite+aiosqlite:///brm-bot.db")
    async with db.transaction() as session:
        session.add(person)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.util import greenlet_spawn

from storage._sqlite_inline import inline_connector
from storage.tx import AsyncpgTx, SqliteTx, Tx

SQLITE_BUSY_TIMEOUT_MS = 5_000


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @classmethod
    def connect(cls, url: str, *, pool_size: int = 20) -> Database:
        """Build the engine for ``url`` (``sqlite+aiosqlite://`` or ``postgresql+asyncpg://``)."""
        parsed = sa.make_url(url)
        if parsed.get_backend_name() == "sqlite":
            path = parsed.database or ":memory:"
            kwargs: dict[str, Any] = {
                "async_creator": inline_connector(path, busy_timeout=SQLITE_BUSY_TIMEOUT_MS / 1000),
                # Sessions always end their own transactions, so the pool's extra rollback is waste.
                "pool_reset_on_return": None,
            }
            if path == ":memory:":
                kwargs["poolclass"] = sa.pool.StaticPool
            else:
                kwargs.update(pool_size=1, max_overflow=0, pool_timeout=60)
            engine = create_async_engine(url, **kwargs)
            _tune_sqlite(engine)
        else:
            # A fixed pool (no overflow connections opened and closed under load), recycled
            # hourly rather than pinged before every use (a ping is a round trip a turn), and not
            # rolled back on return: sessions always end their own transactions.
            engine = create_async_engine(
                url, pool_size=pool_size, max_overflow=0, pool_timeout=60, pool_recycle=3600, pool_reset_on_return=None
            )
        return cls(engine)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """A session inside one transaction: committed on success, rolled back on error."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def tx(self) -> AsyncIterator[Tx]:
        """One transaction of plain SQL on a pooled driver connection (see :mod:`storage.tx`).

        Committed on success, rolled back on error; a connection whose rollback fails is
        discarded rather than returned to the pool.
        """
        raw = await self.engine.raw_connection()
        driver = raw.driver_connection
        reusable = False
        try:
            if self.dialect == "postgresql":
                tx = AsyncpgTx(driver)
                try:
                    yield tx
                except BaseException as exc:
                    if tx.transaction is not None:
                        await tx.transaction.rollback()
                    # A cancelled statement may still be running on the server: not reused.
                    reusable = isinstance(exc, Exception) and not driver.is_closed()  # type: ignore[union-attr]
                    raise
                if tx.transaction is not None:
                    await tx.transaction.commit()
            else:
                connection = driver._conn  # type: ignore[union-attr]  # the inline sqlite3 connection
                try:
                    yield SqliteTx(connection)
                except BaseException:
                    connection.rollback()
                    reusable = True
                    raise
                connection.commit()
            reusable = True
        finally:
            if reusable:
                raw.close()
            else:
                await greenlet_spawn(raw.invalidate)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """A session for reads (it still runs in a transaction, rolled back at the end)."""
        async with self.sessions() as session:
            yield session

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(sa.text("SELECT 1"))
            return True
        except Exception:
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()


def _tune_sqlite(engine: AsyncEngine) -> None:
    @sa.event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()
