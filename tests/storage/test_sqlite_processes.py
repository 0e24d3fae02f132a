"""Two bot processes on one SQLite file: no "database is locked", nothing lost or sent twice."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from storage import migrate
from storage.db import Database
from storage.demo import load_demo

ROOT = Path(__file__).resolve().parents[2]


async def _prepare(url: str) -> None:
    db = Database.connect(url)
    await migrate.upgrade(db)
    try:
        async with db.transaction() as store:
            await load_demo(store, now=datetime.now(UTC))
    finally:
        await db.dispose()


async def _count(url: str) -> tuple[int, list[str]]:
    db = Database.connect(url)
    try:
        async with db.transaction() as store:
            requests = await store.requests.count()
            statuses = [m.status for m in await store.outbox.all()]
    finally:
        await db.dispose()
    return requests, statuses


def test_two_processes_share_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'shared.db'}"
    asyncio.run(_prepare(url))
    replicas = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.storage.sqlite_replica", url, name, "25"],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    outputs = [replica.communicate(timeout=120) for replica in replicas]
    for replica, (_out, err) in zip(replicas, outputs, strict=True):
        assert replica.returncode == 0, err
        assert "database is locked" not in err
    results = dict(line.split(" ", 1) for line in (out.strip() for out, _ in outputs))
    assert results["a"].startswith("submitted=25") and results["b"].startswith("submitted=25")
    delivered = sum(int(r.split("delivered=")[1]) for r in results.values())
    requests, statuses = asyncio.run(_count(url))
    assert requests == 12 + 50
    # every new request notified its BRM exactly once, whichever replica delivered it
    assert len(statuses) == 50 and set(statuses) == {"sent"} and delivered == 50
