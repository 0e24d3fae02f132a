"""Outbox benchmark: queued messages through the delivery worker to a rate-limited fake platform.

Run by hand from the repository root (never in the test suite)::

    python bench/outbox.py                                   # 10,000 messages at 50/s, Slack and Teams, SQLite
    python bench/outbox.py --messages 2000 --kill            # smaller, plus a run with a SIGKILL in the middle
    python bench/outbox.py --db postgresql --platform slack --kill

``--messages`` messages to ``--people`` people are queued in a fresh database, then the
delivery worker (``tests/bot/outbox_worker.py``: the worker of ``brm-bot serve`` with the real
Slack or Teams adapter, in a process of its own) sends them to a fake platform on 127.0.0.1
that allows ``--rate`` messages a second, with bursts of up to one second's worth, and answers
429 with ``Retry-After`` beyond that (the fake Slack Web API's ``chat.postMessage``, or the fake
Bot Connector). The worker paces itself at ``--pace`` sends a second (default: ``--rate``,
what a deployment configures for its platform; ``--pace 0`` leaves it to the 429s alone).

Counted at the fake: every message's number, so lost (never arrived) and duplicated (arrived
twice) messages are exact; the achieved rate is the messages over the time from the first
arrival to the last, and, for a run with a kill, also over that time less the restart (from the
kill until the new process is ready to deliver: interpreter and library start-up, which a
supervisor's restart costs whatever the worker does).

With ``--kill`` each leg runs twice: once straight through, once with the worker killed
(SIGKILL) when half the messages have arrived and started again at once; the restarted worker
sends what nobody claimed at once and takes over the killed one's claimed batch when its lease
(``--lease`` seconds) runs out. Targets: at least 95% of the allowed rate, zero lost, zero
duplicates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from storage import migrate  # noqa: E402
from storage.admin import create_database, drop_database  # noqa: E402
from storage.db import Database  # noqa: E402
from tests.bot.outbox_worker import READY, LimitedConnector, LimitedSlack, seed, slack_user, tally, unsent  # noqa: E402

POSTGRES = os.environ.get("BRM_BOT_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
POLL = 0.02


@dataclass
class Result:
    platform: str
    db: str
    killed: bool
    messages: int
    seconds: float
    lost: int
    duplicates: int
    refused: int
    unsent: int
    restart: float = 0.0  # seconds from the kill until the new worker process was ready

    @property
    def rate(self) -> float:
        return (self.messages - 1) / self.seconds if self.seconds else 0.0

    @property
    def running_rate(self) -> float:
        """The rate over the time a worker process was up (the restart itself left out)."""
        up = self.seconds - self.restart
        return (self.messages - 1) / up if up > 0 else 0.0

    def row(self, allowed: float) -> str:
        run = f"SIGKILL at half, restarted ({self.restart:.1f} s)" if self.killed else "straight through"
        share, running = 100 * self.rate / allowed, 100 * self.running_rate / allowed
        return (f"| {self.platform} | {self.db} | {run} | {self.messages:,} | {self.seconds:.1f} | {self.rate:.2f} "
                f"({share:.1f}%) | {self.running_rate:.2f} ({running:.1f}%) | {self.lost} | {self.duplicates} "
                f"| {self.refused} |")


class Worker:
    """The worker process; its stderr is kept (and shown if it fails)."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.output: list[str] = []
        self._drain: asyncio.Task[None] | None = None

    @classmethod
    async def start(cls, db_url: str, args: list[str]) -> Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.bot.outbox_worker", "--db", db_url, *args, cwd=ROOT,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )
        worker = cls(process)
        assert process.stderr is not None
        line = (await asyncio.wait_for(process.stderr.readline(), 60)).decode()
        if READY not in line:
            raise SystemExit("the worker did not start:\n" + line + (await process.stderr.read()).decode())
        worker._drain = asyncio.create_task(worker._read())
        return worker

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            self.output.append(line.decode(errors="replace"))

    async def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.returncode is None:
            self.process.send_signal(sig)
        await self.process.wait()
        if self._drain is not None:
            await self._drain


async def _database(kind: str, folder: Path) -> tuple[str, str | None]:
    """A new, migrated database: (its URL, the PostgreSQL database name to drop afterwards)."""
    if kind == "sqlite":
        url, name = f"sqlite+aiosqlite:///{folder / f'outbox-{uuid.uuid4().hex[:6]}.db'}", None
    else:
        name = f"brm_bench_outbox_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        url = await create_database(POSTGRES, name)
    db = Database.connect(url)
    try:
        await migrate.upgrade(db)
    finally:
        await db.dispose()
    return url, name


