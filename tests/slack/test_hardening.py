"""What a busy, slow or forgetful Slack does to the bot: rate limits, lost messages, slow answers,
forged requests, and more work than the bot can take at once."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.slack import SlackAdapter
from conversations.engine import Engine
from tests.conftest import FakeClock
from tests.slack.conftest import BOT_TOKEN, DANA, SIGNING_SECRET, USERS, SlackHarness, dm_of
from tests.slack.fake_slack import FakeSlack


async def _to_category_question(slack: SlackHarness) -> None:
    await slack.dm("new request")
    await slack.fake.wait_for("chat.postMessage", 1)
    for n, line in enumerate(("Invoice OCR for accounts payable", "skip", "Invoices are booked without typing"), 2):
        await slack.dm(line)
        await slack.fake.wait_for("chat.postMessage", n)


async def test_a_press_on_a_message_slack_no_longer_has_still_gets_the_next_question(slack: SlackHarness) -> None:
    await _to_category_question(slack)
    category = slack.fake.called("chat.postMessage")[-1]
    slack.fake.gone.add(str(category.result["ts"]))
    await slack.press(category, "Project")
    await slack.settle()
    replies = slack.fake.called("chat.postMessage")
    assert len(replies) == 5, "the next question went out although the old message could not be marked"
    assert "Sorry" not in replies[-1].text and [b for b in replies[-1].blocks if b["type"] == "actions"]


async def test_a_press_while_chat_update_is_rate_limited_still_gets_the_next_question(slack: SlackHarness) -> None:
    await _to_category_question(slack)
    slack.fake.limit("chat.update", calls=0, per=60)
    await slack.press(slack.fake.called("chat.postMessage")[-1], "Project")
    await slack.settle()
    replies = slack.fake.called("chat.postMessage")
    assert len(replies) == 5 and "Sorry" not in replies[-1].text
    urgency = replies[-1]
    await slack.press(urgency, "High")
    await slack.settle()
    assert len(slack.fake.called("chat.postMessage")) == 6, "the next press too, while the limit lasts"


async def test_every_message_gets_its_real_reply_under_a_rate_limit(slack: SlackHarness) -> None:
    slack.fake.limit("chat.postMessage", calls=5, per=1.0)
    people = [f"U0R{n:04d}" for n in range(20)]
    for person in people:
        await slack.dm("help", user=person)
    await slack.settle()
    replies = slack.fake.called("chat.postMessage")
    assert sorted(r.args["channel"] for r in replies) == sorted(dm_of(p) for p in people), "one reply each"
    assert not [r for r in replies if "Sorry" in r.text], "no apologies: the real replies came, late"


async def test_a_rate_limited_method_is_paused_for_the_whole_process(slack: SlackHarness) -> None:
    slack.fake.block("chat.postMessage", 3)
    await slack.dm("help", user=DANA)
    limited = await _first_429(slack.fake)
    await slack.dm("help", user="U0OTHER")  # while Slack still refuses chat.postMessage
    await slack.settle()
    assert limited == 1
    calls = [c for c in slack.fake.calls if c.method == "chat.postMessage"]
    assert [c.status for c in calls] == [429, 200, 200], "the second reply waited out the pause: no 429 of its own"


async def _first_429(fake: FakeSlack) -> int:
    for _ in range(200):
        refused = [c for c in fake.calls if c.status == 429]
        if refused:
            return len(refused)
        await asyncio.sleep(0.01)
    raise AssertionError("no 429")


@pytest.mark.parametrize("timestamp", ["abc", "1e9", "", "١٧٠٠٠٠٠٠٠٠", "99999999999999999999999"])
async def test_a_timestamp_that_is_not_a_number_gets_401(slack: SlackHarness, timestamp: str) -> None:
    body = json.dumps(slack.envelope({"type": "message", "channel_type": "im", "user": DANA, "channel": dm_of(DANA),
                                      "text": "hello", "ts": "1.0"}))
    response = await slack.post(body, "application/json", headers={"X-Slack-Request-Timestamp": timestamp})
    assert response.status == 401
    await slack.settle()
    assert not slack.fake.called("chat.postMessage")


async def test_a_refused_request_is_logged_by_size_and_reason_only(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    text = "confidential-roadmap\n2024-01-01 00:00:00 INFO brm_bot: forged line " + "x" * 900_000
    body = json.dumps(slack.envelope({"type": "message", "channel_type": "im", "user": DANA, "channel": dm_of(DANA),
                                      "text": text, "ts": "1.0"}))
    response = await slack.post(body, "application/json", secret="not-the-secret")
    assert response.status == 401
    assert "confidential-roadmap" not in caplog.text and "forged line" not in caplog.text
    assert all(len(r.getMessage()) < 500 for r in caplog.records)
    assert any("wrong signature" in r.getMessage() and str(len(body.encode())) in r.getMessage()
               for r in caplog.records)


async def test_the_first_request_does_not_wait_for_a_slow_slack(fake_slack: FakeSlack, engine: Engine) -> None:
    """auth.test is never on the request path: with Slack's API stalled, the ack still comes."""
    fake_slack.hold("auth.test")
    fake_slack.hold("chat.postMessage")
    async with aiohttp.ClientSession() as session:
        adapter = SlackAdapter(engine, bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, http=session,
                               clock=FakeClock(), api_url=fake_slack.api_url)
        app = web.Application()
        adapter.mount(app)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            harness = SlackHarness(client, fake_slack, adapter, engine, engine.db)
            starting = asyncio.create_task(adapter.start())
            await fake_slack.wait_held(1)
            async with asyncio.timeout(20):
                await harness.dm("hello")  # asserts the 200
            await fake_slack.wait_held(2)
            assert not [c for c in fake_slack.calls if c.method == "auth.test"], "auth.test still stalled"
            fake_slack.release("auth.test")
            fake_slack.release("chat.postMessage")
            await starting
            await harness.settle()
            (reply,) = fake_slack.called("chat.postMessage")
            assert reply.args["channel"] == dm_of(DANA)
            await adapter.close()


@pytest.fixture
async def small(engine: Engine, fake_slack: FakeSlack, clock: FakeClock) -> AsyncIterator[SlackHarness]:
    async with aiohttp.ClientSession() as session:
        adapter = SlackAdapter(engine, bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, http=session,
                               clock=clock, api_url=fake_slack.api_url, queue_limit=2)
        app = web.Application()
        adapter.mount(app)
        async with TestClient(TestServer(app, host="127.0.0.1")) as client:
            await adapter.start()
            try:
                yield SlackHarness(client, fake_slack, adapter, engine, engine.db)
            finally:
                await adapter.close()


async def test_past_the_queue_limit_slack_gets_503_and_sends_again_later(
    small: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    small.fake.hold("chat.postMessage")
    await small.dm("help", user=DANA)
    await small.dm("help", user="U0ALICE")
    event = {"type": "message", "channel_type": "im", "user": "U0NEW", "channel": dm_of("U0NEW"), "text": "help",
             "ts": "1700000009.000100", "team": "T0FAKE"}
    busy, event_id = await small.event(event)
    assert busy.status == 503
    assert "answered 503" in caplog.text
    small.fake.release("chat.postMessage")
    await small.settle()
    assert len(small.fake.called("chat.postMessage")) == 2
    again, _ = await small.event(event, event_id=event_id, retry=1)
    assert again.status == 200
    await small.settle()
    assert [c.args["channel"] for c in small.fake.called("chat.postMessage")][-1] == dm_of("U0NEW")


assert USERS  # the fake knows the people these tests write as
