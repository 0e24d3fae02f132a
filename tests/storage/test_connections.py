"""How turns and sessions share the database's connections.

SQLite: one connection, taken in turn by the ORM and by chat turns. PostgreSQL: chat turns
have connections of their own (``TurnConnections``); with the ORM's, a process opens at most
``pool_size``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage import queries as q
from storage.db import Database
from storage.tx import Sql

BACKEND = Sql("SELECT pg_backend_pid()")
NAP = Sql("SELECT pg_backend_pid(), pg_sleep(:seconds)")
POOL_SIZE = 8


@pytest.fixture
async def pg(postgres_url: str | None) -> AsyncIterator[Database]:
    if postgres_url is None:
        pytest.skip("PostgreSQL unavailable (see the PostgreSQL leg line at the end of the run)")
    db = Database.connect(postgres_url, pool_size=POOL_SIZE)
    yield db
    await db.dispose()


async def test_a_failed_session_and_a_concurrent_turn_never_share_a_transaction(db: Database) -> None:
    now = datetime.now(UTC)
    session_wrote = asyncio.Event()

    async def failing_session() -> None:
        with pytest.raises(RuntimeError):
            async with db.transaction() as session:
                assert await q.claim_event(session, platform="slack", event_id="EvRolledBack", now=now)
                session_wrote.set()
                await asyncio.sleep(0.05)  # a turn arrives meanwhile
                raise RuntimeError("the session fails")

    async def turn() -> None:
        await session_wrote.wait()
        async with db.tx() as tx:
            assert await q.claim_event(tx, platform="slack", event_id="EvCommitted", now=now)

    await asyncio.gather(failing_session(), turn())
    async with db.tx() as tx:
        assert not await q.claim_event(tx, platform="slack", event_id="EvCommitted", now=now), "the turn's write stayed"
        assert await q.claim_event(tx, platform="slack", event_id="EvRolledBack", now=now), "the session's went"


async def test_nested_use_of_the_sqlite_connection_fails_at_once_instead_of_hanging(tmp_path: Path) -> None:
    db = Database.connect(f"sqlite+aiosqlite:///{tmp_path}/nested.db")
    try:
        async with db.session():
            with pytest.raises(RuntimeError, match="nested use"):
                async with asyncio.timeout(2), db.tx():
                    pass
        async with db.tx() as tx:  # and the connection is free again afterwards
            assert await tx.fetch(Sql("SELECT 1"), {}) == [(1,)]
    finally:
        await db.dispose()


async def test_a_busy_postgres_process_opens_at_most_pool_size_connections(pg: Database) -> None:
    async def turn() -> int:
        async with pg.tx() as tx:
            ((pid, _),) = await tx.fetch(NAP, {"seconds": 0.05})
            return int(pid)

    async def session() -> None:
        async with pg.session() as s:
            await (await s.connection()).exec_driver_sql("SELECT pg_sleep(0.05)")

    pids = await asyncio.gather(*(turn() for _ in range(20)))
    await asyncio.gather(*(session() for _ in range(10)), *(turn() for _ in range(20)))
    assert len(set(pids)) > 1, "turns ran side by side"
    async with pg.session() as s:
        mine = "datname = current_database() AND backend_type = 'client backend'"
        opened = (
            await (await s.connection()).exec_driver_sql(f"SELECT count(*) FROM pg_stat_activity WHERE {mine}")
        ).scalar_one()
    assert opened <= POOL_SIZE


async def test_sqlalchemy_options_in_the_url_reach_turns_too(postgres_url: str | None) -> None:
    if postgres_url is None:
        pytest.skip("PostgreSQL unavailable (see the PostgreSQL leg line at the end of the run)")
    db = Database.connect(postgres_url + "?prepared_statement_cache_size=0")  # as behind pgbouncer
    try:
        async with db.tx() as tx:
            assert await tx.fetch(Sql("SELECT 1"), {}) == [(1,)]
        assert await db.ping()
    finally:
        await db.dispose()


async def test_a_turn_after_dispose_fails_instead_of_opening_connections_again(pg: Database) -> None:
    async with pg.tx() as tx:
        await tx.fetch(BACKEND, {})
    await pg.dispose()
    with pytest.raises(RuntimeError, match="closed"):
        async with pg.tx():
            pass


async def test_a_connection_the_server_closed_is_replaced_for_the_next_turn(pg: Database) -> None:
    async with pg.tx() as tx:
        ((first,),) = await tx.fetch(BACKEND, {})
    async with pg.session() as session:
        await session.connection()
        await (await session.connection()).exec_driver_sql(f"SELECT pg_terminate_backend({int(first)})")
    await asyncio.sleep(0.2)  # the server's goodbye reaches the client
    async with pg.tx() as tx:
        ((second,),) = await tx.fetch(BACKEND, {})
    assert second != first


async def test_a_cancelled_turns_connection_is_closed_not_reused(pg: Database) -> None:
    started = asyncio.Event()

    async def slow_turn() -> None:
        async with pg.tx() as tx:
            started.set()
            await tx.fetch(NAP, {"seconds": 30})

    task = asyncio.create_task(slow_turn())
    await started.wait()
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    async with asyncio.timeout(5), pg.tx() as tx:  # not stuck behind the cancelled statement
        ((pid, _),) = await tx.fetch(NAP, {"seconds": 0})
    assert pid
