"""An aiosqlite connection that runs each SQLite call inline, on the event loop's thread.

aiosqlite hands every call to a worker thread and back: about 60 µs of two thread switches
for a call SQLite itself answers in 1–10 µs from a WAL file, and SQLAlchemy makes three or
four such calls a statement. For this bot's short transactions that hand-off was a third of
the time of a turn. Inline, a call blocks the loop only while SQLite works; the one long wait
is another *process* holding the write lock (SQLite's busy timeout), which a single-process
deployment never meets. Several processes or replicas belong on PostgreSQL.

SQLAlchemy's ``sqlite+aiosqlite`` dialect drives this class unchanged through
``async_creator``; it only overrides how aiosqlite runs a call. A database has one connection
(:class:`SharedConnection`), which the turn path also uses directly, without SQLAlchemy's pool.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import aiosqlite

ITER_CHUNK_SIZE = 64


class SharedConnection:
    """The one ``sqlite3`` connection of a :class:`~storage.db.Database` (a file or ``:memory:``).

    SQLAlchemy's pool (through :class:`InlineConnection`) and the turn path
    (:meth:`Database.tx`) use the same connection; the database's lock decides whose turn it
    is. It is opened with the settings every connection gets, and opened again after
    SQLAlchemy closed it (``dispose``, an invalidated connection).
    """

    def __init__(self, path: str, *, busy_timeout: float) -> None:
        self._path = path
        self._busy_timeout = busy_timeout
        self._conn: sqlite3.Connection | None = None

    def get(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = _open(self._path, self._busy_timeout)
        return self._conn

    def close(self, conn: sqlite3.Connection | None = None) -> None:
        """Close the connection (only if it is still ``conn``, when given)."""
        if self._conn is not None and (conn is None or conn is self._conn):
            self._conn.close()
            self._conn = None


def _open(path: str, busy_timeout: float) -> sqlite3.Connection:
    """A connection in WAL mode that waits for the write lock rather than failing at once.

    The driver opens each transaction with ``BEGIN IMMEDIATE`` just before its first write,
    so two writers queue for the lock instead of failing to upgrade a read lock.
    """
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level="IMMEDIATE", check_same_thread=False)
    for pragma in ("journal_mode=WAL", f"busy_timeout={int(busy_timeout * 1000)}", "synchronous=NORMAL",
                   "foreign_keys=ON"):
        conn.execute(f"PRAGMA {pragma}")
    return conn


class InlineConnection(aiosqlite.Connection):
    def __init__(self, shared: SharedConnection) -> None:
        super().__init__(shared.get, ITER_CHUNK_SIZE)
        self._shared = shared

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self._connection is None:
            raise ValueError("Connection closed")
        return fn(*args, **kwargs)

    async def _connect(self) -> InlineConnection:
        if self._connection is None:
            self._connection = self._connector()
        return self

    def __await__(self) -> Any:
        return self._connect().__await__()

    def stop(self) -> None:  # type: ignore[override]
        self._running = False
        if self._connection is not None:
            self._shared.close(self._connection)
            self._connection = None

    async def close(self) -> None:
        self.stop()


def inline_connector(shared: SharedConnection) -> Callable[[], Any]:
    """An ``async_creator`` for SQLAlchemy: the shared connection, driven inline."""

    async def create() -> InlineConnection:
        return await InlineConnection(shared)

    return create
