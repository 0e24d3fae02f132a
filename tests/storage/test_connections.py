"""PostgreSQL connections: the URL's options, the pool's bound, row locks across transactions,
and connections that die or are cancelled.

Two transactions are made to overlap with events, and a transaction known to be waiting for a
row lock is recognised by the server (``pg_blocking_pids``), so no test sleeps to guess an order.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import sqlalchemy as sa

from storage.db import Database, DatabaseUrlError, postgres_connect_args
from storage.models import OutboxStatus, Role
from storage.store import OUTBOX
from storage.tx import DatabaseUnavailable, Tx

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LEASE = NOW + timedelta(minutes=5)
POOL_SIZE = 4
WAIT_S = 10.0

BACKEND_PID = sa.select(sa.func.pg_backend_pid())
ACTIVITY = sa.table("pg_stat_activity", sa.column("pid"), sa.column("application_name"))


@pytest.fixture
def pg_url(postgres_url: str | None) -> str:
    if postgres_url is None:
        pytest.skip("PostgreSQL unavailable (see the PostgreSQL leg line at the end of the run)")
    return postgres_url


@pytest.fixture
def pg(db: Database) -> Database:
    """The contract fixture's PostgreSQL leg (``PG_ONLY``): a migrated, emptied database."""
    assert db.dialect == "postgresql"
    return db


PG_ONLY = pytest.mark.parametrize("db", ["postgresql"], indirect=True)


@pytest.fixture
async def observer(pg_url: str) -> AsyncIterator[Database]:
    """A second Database on the same server: it watches and interferes from outside."""
    other = Database.connect(pg_url, pool_size=2)
    yield other
    await other.dispose()


def _with_query(url: str, **options: str) -> str:
    return sa.make_url(url).update_query_dict(options).render_as_string(hide_password=False)


async def _pid(tx: Tx) -> int:
    return int(await tx.scalar(BACKEND_PID))


async def _blocked_by(observer: Database, pid: int) -> list[int]:
    async with observer.transaction() as store:
        return list(await store.tx.scalar(sa.select(sa.func.pg_blocking_pids(pid))) or [])


async def _until_blocked(observer: Database, waiter: int, holder: int) -> None:
    """Return once the server reports ``waiter`` waiting for a lock ``holder`` holds."""
    async with asyncio.timeout(WAIT_S):
        while holder not in await _blocked_by(observer, waiter):  # noqa: ASYNC110 (the server's state: no event to await)
            await asyncio.sleep(0.01)


async def _queue(db: Database, count: int) -> list[int]:
    async with db.transaction() as store:
        person = await store.people.add(name="Rae", email="rae@example.com", role=Role.BRM, time_zone="UTC", now=NOW)
        assert person.id is not None
        for n in range(count):
            await store.outbox.enqueue(kind="k", subject=f"s{n}", recipient_id=person.id, payload={}, now=NOW)
        return [int(i) for i in await store.tx.scalars(sa.select(OUTBOX.c.id).order_by(OUTBOX.c.id))]


def _lock(message_id: int, **kw: Any) -> sa.Select[Any]:
    return sa.select(OUTBOX.c.id, OUTBOX.c.status).where(OUTBOX.c.id == message_id).with_for_update(**kw)


# --- the URL's options ------------------------------------------------------------------------


def test_libpq_sslmode_becomes_asyncpgs_ssl_argument() -> None:
    base = "postgresql+asyncpg://u:p@db.example.com:6543/brm"
    args = postgres_connect_args(base + "?sslmode=require")
    assert args["ssl"] == "require"
    assert (args["host"], args["port"], args["user"], args["password"], args["database"]) == (
        "db.example.com", 6543, "u", "p", "brm")
    assert postgres_connect_args(base + "?sslmode=verify-full")["ssl"] == "verify-full"
    assert "ssl" not in postgres_connect_args(base)


@pytest.mark.parametrize(("query", "option"), [("sslmode=bogus", "sslmode"), ("foo=1", "foo"),
                                               ("connect_timeout=soon", "connect_timeout")])
