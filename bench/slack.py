"""Slack adapter benchmark: signed events through ``POST /slack/events``, end to end.

Run by hand from the repository root (never in the test suite)::

    python bench/slack.py                          # 2,000 events, 50 concurrent, SQLite and PostgreSQL
    python bench/slack.py --events 5000 --concurrency 100 --db sqlite
    python bench/slack.py --db sqlite --rate 0 --journal-cost   # also ours without its work journal

Two apps get the same load in the same run, each on its own aiohttp server on 127.0.0.1,
both talking to the same local fake Slack Web API (``tests/slack/fake_slack.py``):

* **bare**: a slack-bolt ``AsyncApp`` whose only listener acks and echoes the text back with
  ``chat.postMessage``: the floor any bolt app pays (HTTP, signature check, dispatch, one
  Web API call).
* **ours**: the real :class:`adapters.slack.SlackAdapter`: verify, ack, dedupe by event id in
  the database, engine turn (lock, state, flows, one transaction), Block Kit rendering, reply
  posted to the fake.

The load is direct messages from 100 people (``hello``, ``my requests``, ``status DR-1``,
``help``, in turn), each with its own event id. Every person first sends one unmeasured
message, so first-contact ``users.info`` look-ups are not in the figures (steady state).

Under the concurrent load the two apps run ``--rounds`` times each, alternated, so a drift in
the (shared, virtual) machine's speed hits both alike; the ratio is the median of each round's
ours/bare, and every round's ratio is printed beside it.

Reported per app: events/s (events sent until the last reply reached the fake), p50/p99 of the
ack latency (the HTTP answer Slack waits for, which must come within 3 s), the CPU time the
app's process spent per event (from ``/proc``; steadier than events/s on a shared machine), and
the throughput ratio ours/bare. Targets: ratio >= 0.5, p99 ack < 100 ms. Two loads: ``--concurrency`` events
always in flight (the most each app sustains; its ack latency is then mostly queueing), and a
Poisson stream at ``--rate`` events/s (default 200, a busy workspace; the ack latency a user's
Slack sees). Each app runs alone in a process of its own, as it would in production; the load
generator and the fake Slack share another process (on this 2-core machine: one core each).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import itertools
import json
import logging
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import sqlalchemy as sa
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.slack import SlackAdapter
from adapters.slack.client import web_client
from adapters.slack.journal import Journal
from bot.runtime import freeze_startup_heap
from conversations.engine import Engine
from conversations.flows import default_flows
from storage import migrate
from storage.admin import create_database
from storage.db import Database
from storage.demo import load_demo
from tests.slack.fake_slack import BOT_USER_ID, TEAM_ID, FakeSlack

POSTGRES = os.environ.get("BRM_BOT_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
SECRET = "bench-signing-secret-0123456789"
TOKEN = "xoxb-bench-0000-token"
PEOPLE = 100
TEXTS = ("hello", "my requests", "status DR-1", "help")
_ids = itertools.count(1)


def _user(n: int) -> str:
    return f"U0B{n:05d}"


def _pct(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _signed(body: str) -> dict[str, str]:
    ts = str(int(time.time()))
    digest = hmac.new(SECRET.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def _event(n: int, text: str) -> str:
    user = _user(n)
    return json.dumps({
        "token": "unused", "team_id": TEAM_ID, "api_app_id": "A0BENCH", "type": "event_callback",
        "event_id": f"EvB{next(_ids):09d}", "event_time": int(time.time()),
        "authorizations": [{"team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True}],
        "event": {"type": "message", "channel_type": "im", "channel": "D" + user[1:], "user": user, "text": text,
                  "ts": f"{time.time():.6f}", "team": TEAM_ID},
    })


async def _fresh(url: str) -> Database:
    """A new, migrated database with the demo organisation (PostgreSQL: a database of its own)."""
    if sa.make_url(url).get_backend_name() == "postgresql":
        url = await create_database(url, "brm_bench_slack", replace=True)
    db = Database.connect(url, pool_size=10)
    await migrate.upgrade(db)
    async with db.transaction() as store:
        await load_demo(store, now=datetime.now(UTC))
    return db


def _bare_app(api_url: str, http: aiohttp.ClientSession) -> web.Application:
    """slack-bolt with one listener that echoes: the floor for any bolt app on aiohttp."""
    from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
    from slack_bolt.app.async_app import AsyncApp

    bolt = AsyncApp(client=web_client(TOKEN, api_url=api_url, http=http), signing_secret=SECRET)

    @bolt.event("message")
    async def echo(event: dict[str, Any], client: Any) -> None:
        await client.chat_postMessage(channel=event["channel"], text=event.get("text") or "")

    async def handle(request: web.Request) -> web.Response:
        return await to_aiohttp_response(await bolt.async_dispatch(await to_bolt_request(request)))

    app = web.Application()
    app.router.add_post("/slack/events", handle)
    return app


async def _serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}/slack/events"


async def _ack_time(client: aiohttp.ClientSession, url: str, body: str) -> float:
    """POST one signed event; the seconds until the app answered (its ack)."""
    started = time.perf_counter()
    async with client.post(url, data=body.encode(), headers=_signed(body)) as response:
        await response.read()
        if response.status != 200:
            raise RuntimeError(f"the app answered {response.status}")
    return time.perf_counter() - started


async def _load(url: str, bodies: Sequence[str], concurrency: int) -> list[float]:
    """POST the bodies with ``concurrency`` in flight; the ack latency of each."""
    latencies: list[float] = []
    queue: asyncio.Queue[str] = asyncio.Queue()
    for body in bodies:
        queue.put_nowait(body)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=concurrency)) as client:

        async def worker() -> None:
            while not queue.empty():
                latencies.append(await _ack_time(client, url, queue.get_nowait()))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def _load_paced(url: str, bodies: Sequence[str], rate: float) -> list[float]:
    """POST the bodies as a Poisson stream at ``rate`` per second; the ack latency of each."""
    rng = random.Random(7)
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as client:

        async def one(body: str) -> None:
            latencies.append(await _ack_time(client, url, body))

        tasks = []
        due = time.perf_counter()
        for body in bodies:
            due += rng.expovariate(rate)
            await asyncio.sleep(max(0.0, due - time.perf_counter()))
            tasks.append(asyncio.create_task(one(body)))
        await asyncio.gather(*tasks)
    return latencies


def _cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system) process ``pid`` has used so far; NaN where ``/proc`` is missing."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except (OSError, TypeError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _measure(
    url: str, fake: FakeSlack, events: int, concurrency: int, rate: float = 0.0, pid: int | None = None
) -> dict[str, Any]:
    warm = [_event(n, "hello") for n in range(PEOPLE)]
    first = fake.count("chat.postMessage")
    await _load(url, warm, concurrency)
    await fake.wait_for("chat.postMessage", first + PEOPLE, within=120)
    before = fake.count("chat.postMessage")
    bodies = [_event(n % PEOPLE, TEXTS[(n // PEOPLE) % len(TEXTS)]) for n in range(events)]
    cpu = _cpu_seconds(pid)
    started = time.perf_counter()
    latencies = await (_load_paced(url, bodies, rate) if rate else _load(url, bodies, concurrency))
    await fake.wait_for("chat.postMessage", before + events, within=600)
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0.5)
    if (extra := fake.count("chat.postMessage") - before - events) != 0:
        raise RuntimeError(f"expected one reply per event, got {extra:+d} replies more")
    cpu_ms = (_cpu_seconds(pid) - cpu) / events * 1000
    return {"events_per_s": events / elapsed, "cpu_ms": cpu_ms, "latencies": latencies}


async def serve(kind: str, api_url: str, db_url: str, journal_dir: str | None = None) -> None:
    """The app under test, alone in this process: print its URL, serve until stdin closes."""
    async with aiohttp.ClientSession() as http:
        adapter: SlackAdapter | None = None
        db: Database | None = None
        if kind == "bare":
            app = _bare_app(api_url, http)
        else:
            db = Database.connect(db_url)  # the pool brm-bot serve has
            engine = Engine(db, default_flows(), clock=lambda: datetime.now(UTC))
            journal = Journal.open(Path(journal_dir) / "slack-journal.jsonl") if journal_dir else None
            adapter = SlackAdapter(engine, bot_token=TOKEN, signing_secret=SECRET, http=http,
                                   clock=lambda: datetime.now(UTC), api_url=api_url, journal=journal)
            app = web.Application()
            adapter.mount(app)
            await adapter.start()
        runner, url = await _serve(app)
        freeze_startup_heap()  # as brm-bot serve does; both apps get it, so neither pays for full collections
        print(url, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        if adapter is not None:
            await adapter.close()
        await runner.cleanup()
        if db is not None:
            await db.dispose()


async def _measure_process(
    kind: str, fake: FakeSlack, db_url: str, events: int, concurrency: int, rate: float = 0.0
) -> dict[str, Any]:
    journal = ["--journal-dir", tempfile.mkdtemp(prefix="brm-bench-")] if kind == "ours" else []
    server = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve", kind.replace("-nojournal", ""), "--api-url", fake.api_url,
        "--db-url", db_url, *journal, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )
    assert server.stdout is not None and server.stdin is not None
    url = (await asyncio.wait_for(server.stdout.readline(), timeout=60)).decode().strip()
    try:
        return await _measure(url, fake, events, concurrency, rate, pid=server.pid)
    finally:
        server.stdin.close()
        await server.wait()


async def run(
    db_url: str, db_label: str, events: int, concurrency: int, rate: float, rounds: int, journal_cost: bool = False
) -> list[str]:
    fake = FakeSlack(users={_user(n): {"name": f"Bench {n}", "email": f"bench{n}@example.com"} for n in range(PEOPLE)})
    await fake.start()
    rows: list[str] = []
    try:
        loads = [(f"{concurrency} concurrent", 0.0, rounds)] + ([(f"paced {rate:.0f}/s", rate, 1)] if rate else [])
        for load, pace, repeats in loads:
            db = await _fresh(db_url)
            url = db.url
            await db.dispose()
            bare: list[dict[str, Any]] = []
            ours: list[dict[str, Any]] = []
            plain: list[dict[str, Any]] = []
            for _ in range(repeats):  # alternated, so a drift in the machine's speed hits both apps alike
                bare.append(await _measure_process("bare", fake, url, events, concurrency, pace))
                ours.append(await _measure_process("ours", fake, url, events, concurrency, pace))
                if journal_cost:
                    plain.append(await _measure_process("ours-nojournal", fake, url, events, concurrency, pace))
            ratios = [o["events_per_s"] / b["events_per_s"] for b, o in zip(bare, ours, strict=True)]
            rows += [
                _row(db_label, load, "bare bolt (ack + echo)", events, bare, "1.00"),
                _row(db_label, load, "brm-bot SlackAdapter", events, ours, _ratios(ratios)),
            ]
            if journal_cost:
                without = [p["events_per_s"] / b["events_per_s"] for b, p in zip(bare, plain, strict=True)]
                rows.append(_row(db_label, load, "SlackAdapter without journal", events, plain, _ratios(without)))
                cost = [o["events_per_s"] / p["events_per_s"] for o, p in zip(ours, plain, strict=True)]
                rows.append(f"| {db_label} | {load} | journal on / off (events/s) | | | | | | {_ratios(cost)} |")
    finally:
        await fake.close()
    return rows


def _ratios(ratios: list[float]) -> str:
    each = " / ".join(f"{ratio:.2f}" for ratio in ratios)
    return f"**{statistics.median(ratios):.2f}**" + (f" ({each})" if len(ratios) > 1 else "")


def _row(db_label: str, load: str, app: str, events: int, results: list[dict[str, Any]], ratio: str) -> str:
    """One table row: the median round's events/s and CPU, the ack latencies of all rounds together."""
    latencies = [latency for result in results for latency in result["latencies"]]
    throughput = statistics.median(result["events_per_s"] for result in results)
    cpu = statistics.median(result["cpu_ms"] for result in results)
    return (
        f"| {db_label} | {load} | {app} | {len(results)} × {events:,} | {throughput:,.0f} | "
        f"{_pct(latencies, 50) * 1000:.1f} | {_pct(latencies, 99) * 1000:.1f} | {cpu:.2f} | {ratio} |"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--rate", type=float, default=200.0, help="events/s of the paced run (0: no paced run)")
    parser.add_argument("--rounds", type=int, default=3, help="alternated runs of each app under the concurrent load")
    parser.add_argument("--journal-cost", action="store_true",
                        help="also run ours without its work journal, and report the on/off ratio")
    parser.add_argument("--serve", choices=("bare", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--journal-dir", help=argparse.SUPPRESS)
    parser.add_argument("--api-url", help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.serve:
        await serve(args.serve, args.api_url, args.db_url, args.journal_dir)
        return
    rows: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.db in ("sqlite", "both"):
            sqlite = f"sqlite+aiosqlite:///{tmp}/bench.db"
            rows += await run(sqlite, "SQLite (file, WAL)", args.events, args.concurrency, args.rate, args.rounds,
                              args.journal_cost)
    if args.db in ("postgresql", "both"):
        try:
            rows += await run(POSTGRES, "PostgreSQL", args.events, args.concurrency, args.rate, args.rounds,
                              args.journal_cost)
        except OSError as exc:
            print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| database | load | app | rounds × events | events/s | ack p50 ms | ack p99 ms | app CPU ms/event "
          "| ratio to bare (median; each round) |")
    print("|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    asyncio.run(main())
