"""429s, 412s and 5xx from the real platforms' APIs (fakes at the HTTP boundary), through the
real adapters and the delivery worker: the message waits what the platform asked, the rest of
the batch waits with it without using up attempts, and each message arrives once."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from adapters.slack import SlackAdapter
from adapters.teams import RetryPolicy, TeamsAdapter, TeamsConfig
from bot.delivery import DeliveryWorker
from bot.runtime import utcnow
from conversations.engine import Engine
from conversations.flows import default_flows
from conversations.messages import Address, Delivered, Reply
from storage.db import Database
from storage.models import OutboxMessage
from tests.bot.outbox_worker import seed, slack_user, tally
from tests.bot.test_delivery import Recorder
from tests.conftest import FakeClock
from tests.helpers import rows_of
from tests.slack.fake_slack import FakeSlack
from tests.teams.fake_connector import FakeConnector

PEOPLE = 3


async def _by_number(db: Database) -> list[OutboxMessage]:
    return sorted(await rows_of(db, OutboxMessage), key=lambda m: int(m.subject[1:]))


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def test_a_slack_429_pauses_posting_for_its_retry_after_then_each_message_goes_once(
    db: Database, http: aiohttp.ClientSession
) -> None:
    fake = FakeSlack(users={slack_user(n): {"email": f"p{n}@example.com", "name": f"P{n}"} for n in range(PEOPLE)})
    await fake.start()
    engine = Engine(db, default_flows(), clock=utcnow, default_timezone="UTC")
    slack = SlackAdapter(engine, bot_token="xoxb-test", signing_secret="s", http=http, clock=utcnow,
                         api_url=fake.api_url)
    worker = DeliveryWorker(db, {"slack": slack}, clock=utcnow, hours=None)
    try:
        await seed(db, people=PEOPLE, messages=3, platform="slack")
        fake.rate_limit_once("chat.postMessage", retry_after=1)
        assert await worker.run_once() == 0  # the first is refused; the others wait out the pause untried
        first, *others = await _by_number(db)
        assert (first.status, first.attempts, first.last_error) == ("pending", 1, "Slack refused the message: "
                                                                    "ratelimited")
        assert all(m.status == "pending" and m.attempts == 0 and "slack asked for a pause" in (m.held_reason or "")
                   for m in others)
        assert first.next_attempt_at - utcnow() > timedelta(seconds=0.5)

        running = asyncio.create_task(worker.run_forever(interval=30))  # wakes when the pause ends, not in 30 s
        try:
            await fake.wait_for("chat.postMessage", 3, within=15)
            for _ in range(300):  # and recorded as sent
                if {m.status for m in await _by_number(db)} == {"sent"}:
                    break
                await asyncio.sleep(0.05)
        finally:
            running.cancel()
        counted = tally([c.text for c in fake.called("chat.postMessage")])
        assert counted == {0: 1, 1: 1, 2: 1}
        assert [c.status for c in fake.calls if c.method == "chat.postMessage"].count(429) == 1
        assert {m.status for m in await _by_number(db)} == {"sent"}
    finally:
        await slack.close()
        await fake.close()


@pytest.mark.parametrize(("status", "retry_after"), [(429, "20"), (412, None), (503, None)])
async def test_teams_throttling_sends_the_message_back_to_the_outbox_and_it_goes_once_later(
    db: Database, http: aiohttp.ClientSession, clock: FakeClock, status: int, retry_after: str | None
) -> None:
    connector = FakeConnector()
    server = TestServer(connector.app(), host="127.0.0.1")
    await server.start_server()
    engine = Engine(db, default_flows(), clock=clock, default_timezone="UTC")

    async def no_wait(_: float) -> None:
        return None

    teams = TeamsAdapter(engine=engine, db=db, config=TeamsConfig(local_mode=True), http=http, clock=clock,
                         retry=RetryPolicy(attempts=2, sleep=no_wait))
    worker = DeliveryWorker(db, {"teams": teams}, clock=clock, hours=None)
    try:
        await seed(db, people=PEOPLE, messages=3, platform="teams",
                   service_url=str(server.make_url("/")).rstrip("/") + "/")
        clock.now = utcnow() + timedelta(seconds=1)  # the messages were queued just now
        connector.fail_next(status, 2, retry_after=retry_after)  # both of the adapter's own attempts
        assert await worker.run_once() == (0 if retry_after else 2)
        first = (await _by_number(db))[0]
        assert (first.status, first.attempts) == ("pending", 1)
        assert f"HTTP {status}" in (first.last_error or "")
        if retry_after:  # Teams said how long: the platform pauses, the rest waits without an attempt
            assert first.next_attempt_at - clock() >= timedelta(seconds=20)
            assert all(m.attempts == 0 for m in (await _by_number(db))[1:])
        else:  # backoff with jitter
            assert first.next_attempt_at > clock()
        connector.failures.clear()  # Teams lets the bot through again
        clock.advance(timedelta(hours=1))
        assert await worker.run_once() == (3 if retry_after else 1)
        assert tally([c.text for c in connector.messages]) == {0: 1, 1: 1, 2: 1}
    finally:
        await teams.close()
        await server.close()




async def test_a_stopping_worker_finishes_the_send_in_flight_and_gives_the_rest_back_at_once(
    db: Database, clock: FakeClock
) -> None:
    await seed(db, people=PEOPLE, messages=6, platform="console")
    clock.now = utcnow() + timedelta(seconds=1)
    worker = DeliveryWorker(db, {}, clock=clock, hours=None)

    class StopsOnTheSecond(Recorder):
        async def send(self, to: Address, reply: Reply) -> Delivered:
            if len(self.sent) == 1:
                worker.stop()  # SIGTERM arrives while the second message is on its way
            return await super().send(to, reply)

    recorder = StopsOnTheSecond()
    worker.register(recorder, fallback=True)
    await asyncio.wait_for(worker.run_forever(interval=30), 10)  # returns instead of polling on
    assert len(recorder.sent) == 2
    messages = await _by_number(db)
    assert [m.status for m in messages] == ["sent"] * 2 + ["pending"] * 4
    assert all(m.attempts == 0 and m.next_attempt_at <= clock() for m in messages[2:]), "due now, no attempt used"
