"""An aiosqlite connection that runs each SQLite call inline, on the event loop's thread.

aiosqlite hands every call to a worker thread and back: about 60 µs of two thread switches
for a call SQLite itself answers in 1–10 µs from a WAL file, and SQLAlchemy makes three or
four such calls a statement. For this bot's short transactions that hand-off was a third of
the time of a turn. Inline, a call blocks the loop only while SQLite works; the one long wait
is another *process* holding the write lock (SQLite's busy timeout), which a single-process
deployment never meets. Several processes or replicas belong on PostgreSQL.

SQLAlchemy's ``sqlite+aiosqlite`` dialect drives this class unchanged through
``async_creator``; it only overrides how aiosqlite runs a call.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any

import aiosqlite

ITER_CHUNK_SIZE = 64


class InlineConnection(aiosqlite.Connection):
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
            self._connection.close()
            self._connection = None

    async def close(self) -> None:
        self.stop()


def inline_connector(path: str, *, busy_timeout: float) -> Callable[[], Any]:
    """An ``async_creator`` for SQLAlchemy: a new inline connection to ``path``.

    The driver opens each transaction with ``BEGIN IMMEDIATE`` just before its first write,
    so two writers queue for the lock instead of failing to upgrade a read lock.
    """

    def connect() -> sqlite3.Connection:
        return sqlite3.connect(path, timeout=busy_timeout, isolation_level="IMMEDIATE", check_same_thread=False)

    async def create() -> InlineConnection:
        return await InlineConnection(connect, ITER_CHUNK_SIZE)

    return create
