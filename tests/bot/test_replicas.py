"""Two ``brm-bot serve`` replicas on one PostgreSQL fire the same ``nudges`` job: each BRM gets
exactly one nudge, counted at the (fake) Slack Web API.

Both processes start at the same moment with a nudges schedule that fell a minute ago, so
both schedulers catch the run up at start (the path every tick takes: claim the job's period
first), and both delivery workers poll the same outbox. Skipped, saying why, when no
PostgreSQL answers.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from storage import migrate
from storage.admin import create_database, drop_database
from storage.db import Database
from storage.demo import load_demo
from storage.models import JobRun, OutboxMessage
from tests.conftest import POSTGRES_URL
from tests.slack.conftest import BOT_TOKEN, SIGNING_SECRET
from tests.slack.fake_slack import FakeSlack
from tests.slack.test_serve import START_SECONDS, Served, _brm_bot, _free_port

BRMS = {"U0ALICE": {"email": "alice@example.com", "name": "Alice Moreno"},
        "U0BEN": {"email": "ben@example.com", "name": "Ben Okafor"}}
WESTMOST_BRM_ZONE = "Europe/London"  # of the demo's BRMs (Alice: Madrid, Ben: London)


@pytest.fixture
async def shared_postgres() -> AsyncIterator[str]:
    """A new PostgreSQL database with the demo organisation; skipped when PostgreSQL is unreachable."""
    name = f"brm_replicas_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    try:
        url = await create_database(POSTGRES_URL, name)
    except Exception as exc:
        reason = f"two replicas need PostgreSQL at {sa.make_url(POSTGRES_URL).render_as_string()}: " + (
            f"{type(exc).__name__}: {exc}".splitlines()[0])
        print(reason)
        pytest.skip(reason)
    db = Database.connect(url)
    try:
        await migrate.upgrade(db)
        async with db.transaction() as store:
            assert await load_demo(store, now=datetime.now(UTC))
    finally:
        await db.dispose()
    try:
        yield url
    finally:
        await drop_database(POSTGRES_URL, name)


def _env(fake: FakeSlack, folder: Path, database_url: str, schedule: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MICROSOFT_", "TEAMS_", "BRM_BOT_"))}
    env.update({
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": fake.api_url,
        "DATABASE_URL": database_url, "HOST": "127.0.0.1", "PORT": str(_free_port()), "HOME": str(folder),
        "BRM_BOT_STATE_DIR": str(folder / "state"), "BRM_BOT_NUDGES_SCHEDULE": schedule,
        "BRM_BOT_DELIVERY_HOURS": "always",
    })
    return env


async def _start(env: dict[str, str], folder: Path) -> Served:
    process = await asyncio.create_subprocess_exec(
        *_brm_bot(), "serve", cwd=folder, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    server = Served(process, f"http://127.0.0.1:{env['PORT']}")
    await server.read_until("serving slack on")
    return server


async def _delivered(db: Database) -> bool:
    async with db.transaction() as store:
        counts = await store.outbox.counts()
    return set(counts) == {"sent"}


async def test_two_serve_replicas_on_one_postgresql_deliver_exactly_one_nudge_per_brm(
    shared_postgres: str, tmp_path: Path
) -> None:
    fake = FakeSlack(users=BRMS)
    await fake.start()
    a_minute_ago = datetime.now(ZoneInfo(WESTMOST_BRM_ZONE)) - timedelta(minutes=1)
    schedule = f"* {a_minute_ago:%H:%M}"  # fell within the misfire grace in every BRM's zone
    replicas: list[Served] = []
    db = Database.connect(shared_postgres, pool_size=2)
    try:
        for name in ("a", "b"):
            (tmp_path / name).mkdir()
        replicas = list(await asyncio.gather(*(
            _start(_env(fake, tmp_path / name, shared_postgres, schedule), tmp_path / name) for name in ("a", "b")
        )))
        await fake.wait_for("chat.postMessage", len(BRMS), within=START_SECONDS)
        for _ in range(int(START_SECONDS * 10)):  # every queued nudge marked sent: nothing more will go
            if await _delivered(db):
                break
            await asyncio.sleep(0.1)
        for replica in replicas:
            assert await replica.stop() == 0
        posted = Counter(call.args["channel"] for call in fake.called("chat.postMessage"))
        assert posted == {"D0ALICE": 1, "D0BEN": 1}, "exactly one nudge per BRM"
        assert all("What needs your attention" in call.text for call in fake.called("chat.postMessage"))
        async with db.transaction() as store:
            runs = await store.rows(sa.select(JobRun.job, JobRun.period, JobRun.attempts))  # type: ignore[call-overload]
            nudges = await store.rows(sa.select(OutboxMessage.recipient_id)  # type: ignore[call-overload]
                                      .where(OutboxMessage.kind == "nudge"))
        nudge_runs = sorted(period for job, period, _ in runs if job == "nudges")
        assert [p.split(" ", 1)[1] for p in nudge_runs] == ["Europe/London", "Europe/Madrid"], "one run per zone"
        assert all(attempts == 1 for job, _, attempts in runs if job == "nudges"), "never taken over"
        assert len(nudges) == len(BRMS)
        output = "".join(line for replica in replicas for line in replica.output)
        assert "Traceback" not in output and BOT_TOKEN not in output
    finally:
        for replica in replicas:
            if replica.process.returncode is None:
                replica.process.kill()
                await replica.process.wait()
        await db.dispose()
        await fake.close()