async def leg(args: argparse.Namespace, platform_name: str, db_kind: str, *, kill: bool, folder: Path) -> Result:
    url, pg_name = await _database(db_kind, folder)
    db = Database.connect(url, pool_size=2)
    runner: web.AppRunner | None = None
    fake: LimitedSlack | LimitedConnector
    worker_args = ["--lease", str(args.lease), "--rate", str(args.pace if args.pace is not None else args.rate)]
    try:
        if platform_name == "slack":
            fake = LimitedSlack({slack_user(n): {"email": f"p{n}@example.com", "name": f"Person {n}"}
                                 for n in range(args.people)}, rate=args.rate)
            await fake.start()
            worker_args += ["--slack-api", fake.api_url]
            service_url = ""
        else:
            fake = LimitedConnector(rate=args.rate)
            runner = web.AppRunner(fake.app(), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            service_url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
            worker_args += ["--teams"]
        await seed(db, people=args.people, messages=args.messages, platform=platform_name, service_url=service_url)

        def arrived() -> int:
            return fake.delivered if isinstance(fake, LimitedConnector) else fake.count("chat.postMessage")

        worker = await Worker.start(url, worker_args)
        first = last = 0.0
        killed = False
        restart = 0.0
        seen = 0
        deadline = time.monotonic() + args.messages / args.rate * 3 + 120
        while time.monotonic() < deadline:
            now_seen = arrived()
            if now_seen and not first:
                first = time.monotonic()
            if now_seen != seen:
                seen, last = now_seen, time.monotonic()
            if kill and not killed and seen >= args.messages // 2:
                killed_at = time.monotonic()
                os.kill(worker.process.pid, signal.SIGKILL)
                await worker.stop()
                killed = True
                print(f"  killed the worker at {seen:,} messages; restarting it", flush=True)
                worker = await Worker.start(url, worker_args)
                restart = time.monotonic() - killed_at
            if seen >= args.messages and await unsent(db) == 0:
                break
            await asyncio.sleep(POLL)
        await asyncio.sleep(1.0)  # anything still on its way is counted too
        await worker.stop()
        counted = tally(fake.texts())
        left = await unsent(db)
        if left:
            print("".join(worker.output[-20:]), file=sys.stderr)
        return Result(
            platform=platform_name, db=db_kind, killed=kill, messages=args.messages, seconds=last - first,
            lost=sum(1 for n in range(args.messages) if n not in counted),
            duplicates=sum(c - 1 for c in counted.values() if c > 1), refused=fake.bucket.refused, unsent=left,
            restart=restart,
        )
    finally:
        await db.dispose()
        if isinstance(fake, LimitedSlack):
            await fake.close()
        if runner is not None:
            await runner.cleanup()
        if pg_name is not None:
            await drop_database(POSTGRES, pg_name)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=50.0, help="messages a second the fake platform allows")
    parser.add_argument("--pace", type=float, default=None, help="sends a second the worker aims at (default --rate)")
    parser.add_argument("--db", choices=("sqlite", "postgresql"), default="sqlite")
    parser.add_argument("--platform", choices=("slack", "teams", "both"), default="both")
    parser.add_argument("--kill", action="store_true", help="also a run with a SIGKILL of the worker half-way")
    parser.add_argument("--only-kill", action="store_true", help="only the run with the SIGKILL")
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--lease", type=float, default=3.0, help="seconds a claimed batch stays the worker's")
    args = parser.parse_args()
    platforms = ("slack", "teams") if args.platform == "both" else (args.platform,)
    runs = [True] if args.only_kill else ([False, True] if args.kill else [False])
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} cores; "
          f"{args.messages:,} messages to {args.people} people, the platform allows {args.rate:g}/s", flush=True)
    results = []
    with tempfile.TemporaryDirectory() as folder:
        for name in platforms:
            for kill in runs:
                print(f"{name}, {args.db}, {'with a SIGKILL' if kill else 'straight through'} ...", flush=True)
                result = await leg(args, name, args.db, kill=kill, folder=Path(folder))
                print("  " + result.row(args.rate), flush=True)
                results.append(result)
    print()
    print("| platform | database | run | messages | seconds | messages/s (of allowed) | while a worker was up "
          "| lost | duplicates | 429s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for result in results:
        print(result.row(args.rate))
    failed = [r for r in results if r.lost or r.duplicates or r.unsent or r.running_rate < 0.95 * args.rate]
    if failed:
        print(f"\nTARGET MISSED in {len(failed)} run(s): at least 95% of the allowed rate, zero lost, zero duplicates")


if __name__ == "__main__":
    asyncio.run(main())
