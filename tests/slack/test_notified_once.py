"""The requester hears about each change of their request exactly once, also with two bot
processes on one database: both handle the same BRM commands (a platform retrying each
event, as Slack does when an ack is late) and both run the delivery worker. Counted at the
fake Slack Web API. On SQLite (one file) and PostgreSQL (skipped, with the reason, if unreachable)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from conversations.engine import Engine
from conversations.messages import ConversationKey, Inbound
from storage.db import Database
from storage.models import OutboxMessage
from tests.helpers import rows_of
from tests.slack.conftest import BOT_TOKEN, SIGNING_SECRET
from tests.slack.fake_slack import FakeSlack
from tests.slack.notify_replica import ALICE, BRM_DM, BRM_USER, TEAM

ROOT = Path(__file__).resolve().parents[2]
CHANGES = (
    "accept DR-2",
    "move DR-2 to shaping because scoping it with Finance",
    "move DR-2 to approved because the budget is agreed",
    "move DR-2 to in delivery because sprint 4 starts",
    "move DR-2 to delivered because it is live",
)
TOLD = ("triaged", "approved", "delivered")  # what a requester hears about; shaping and in delivery are not
DANA_DM = "D0DANA"
PATIENCE = 120


def _environment(db: Database, fake: FakeSlack, state: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MICROSOFT_", "TEAMS_", "BRM_BOT_"))}
    env.update(
        DATABASE_URL=db.url, SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
        SLACK_API_URL=fake.api_url, BRM_BOT_DELIVERY_HOURS="always", BRM_BOT_STATE_DIR=str(state),
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    return env


async def test_two_processes_tell_the_requester_once_per_change(
    engine: Engine, fake_slack: FakeSlack, tmp_path: Path
) -> None:
    db = engine.db
    # Alice has written to the bot before (her Slack identity is known), as a BRM acting on DR-2 has.
    await engine.handle(Inbound(ConversationKey("slack", TEAM, BRM_DM, BRM_USER), "Ev-hello", "help", sender=ALICE))
    replicas = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.slack.notify_replica", *CHANGES, cwd=ROOT,
            env=_environment(db, fake_slack, tmp_path / name),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        for name in ("a", "b")
    ]
    try:
        for replica in replicas:
            assert replica.stdout is not None and replica.stderr is not None
            ready = await asyncio.wait_for(replica.stdout.readline(), PATIENCE)
            assert ready == b"ready\n", (await replica.stderr.read()).decode()[-3000:]
        outputs = await asyncio.wait_for(
            asyncio.gather(*(replica.communicate(b"go\n") for replica in replicas)), PATIENCE
        )
    finally:
        for replica in replicas:
            if replica.returncode is None:
                replica.kill()
    results: list[dict[str, int]] = []
    for replica, (out, err) in zip(replicas, outputs, strict=True):
        assert replica.returncode == 0, err.decode()[-3000:]
        results.append({k: int(v) for k, v in (pair.split("=") for pair in out.decode().split())})

    assert sum(r["answered"] for r in results) == len(CHANGES), "each change made once, by one of the two"
    told = [c for c in fake_slack.called("chat.postMessage") if c.args["channel"] == DANA_DM]
    assert len(told) == len(TOLD), [c.text for c in told]
    # Two workers deliver side by side, so the order may differ; each change arrives once.
    heard = sorted(next(s for s in TOLD if f"is now {s}" in c.text) for c in told if "DR-2" in c.text)
    assert heard == sorted(TOLD), [c.text for c in told]
    assert sum(r["sent"] for r in results) == len(TOLD), "and each delivered by one worker"
    updates = [m for m in await rows_of(db, OutboxMessage) if m.kind == "request_update"]
    assert len(updates) == len(TOLD) and {m.status for m in updates} == {"sent"}
