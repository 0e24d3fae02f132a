"""The delivery worker alone in a process of its own, for the tests and the benchmark that kill it.

It is the worker ``brm-bot serve`` runs (:class:`bot.delivery.DeliveryWorker` with the real
Slack or Teams adapter), on the database and fake platform it is given, with a short lease so
a restarted process takes over what a killed one had claimed within seconds instead of
``LEASE``'s five minutes. It prints ``worker ready`` on stderr once it delivers::

    python -m tests.bot.outbox_worker --db sqlite+aiosqlite:///x.db --slack-api http://127.0.0.1:8000/api
    python -m tests.bot.outbox_worker --db postgresql+asyncpg://... --teams --lease 3 --rate 50
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import re
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import sqlalchemy as sa
from aiohttp import web

from bot.delivery import DeliveryWorker
from bot.runtime import utcnow
from conversations import codec
from conversations.engine import Engine
from conversations.flows import default_flows
from conversations.messages import Reply
from storage.db import Database
from storage.models import OutboxMessage, OutboxStatus
from tests.slack.fake_slack import TEAM_ID, FakeSlack
from tests.teams.fake_connector import Call, FakeConnector

BOT_TOKEN = "xoxb-outbox-worker-token"
READY = "worker ready"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
BOT_ID = "28:outbox-worker-bot"
_MARK = re.compile(r"outbox message (\d+) of")


def slack_user(n: int) -> str:
    return f"U{n:07d}"


def teams_user(n: int) -> str:
    return f"29:outbox-person-{n}"


async def seed(db: Database, *, people: int, messages: int, platform: str, service_url: str = "") -> None:
    """``people`` people on ``platform`` (Teams: with a stored personal-chat reference at
    ``service_url``; any other platform: no identity) and ``messages`` queued messages to them in
    turn, each text naming its number."""
    now = datetime.now(UTC)
    async with db.transaction() as store:
        ids: list[int] = []
        for n in range(people):
            person = await store.people.add(name=f"Person {n}", email=f"p{n}@example.com", role="requester",
                                            time_zone="UTC", now=now)
            assert person.id is not None
            ids.append(person.id)
            if platform == "slack":
                await store.people.link(person_id=person.id, platform="slack", workspace=TEAM_ID,
                                        user_id=slack_user(n), now=now)
            elif platform == "teams":
                user = teams_user(n)
                await store.people.link(person_id=person.id, platform="teams", workspace=TENANT, user_id=user, now=now)
                reference = {"user": {"id": user}, "bot": {"id": BOT_ID}, "channelId": "msteams",
                             "serviceUrl": service_url,
                             "conversation": {"id": f"a:chat-{n}", "conversationType": "personal",
                                              "tenantId": TENANT, "tenantID": TENANT}}
                await store.references.save(platform="teams", workspace=TENANT, scope="user", target=user,
                                            reference=reference, now=now)
    for start in range(0, messages, 1000):
        async with db.transaction() as store:
            for i in range(start, min(messages, start + 1000)):
                reply = Reply.text(f"outbox message {i} of {messages}")
                await store.outbox.enqueue(kind="bench", subject=f"m{i}", recipient_id=ids[i % people],
                                           payload=codec.reply_to_json(reply), now=now)


async def unsent(db: Database) -> int:
    """How many queued messages are not ``sent`` yet (an aggregate in SQL)."""
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    async with db.transaction() as store:
        (row,) = await store.rows(sa.select(sa.func.count()).select_from(table)
                                  .where(table.c.status != OutboxStatus.SENT.value))
    return int(row[0])


def tally(texts: list[str]) -> Counter[int]:
    """How many times each numbered message reached the platform."""
    return Counter(int(m.group(1)) for text in texts for m in [_MARK.search(text)] if m)


class Bucket:
    """A platform's rate limit: ``rate`` calls a second with bursts of up to one second's worth;
    a call over it gets the whole seconds to wait (as Slack's and Teams' ``Retry-After`` say)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.at = time.monotonic()
        self.refused = 0

    def take(self) -> int | None:
        now = time.monotonic()
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return None
        self.refused += 1
        return max(1, math.ceil((1 - self.tokens) / self.rate))


class LimitedSlack(FakeSlack):
    """The fake Slack Web API with ``chat.postMessage`` limited to ``rate`` messages a second."""

    def __init__(self, users: dict[str, dict[str, str]], rate: float) -> None:
        super().__init__(users=users)
        self.bucket = Bucket(rate)

    def _over_limit(self, method: str) -> int | None:
        if method != "chat.postMessage":
            return super()._over_limit(method)
        return self.bucket.take()

    def texts(self) -> list[str]:
        return [c.text for c in self.called("chat.postMessage")]


class LimitedConnector(FakeConnector):
    """The fake Bot Connector, sending at most ``rate`` messages a second (429 + ``Retry-After`` over it)."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.bucket = Bucket(rate)
        self.delivered = 0  # messages accepted (cheap to read: the benchmark polls it)

    async def _send(self, request: web.Request) -> web.Response:
        wait = self.bucket.take()
        if wait is not None:
            self.calls.append(_refused(request))
            return web.json_response({"error": {"code": "TooManyRequests", "message": "slow down"}}, status=429,
                                     headers={"Retry-After": str(wait)})
        response = await super()._send(request)
        self.delivered += int(response.status == 200)
        return response

    def texts(self) -> list[str]:
        return [c.text for c in self.messages]


def _refused(request: web.Request) -> Call:
    return Call("refused", request.match_info["conversation"], None, {"status": 429})


async def work(args: argparse.Namespace) -> None:
    db = Database.connect(args.db, pool_size=4)
    engine = Engine(db, default_flows(), clock=utcnow, default_timezone="UTC")
    rates = {"slack": args.rate, "teams": args.rate} if args.rate else {}
    worker = DeliveryWorker(db, {}, clock=utcnow, hours=None, weekly_budget=-1, rates=rates,
                            lease=timedelta(seconds=args.lease))
    async with aiohttp.ClientSession() as http:
        if args.slack_api:  # each platform's libraries are imported only when used: a restart is quicker
            from adapters.slack import SlackAdapter
            from adapters.slack.journal import Journal

            journal = Journal.open(Path(tempfile.mkdtemp(prefix="outbox-worker-")) / "journal.jsonl")
            worker.register(SlackAdapter(engine, bot_token=BOT_TOKEN, signing_secret="unused-in-this-process",
                                         http=http, clock=utcnow, api_url=args.slack_api, journal=journal))
        if args.teams:
            from adapters.teams import RetryPolicy, TeamsAdapter, TeamsConfig

            # The adapter's own quick retries stay short: the outbox owns the waiting (Retry-After).
            retry = RetryPolicy(attempts=2, budget=1.0)
            worker.register(TeamsAdapter(engine=engine, db=db, config=TeamsConfig(local_mode=True), http=http,
                                         retry=retry))
        print(READY, file=sys.stderr, flush=True)
        try:
            await worker.run_forever(interval=args.interval)
        finally:
            await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", required=True, help="the database URL")
    parser.add_argument("--slack-api", help="the (fake) Slack Web API base URL")
    parser.add_argument("--teams", action="store_true", help="deliver to Teams (local mode, stored references)")
    parser.add_argument("--lease", type=float, default=3.0, help="seconds a claimed batch stays this worker's")
    parser.add_argument("--rate", type=float, default=0.0, help="at most this many sends a second per platform")
    parser.add_argument("--interval", type=float, default=0.2, help="seconds between polls when idle")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(work(args))


if __name__ == "__main__":
    main()