def test_an_option_that_cannot_be_used_is_refused_in_one_line(query: str, option: str) -> None:
    url = f"postgresql+asyncpg://u@localhost/brm?{query}"
    with pytest.raises(DatabaseUrlError) as refused:
        postgres_connect_args(url)
    message = str(refused.value)
    assert "\n" not in message and message.startswith("DATABASE_URL") and option in message
    with pytest.raises(DatabaseUrlError):  # at construction, before any connection
        Database.connect(url)


def test_the_statement_cache_option_reaches_asyncpg() -> None:
    url = "postgresql+asyncpg://u@localhost/brm?prepared_statement_cache_size=0&connect_timeout=3"
    args = postgres_connect_args(url)
    assert args["statement_cache_size"] == 0 and args["timeout"] == 3.0


async def test_the_application_name_reaches_the_server(pg_url: str) -> None:
    name = f"brm-test-{uuid.uuid4().hex[:8]}"
    db = Database.connect(_with_query(pg_url, application_name=name))
    try:
        async with db.transaction() as store:
            assert await store.tx.scalar(sa.select(sa.func.current_setting("application_name"))) == name
    finally:
        await db.dispose()


async def test_without_a_statement_cache_statements_still_run_again_and_again(pg_url: str) -> None:
    db = Database.connect(_with_query(pg_url, prepared_statement_cache_size="0"))  # as behind pgbouncer
    try:
        for _ in range(3):
            async with db.transaction() as store:
                assert await store.tx.scalar(sa.select(sa.literal(1))) == 1
                assert await store.people.by_email("nobody@example.com") is None
        assert await db.ping()
    finally:
        await db.dispose()


# --- row locks across transactions ------------------------------------------------------------------


@PG_ONLY
async def test_select_for_update_makes_a_second_claim_wait_for_the_first_commit(
    pg: Database, observer: Database
) -> None:
    (message_id,) = await _queue(pg, 1)
    order: list[str] = []
    holding = asyncio.Event()
    holder_pid: list[int] = []
    waiter_pid: list[int] = []
    waiter_ready = asyncio.Event()

    async def first() -> None:
        async with pg.transaction() as store:
            holder_pid.append(await _pid(store.tx))
            assert await store.tx.rows(_lock(message_id)) == [(message_id, "pending")]
            order.append("first locked")
            holding.set()
            await asyncio.wait_for(waiter_ready.wait(), WAIT_S)
            await _until_blocked(observer, waiter_pid[0], holder_pid[0])  # the second claim is waiting on us
            await store.tx.count(sa.update(OUTBOX).where(OUTBOX.c.id == message_id).values(status="sent"))
            order.append("first commits")
        order.append("first committed")

    async def second() -> None:
        await asyncio.wait_for(holding.wait(), WAIT_S)
        async with pg.transaction() as store:
            waiter_pid.append(await _pid(store.tx))
            waiter_ready.set()
            rows = await store.tx.rows(_lock(message_id))
            order.append("second locked")
        assert rows == [(message_id, "sent")], "the second claim saw the first one's committed write"

    await asyncio.wait_for(asyncio.gather(first(), second()), WAIT_S * 2)
    # The server grants the second lock at the first's COMMIT; which client hears back first is a race.
    assert order[:2] == ["first locked", "first commits"]
    assert sorted(order[2:]) == ["first committed", "second locked"]
    assert holder_pid != waiter_pid


@PG_ONLY
async def test_skip_locked_passes_over_the_row_another_transaction_holds(pg: Database) -> None:
    first_id, second_id = await _queue(pg, 2)
    holding, done = asyncio.Event(), asyncio.Event()
    due = sa.select(OUTBOX.c.id).where(OUTBOX.c.status == "pending").order_by(OUTBOX.c.id)

    async def holder() -> None:
        async with pg.transaction() as store:
            assert await store.tx.scalars(_lock(first_id)) == [first_id]
            holding.set()
            await asyncio.wait_for(done.wait(), WAIT_S)

    async def skipper() -> list[int]:
        await asyncio.wait_for(holding.wait(), WAIT_S)
        try:
            async with pg.transaction() as store:
                return [int(i) for i in await store.tx.scalars(due.with_for_update(skip_locked=True))]
        finally:
            done.set()

    _, skipped = await asyncio.wait_for(asyncio.gather(holder(), skipper()), WAIT_S * 2)
    assert skipped == [second_id]
    async with pg.transaction() as store:  # released with the holder's commit
        assert await store.tx.scalars(due.with_for_update(skip_locked=True)) == [first_id, second_id]


