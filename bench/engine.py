"""Engine benchmark: N simulated users each complete a full intake, concurrently.

Run by hand (never in the test suite)::

    python bench/engine.py                    # 200 users, SQLite file and PostgreSQL
    python bench/engine.py --users 500 --db sqlite

Two measurements per database:

* **burst**: every user starts at once and answers as soon as the bot replies (closed loop).
  Gives the most messages per second the engine sustains; the time per message then includes
  waiting behind the other 199 users' messages (a first message counts from the start of the
  burst, since that is when it was sent).
* **paced**: the same intakes, but messages arrive as a Poisson stream at ``--rate``
  messages/s (default 300), each from a random person who is not waiting for a reply: a busy
  workspace. Gives the time a person waits for a reply at that load.

Before measuring, 20 other people each file a request, so the connection pool is open and
the statements prepared, as on a server that has been up for a minute. The measured 200 are
new to the bot: their first message is a first contact.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import hashlib
import os
import platform
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conversations.engine import Engine
from conversations.flows import default_flows
from conversations.messages import ConversationKey, Inbound, Sender
from storage import migrate
from storage.admin import create_database
from storage.db import Database
from storage.demo import load_demo

POSTGRES = os.environ.get("BRM_BOT_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
SCRIPT = (  # the five-message intake a person with good answers sends
    "new request",
    "{title}",
    "Managers wait days for reports, so that managers answer their own questions without a ticket",
    "project, medium, end of March",
    "submit",
)


def _title(seed: str) -> str:
    """A distinct title per user, so the duplicate check (rightly) stays quiet."""
    digest = hashlib.sha256(seed.encode()).hexdigest()
    return f"Reporting {digest[:10]} {digest[10:20]}"


def _pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _fresh(url: str) -> Database:
    """A new, migrated database with the demo organisation (PostgreSQL: a database of its own)."""
    if sa.make_url(url).get_backend_name() == "postgresql":
        url = await create_database(url, "brm_bench", replace=True)
    db = Database.connect(url)
    await migrate.upgrade(db)
    async with db.transaction() as store:
        await load_demo(store, now=datetime.now(UTC))
    return db


async def _send(engine: Engine, tag: str, n: int, step: int, sent: float | None = None) -> float:
    user = f"bench-{tag}-{n}@example.com"
    key = ConversationKey("console", "bench", "terminal", user)
    text = SCRIPT[step].format(title=_title(f"{tag}{n}"))
    inbound = Inbound(key=key, event_id=f"{tag}-{n}-{step}", text=text, sender=Sender(email=user))
    started = time.perf_counter() if sent is None else sent
    replies = await engine.handle(inbound)
    elapsed = time.perf_counter() - started
    assert replies, f"no reply to {text!r}"
    if step == len(SCRIPT) - 1:
        assert "Submitted as DR-" in replies[0].plain_text(), replies[0].plain_text()
    return elapsed


async def _burst(engine: Engine, users: int, latencies: list[float], tag: str = "burst") -> None:
    """Everyone at once, each answering as soon as the bot replies."""

    start = time.perf_counter()

    async def person(n: int) -> None:
        for step in range(len(SCRIPT)):
            latencies.append(await _send(engine, tag, n, step, sent=start if step == 0 else None))

    await asyncio.gather(*(person(n) for n in range(users)))


async def _paced(engine: Engine, users: int, rate: float, latencies: list[float]) -> None:
    """A Poisson stream of messages at ``rate``, each from a random person not awaiting a reply."""
    rng = random.Random(42)
    ready = list(range(users))
    steps = [0] * users
    running: set[asyncio.Task[None]] = set()

    someone_ready = asyncio.Event()

    async def one(n: int) -> None:
        latencies.append(await _send(engine, "paced", n, steps[n]))
        steps[n] += 1
        if steps[n] < len(SCRIPT):
            ready.append(n)
            someone_ready.set()

    clock = time.perf_counter()
    for _ in range(users * len(SCRIPT)):
        clock += rng.expovariate(rate)
        await asyncio.sleep(max(0.0, clock - time.perf_counter()))
        while not ready:
            someone_ready.clear()
            await someone_ready.wait()
        n = ready.pop(rng.randrange(len(ready)))
        task = asyncio.create_task(one(n))
        running.add(task)
        task.add_done_callback(running.discard)
    await asyncio.gather(*running)


async def run(url: str, label: str, users: int, rate: float) -> list[str]:
    db = await _fresh(url)
    engine = Engine(db, default_flows(), clock=lambda: datetime.now(UTC))
    await _burst(engine, 20, [], tag="warm-up")
    gc.collect()
    gc.freeze()  # as `brm-bot serve` does after start: full collections no longer walk the libraries
    lines = []
    for mode in ("burst", "paced"):
        latencies: list[float] = []
        started = time.perf_counter()
        await (_paced(engine, users, rate, latencies) if mode == "paced" else _burst(engine, users, latencies))
        elapsed = time.perf_counter() - started
        lines.append(
            f"| {label} | {mode}{f' @ {rate:.0f}/s' if mode == 'paced' else ''} | {users} | {len(latencies)} | "
            f"{len(latencies) / elapsed:,.0f} | {_pct(latencies, 50) * 1000:.1f} | {_pct(latencies, 99) * 1000:.1f} |"
        )
    await db.dispose()
    return lines


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--rate", type=float, default=300.0, help="offered messages/s in the paced run")
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.db in ("sqlite", "both"):
            rows += await run(f"sqlite+aiosqlite:///{tmp}/bench.db", "SQLite (file, WAL)", args.users, args.rate)
    if args.db in ("postgresql", "both"):
        try:
            rows += await run(POSTGRES, "PostgreSQL", args.users, args.rate)
        except OSError as exc:
            print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| database | load | users | messages | messages/s | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    asyncio.run(main())
