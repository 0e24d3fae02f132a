"""A delivery worker killed with SIGKILL half-way through a batch, then restarted, delivers
every message once, counted at the fake platform API.

The worker runs in a process of its own (``tests/bot/outbox_worker.py``: the worker of
``brm-bot serve`` with the real adapters), and is killed while one of its posts is on the wire
and unanswered: that post never reached the platform, the rest of its claimed batch is still
leased to it. The restarted worker takes the batch over when the lease runs out and sends each
message that was not sent, and none that was. The last test shows the one case that sends a
message twice (docs/operations.md: "The outbox: what is guaranteed").
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

from aiohttp import web

from storage.db import Database
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



async def test_the_one_duplicate_a_kill_can_cause_is_the_message_the_platform_took_just_before(
    tmp_path: Path, sqlite_template: Path
) -> None:
    """The honest limit: killed after Slack accepted a message and before the worker recorded it,
    that message (and only it) goes again after the restart. The test holds SQLite's write lock
    so the worker's record of a post Slack accepted waits, and kills the worker in that window."""
    path = tmp_path / "brm.db"
    await asyncio.to_thread(shutil.copy, sqlite_template, path)
    db = Database.connect(f"sqlite+aiosqlite:///{path}")
    fake = LimitedSlack({slack_user(n): {"email": f"p{n}@example.com", "name": f"Person {n}"}
                         for n in range(PEOPLE)}, rate=1000)
    await fake.start()
    lock = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
    try:
        await seed(db, people=PEOPLE, messages=MESSAGES, platform="slack")
        async with worker(db, slack_api=fake.api_url) as pid:
            await fake.wait_for("chat.postMessage", KILL_AFTER, within=START_SECONDS)
            await asyncio.to_thread(lock.execute, "BEGIN IMMEDIATE")  # nobody else writes until the rollback

            async def accepted_but_not_recorded() -> bool:
                return fake.count("chat.postMessage") == MESSAGES - await unsent(db) + 1

            await _until(accepted_but_not_recorded)
            os.kill(pid, signal.SIGKILL)
        await asyncio.to_thread(lock.rollback)
        async with worker(db, slack_api=fake.api_url):
            await _until(lambda: _none_unsent(db))
        counted = tally(fake.texts())
        assert sorted(counted) == list(range(MESSAGES)), "nothing is lost"
        assert sorted(counted.values()) == [1] * (MESSAGES - 1) + [2], "exactly one message went twice"
    finally:
        lock.close()
        await db.dispose()
        await fake.close()