@PG_ONLY
async def test_two_open_outbox_claims_never_get_the_same_message(pg: Database) -> None:
    ids = await _queue(pg, 6)
    first_claimed, second_done = asyncio.Event(), asyncio.Event()
    claims: dict[str, list[int]] = {}

    async def worker(name: str, *, wait_for: asyncio.Event | None, then: asyncio.Event) -> None:
        if wait_for is not None:
            await asyncio.wait_for(wait_for.wait(), WAIT_S)
        async with pg.transaction() as store:
            claims[name] = [m.id or 0 for m in await store.outbox.claim(now=NOW, lease_until=LEASE, limit=4)]
            then.set()
            if name == "first":  # still uncommitted while the second claims
                await asyncio.wait_for(second_done.wait(), WAIT_S)

    await asyncio.wait_for(
        asyncio.gather(worker("first", wait_for=None, then=first_claimed),
                       worker("second", wait_for=first_claimed, then=second_done)),
        WAIT_S * 2,
    )
    assert claims["first"] == ids[:4] and claims["second"] == ids[4:]


@PG_ONLY
async def test_many_workers_claiming_at_once_deliver_each_message_once(pg: Database) -> None:
    ids = await _queue(pg, 30)
    claimed: list[int] = []

    async def worker() -> None:
        while True:
            async with pg.transaction() as store:
                batch = await store.outbox.claim(now=NOW, lease_until=LEASE, limit=3)
                for message in batch:
                    assert message.id is not None
                    await store.outbox.finish(message.id, token=message.lease_token, status=OutboxStatus.SENT, now=NOW)
            if not batch:
                return
            claimed.extend(m.id or 0 for m in batch)

    await asyncio.wait_for(asyncio.gather(*(worker() for _ in range(8))), WAIT_S * 3)
    assert sorted(claimed) == ids  # every one, none twice


# --- the pool -------------------------------------------------------------------------------------


async def test_a_busy_process_keeps_to_pool_size_connections(pg_url: str, observer: Database) -> None:
    name = f"brm-pool-{uuid.uuid4().hex[:8]}"
    busy = Database.connect(_with_query(pg_url, application_name=name), pool_size=POOL_SIZE)
    mine = sa.select(sa.func.count()).select_from(ACTIVITY).where(ACTIVITY.c.application_name == name)
    seen: list[int] = []
    pids: set[int] = set()
    loaded = asyncio.Event()

    async def transaction() -> None:
        async with busy.transaction() as store:
            pids.add(await _pid(store.tx))
            await store.tx.scalar(sa.select(sa.func.pg_sleep(0.02)))

    async def load() -> None:
        try:
            for _ in range(3):
                await asyncio.gather(*(transaction() for _ in range(4 * POOL_SIZE)))
        finally:
            loaded.set()

    async def watch() -> None:
        while not loaded.is_set():
            async with observer.transaction() as store:
                seen.append(int(await store.tx.scalar(mine)))
            await asyncio.sleep(0.005)

    try:
        await asyncio.wait_for(asyncio.gather(load(), watch()), WAIT_S * 3)
        async with observer.transaction() as store:
            seen.append(int(await store.tx.scalar(mine)))
    finally:
        await busy.dispose()
    assert max(seen) == POOL_SIZE, seen  # the load filled the pool, and never went past it
    assert len(pids) == POOL_SIZE, "connections were reused, not opened afresh"


