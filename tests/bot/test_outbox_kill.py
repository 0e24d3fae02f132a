"""A delivery worker killed with SIGKILL half-way through a batch, then restarted, delivers
every message once, counted at the fake platform API.

The worker runs in a process of its own (``tests/bot/outbox_worker.py``: the worker of
``brm-bot serve`` with the real adapters), and is killed while one of its posts is on the wire
and unanswered: that post never reached the platform, the rest of its claimed batch is still
leased to it. The restarted worker takes the batch over when the lease runs out and sends each
message that was not sent, and none that was. The last test shows the one case that sends a
message twice on Teams, and that Slack finds such a message instead of sending it again
(docs/operations.md: "The outbox: what is guaranteed").
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

from storage.db import Database
from storage.models import OutboxStatus
from tests.bot.outbox_worker import READY, LimitedConnector, LimitedSlack, seed, slack_user, tally, unsent

MESSAGES = 120
PEOPLE = 12
KILL_AFTER = 30  # posts that reached the platform before the kill: inside the first batch of 50
START_SECONDS = 60.0
ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def worker(db: Database, *, slack_api: str | None = None, teams: bool = False) -> AsyncIterator[int]:
    """The worker process, ready to deliver; yields its pid. Killed (if still alive) at the end."""
    args = ["--db", db.url, "--lease", "2"]
    args += ["--slack-api", slack_api] if slack_api else []
    args += ["--teams"] if teams else []
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.bot.outbox_worker", *args, cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    try:
        async with asyncio.timeout(START_SECONDS):
            line = await process.stderr.readline()
        assert READY in line.decode(), line.decode() + (await process.stderr.read()).decode()
        yield process.pid
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()


async def _until(check: Callable[[], Awaitable[bool]], *, within: float = START_SECONDS) -> None:
    """Poll the outcome a person would see (the platform's calls, the outbox's states)."""
    for _ in range(int(within / 0.05)):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {within} s")


async def test_a_slack_worker_killed_mid_batch_then_restarted_sends_each_message_once(db: Database) -> None:
    fake = LimitedSlack({slack_user(n): {"email": f"p{n}@example.com", "name": f"Person {n}"}
                         for n in range(PEOPLE)}, rate=1000)
    await fake.start()
    try:
        await seed(db, people=PEOPLE, messages=MESSAGES, platform="slack")
        async with worker(db, slack_api=fake.api_url) as pid:
            await fake.wait_for("chat.postMessage", KILL_AFTER, within=START_SECONDS)
            fake.hold("chat.postMessage")
            await fake.wait_held(1)
            os.kill(pid, signal.SIGKILL)
        fake.release("chat.postMessage")
        before = fake.count("chat.postMessage")
        assert KILL_AFTER <= before < MESSAGES, "the worker was killed half-way"
        assert await unsent(db) == MESSAGES - before

        async with worker(db, slack_api=fake.api_url):
            await _until(lambda: _none_unsent(db))
        counted = tally(fake.texts())
        assert sorted(counted) == list(range(MESSAGES)), "every message reached Slack"
        assert set(counted.values()) == {1}, f"sent twice: {[m for m, n in counted.items() if n > 1]}"
    finally:
        await fake.close()


async def test_a_teams_worker_killed_mid_batch_then_restarted_sends_each_message_once(db: Database) -> None:
    connector = _HoldingConnector()
    runner = web.AppRunner(connector.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    service_url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        await seed(db, people=PEOPLE, messages=MESSAGES, platform="teams", service_url=service_url)
        async with worker(db, teams=True) as pid:
            await _until(lambda: _at_least(connector, KILL_AFTER))
            connector.holding = asyncio.Event()
            await _until(lambda: _waiting(connector))
            os.kill(pid, signal.SIGKILL)
        connector.holding.set()
        before = len(connector.messages)
        assert KILL_AFTER <= before < MESSAGES
        async with worker(db, teams=True):
            await _until(lambda: _none_unsent(db))
        counted = tally(connector.texts())
        assert sorted(counted) == list(range(MESSAGES)), "every message reached Teams"
        assert set(counted.values()) == {1}, f"sent twice: {[m for m, n in counted.items() if n > 1]}"
    finally:
        await runner.cleanup()


class _HoldingConnector(LimitedConnector):
    """Once ``holding`` is set to an event, new messages wait for it; one whose sender died
    meanwhile never reaches Teams (it is neither recorded nor answered)."""

    def __init__(self) -> None:
        super().__init__(rate=1000)
        self.holding: asyncio.Event | None = None
        self.waiting = 0

    async def _send(self, request: web.Request) -> web.Response:
        if self.holding is not None:
            self.waiting += 1
            await self.holding.wait()
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)
        return await super()._send(request)


async def _none_unsent(db: Database) -> bool:
    return await unsent(db) == 0


async def _at_least(connector: LimitedConnector, count: int) -> bool:
    return len(connector.messages) >= count


async def _waiting(connector: _HoldingConnector) -> bool:
    return connector.waiting >= 1


@asynccontextmanager
async def _sqlite(tmp_path: Path, sqlite_template: Path) -> AsyncIterator[tuple[Database, sqlite3.Connection]]:
    """A migrated SQLite database, and a second connection to hold its write lock with."""
    path = tmp_path / "brm.db"
    await asyncio.to_thread(shutil.copy, sqlite_template, path)
    db = Database.connect(f"sqlite+aiosqlite:///{path}")
    lock = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    try:
        yield db, lock
    finally:
        lock.close()
        await db.dispose()


async def _kill_after_accepted_before_recorded(
    db: Database, lock: sqlite3.Connection, accepted: Callable[[], int], **platform: Any
) -> set[int]:
    """Run a worker, hold SQLite's write lock so its record of a post the platform accepted
    waits, kill it in that window, and let go of the lock; returns the message numbers the
    platform took that the database has not recorded as sent (the one in the window)."""
    async with worker(db, **platform) as pid:
        await _until(lambda: _at_least_posted(accepted, KILL_AFTER))
        await asyncio.to_thread(lock.execute, "BEGIN IMMEDIATE")  # nobody else writes until the rollback

        async def accepted_but_not_recorded() -> bool:
            return accepted() == MESSAGES - await unsent(db) + 1

        await _until(accepted_but_not_recorded)
        os.kill(pid, signal.SIGKILL)
    await asyncio.to_thread(lock.rollback)
    async with db.transaction() as store:
        unsent_numbers = {int(m.subject[1:]) for m in await store.outbox.all() if m.status != OutboxStatus.SENT}
    return unsent_numbers


async def _at_least_posted(accepted: Callable[[], int], count: int) -> bool:
    return accepted() >= count


async def test_slack_finds_the_message_it_took_just_before_a_kill_and_does_not_send_it_again(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """Killed after Slack accepted a message and before the worker recorded it: the restarted
    worker reads the DM back, finds that message by its metadata (the outbox id), and marks it
    sent with the ts Slack gave it, instead of posting it a second time."""
    fake = LimitedSlack({slack_user(n): {"email": f"p{n}@example.com", "name": f"Person {n}"}
                         for n in range(PEOPLE)}, rate=1000)
    await fake.start()
    try:
        async with _sqlite(tmp_path, sqlite_template) as (db, lock):
            await seed(db, people=PEOPLE, messages=MESSAGES, platform="slack")
            unsent_then = await _kill_after_accepted_before_recorded(
                db, lock, lambda: fake.count("chat.postMessage"), slack_api=fake.api_url)
            (in_window,) = set(tally(fake.texts())) & unsent_then
            (first,) = [c for c in fake.called("chat.postMessage") if f"outbox message {in_window} of" in c.text]
            async with worker(db, slack_api=fake.api_url):
                await _until(lambda: _none_unsent(db))
            counted = tally(fake.texts())
            assert sorted(counted) == list(range(MESSAGES)), "nothing is lost"
            assert set(counted.values()) == {1}, f"sent twice: {[m for m, n in counted.items() if n > 1]}"
            async with db.transaction() as store:
                (row,) = [m for m in await store.outbox.all() if m.subject == f"m{in_window}"]
            assert row.status == OutboxStatus.SENT
            assert row.platform_message_id == f"{first.args['channel']}:{first.result['ts']}"
            looked = fake.called("conversations.history")
            assert looked and all(c.args.get("include_all_metadata") in {"1", "true", True} for c in looked)
            assert first.args["metadata"] == {"event_type": "brm_bot_outbox",
                                              "event_payload": {"outbox_id": row.id}}
    finally:
        await fake.close()


async def test_teams_sends_the_message_it_took_just_before_a_kill_once_more(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """The honest limit on Teams: the Bot Connector cannot be asked what a conversation holds,
    so a worker killed after Teams accepted a message and before it recorded it sends that
    message (and only it) again after the restart (docs/operations.md: "The outbox: what is
    guaranteed")."""
    connector = LimitedConnector(rate=1000)
    runner = web.AppRunner(connector.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    service_url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
    try:
        async with _sqlite(tmp_path, sqlite_template) as (db, lock):
            await seed(db, people=PEOPLE, messages=MESSAGES, platform="teams", service_url=service_url)
            await _kill_after_accepted_before_recorded(db, lock, lambda: connector.delivered, teams=True)
            async with worker(db, teams=True):
                await _until(lambda: _none_unsent(db))
            counted = tally(connector.texts())
            assert sorted(counted) == list(range(MESSAGES)), "nothing is lost"
            assert sorted(counted.values()) == [1] * (MESSAGES - 1) + [2], "exactly one message went twice"
    finally:
        await runner.cleanup()
