"""Replies Teams throttles go through the outbox: they survive a restart and are sent once, in order.

Through the real botbuilder stack (``CloudAdapter`` behind aiohttp) and the fake Bot
Connector: a reply that Teams keeps refusing inside the turn (429 with ``Retry-After``, 412,
5xx) is queued in the outbox, keyed by the activity it answers, instead of waiting in an
in-memory task; the delivery worker of a *new* adapter (a restarted process) sends it into
the same conversation once the wait is over.
"""

from __future__ import annotations

from datetime import timedelta

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from adapters.teams import RetryPolicy, TeamsAdapter, TeamsConfig
from bot.delivery import DeliveryWorker
from conversations.engine import Engine
from conversations.flows import default_flows
from storage.db import Database
from storage.models import OutboxMessage
from tests.conftest import FakeClock
from tests.helpers import rows_of
from tests.teams.conftest import CHANNEL_ID, DANA, open_harness
from tests.teams.fake_connector import FakeConnector

ATTEMPTS_IN_A_TURN = RetryPolicy().attempts


async def _replies(db: Database) -> list[OutboxMessage]:
    return [m for m in await rows_of(db, OutboxMessage) if m.kind == "reply"]


async def _restarted(
    db: Database, clock: FakeClock, http: aiohttp.ClientSession
) -> tuple[TeamsAdapter, DeliveryWorker]:
    """A new process: a new engine and adapter, nothing in memory but the database."""
    engine = Engine(db, default_flows(), clock=clock, default_timezone="UTC")
    adapter = TeamsAdapter(engine=engine, db=db, config=TeamsConfig(local_mode=True), http=http, clock=clock)
    return adapter, DeliveryWorker(db, {"teams": adapter}, clock=clock)


@pytest.mark.parametrize(("status", "retry_after"), [(429, "40"), (412, None), (503, None), (502, None)])
async def test_a_reply_teams_keeps_refusing_waits_in_the_outbox_and_a_restarted_worker_sends_it_once(
    engine: Engine, demo_db: Database, fake: tuple[FakeConnector, str], http: aiohttp.ClientSession,
    clock: FakeClock, status: int, retry_after: str | None,
) -> None:
    connector = fake[0]
    teams, client = await open_harness(engine, demo_db, fake, http=http, clock=clock)
    try:
        connector.fail_next(status, ATTEMPTS_IN_A_TURN, retry_after=retry_after)
        response = await teams.post(teams.personal(DANA, "hello"))
        assert response.status == 201, "Teams got its answer in time"
        assert connector.messages == []
        (queued,) = await _replies(demo_db)
        assert queued.status == "pending" and queued.recipient_id is not None
        if retry_after:  # due no sooner than Teams asked
            assert queued.next_attempt_at >= clock() + timedelta(seconds=40)
        assert not teams.adapter._follow_ups, "no in-memory task holds it"
    finally:
        await teams.adapter.close()
        await client.close()

    connector.failures.clear()  # Teams lets the bot through again
    adapter, worker = await _restarted(demo_db, clock, http)
    clock.advance(timedelta(seconds=41))
    assert await worker.run_once() == 1
    texts = [m.text for m in connector.messages]
    assert len(texts) == 2 and texts[0].startswith("Hi Dana Whitfield!") and "What would you like to do?" in texts[1]
    assert all(m.kind == "send" and m.conversation == DANA.conversation for m in connector.messages)
    (sent,) = await _replies(demo_db)
    assert sent.status == "sent" and sent.platform_message_id
    clock.advance(timedelta(hours=1))
    assert await worker.run_once() == 0 and len(connector.messages) == 2, "sent once"
    await adapter.close()


async def test_a_throttled_channel_reply_goes_back_into_its_thread(
    engine: Engine, demo_db: Database, fake: tuple[FakeConnector, str], http: aiohttp.ClientSession, clock: FakeClock,
) -> None:
    connector = fake[0]
    teams, client = await open_harness(engine, demo_db, fake, http=http, clock=clock)
    try:
        connector.fail_next(429, ATTEMPTS_IN_A_TURN, retry_after="30")
        asked = await teams.send(teams.channel(DANA, "help"))
        await teams.send(asked)  # Teams sends the same activity again: still one reply queued
    finally:
        await teams.adapter.close()
        await client.close()
    assert len(await _replies(demo_db)) == 1
    connector.failures.clear()
    adapter, worker = await _restarted(demo_db, clock, http)
    clock.advance(timedelta(seconds=31))
    assert await worker.run_once() == 1
    assert len(connector.messages) == 2 and "What would you like to do?" in connector.messages[1].text
    thread = asked["conversation"]["id"]
    assert thread.startswith(CHANNEL_ID) and all(m.conversation == thread for m in connector.messages)
    await adapter.close()


async def test_a_reply_stopped_part_way_sends_the_rest_once_and_in_order(
    engine: Engine, demo_db: Database, http: aiohttp.ClientSession, clock: FakeClock,
) -> None:
    connector = _PassThenThrottle()
    server = TestServer(connector.app(), host="127.0.0.1")
    await server.start_server()
    fake = (connector, str(server.make_url("/")).rstrip("/") + "/")
    teams, client = await open_harness(engine, demo_db, fake, http=http, clock=clock)
    try:
        connector.fail_next(429, ATTEMPTS_IN_A_TURN, retry_after="10")
        await teams.send(teams.personal(DANA, "hello"))  # two messages, both queued as one reply
        await teams.adapter.close()
        await client.close()
        connector.failures.clear()
        adapter, worker = await _restarted(demo_db, clock, http)
        clock.advance(timedelta(seconds=11))
        connector.pass_then_throttle(ATTEMPTS_IN_A_TURN)
        assert await worker.run_once() == 1  # the first went: that reply counts as sent, the rest waits apart
        assert len(connector.messages) == 1 and connector.messages[0].text.startswith("Hi Dana Whitfield!")
        rest = [m for m in await _replies(demo_db) if m.status == "pending"]
        assert len(rest) == 1 and rest[0].payload["first"] == 1
        clock.advance(timedelta(minutes=5))
        assert await worker.run_once() == 1
        texts = [m.text for m in connector.messages]
        assert len(texts) == 2 and "What would you like to do?" in texts[1], "the rest, once, after the first"
        await adapter.close()
    finally:
        await server.close()


class _PassThenThrottle(FakeConnector):
    """A Bot Connector that can let one message through and then throttle the next ``n`` attempts."""

    def __init__(self) -> None:
        super().__init__()
        self._passes = 0

    def pass_then_throttle(self, n: int) -> None:
        self._passes = 1
        self.fail_next(429, n, retry_after="1")

    def _failure(self) -> web.Response | None:
        if self._passes:
            self._passes -= 1
            return None
        return super()._failure()