@PG_ONLY
async def test_a_pooled_connection_the_server_killed_is_replaced_unnoticed(pg: Database, observer: Database) -> None:
    async with pg.transaction() as store:
        first = await _pid(store.tx)
    async with observer.transaction() as store:  # the server ends it while it sits in the pool
        assert await store.tx.scalar(sa.select(sa.func.pg_terminate_backend(first, 5000))) is True
    async with pg.transaction() as store:
        second = await _pid(store.tx)
        await store.people.add(name="After", email="after@example.com", role=Role.REQUESTER, time_zone="UTC", now=NOW)
    assert second != first
    async with pg.transaction() as store:
        assert await store.people.by_email("after@example.com") is not None


@PG_ONLY
async def test_a_connection_killed_after_it_was_taken_is_replaced_at_its_first_statement(
    pg: Database, observer: Database
) -> None:
    """The worst moment: the transaction holds the connection, nothing sent yet, and it dies
    (one connection in the pool, so the transaction is sure to hold the one that is killed)."""
    small = Database.connect(pg.url, pool_size=1)
    try:
        async with small.transaction() as store:
            first = await _pid(store.tx)
        for n, first_statement_writes in enumerate((True, False)):
            async with small.transaction() as store:
                async with observer.transaction() as outside:
                    assert await outside.tx.scalar(sa.select(sa.func.pg_terminate_backend(first, 5000))) is True
                if first_statement_writes:
                    assert await store.events.claim(platform="slack", event_id=f"Ev{n}", now=NOW)
                replacement = await _pid(store.tx)
                assert await store.events.claim(platform="slack", event_id=f"Ev{n}-again", now=NOW)
            assert replacement != first
            first = replacement
        async with small.transaction() as store:
            assert not await store.events.claim(platform="slack", event_id="Ev0", now=NOW)
            assert not await store.events.claim(platform="slack", event_id="Ev1-again", now=NOW)
    finally:
        await small.dispose()


@PG_ONLY
async def test_a_cancelled_transactions_connection_is_closed_not_reused(pg: Database, observer: Database) -> None:
    (message_id,) = await _queue(pg, 1)
    small = Database.connect(pg.url, pool_size=1)
    holding, release = asyncio.Event(), asyncio.Event()
    waiting: list[int] = []
    holder_pid: list[int] = []
    entered = asyncio.Event()

    async def holder() -> None:
        async with observer.transaction() as store:
            holder_pid.append(await _pid(store.tx))
            await store.tx.rows(_lock(message_id))
            holding.set()
            await asyncio.wait_for(release.wait(), WAIT_S)

    async def stuck() -> None:
        async with small.transaction() as store:
            waiting.append(await _pid(store.tx))
            entered.set()
            await store.tx.rows(_lock(message_id))  # waits for the holder: cancelled meanwhile

    holding_task = asyncio.create_task(holder())
    try:
        await asyncio.wait_for(holding.wait(), WAIT_S)
        task = asyncio.create_task(stuck())
        await asyncio.wait_for(entered.wait(), WAIT_S)
        await _until_blocked(observer, waiting[0], holder_pid[0])
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(5), small.transaction() as store:  # the one slot is free again
            assert await _pid(store.tx) != waiting[0]
            assert await store.tx.scalar(sa.select(sa.literal(1))) == 1
    finally:
        release.set()
        await holding_task
        await small.dispose()


@PG_ONLY
async def test_a_read_only_server_is_refused_at_start(pg: Database) -> None:
    """As on a standby: the connection's transactions are read-only by default (set here for the
    one pooled connection with ``set_config``, as ``default_transaction_read_only`` on a replica)."""
    await pg.check_writable()
    single = Database.connect(pg.url, pool_size=1)
    try:
        async with single.transaction() as store:
            await store.tx.scalar(sa.select(sa.func.set_config("default_transaction_read_only", "on", False)))
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await single.check_writable()
    finally:
        await single.dispose()


async def test_an_unreachable_server_is_reported_as_unavailable(pg_url: str) -> None:
    url = sa.make_url(pg_url).set(port=1, query={"connect_timeout": "2"}).render_as_string(hide_password=False)
    db = Database.connect(url)
    try:
        with pytest.raises(DatabaseUnavailable):
            async with db.transaction():
                pass
        assert not await db.ping()
    finally:
        await db.dispose()

