"""BRM_BOT_BRM_CHANNEL in Slack: a request nobody owns is announced once in the BRM team's channel,
and whichever BRM presses its buttons there acts on it; nobody else can."""

from __future__ import annotations

import json

import pytest

from bot.delivery import DeliveryWorker
from conversations.engine import Engine
from conversations.flows import default_flows
from storage.db import Database
from storage.models import DemandRequest, OutboxMessage
from tests.conftest import FakeClock
from tests.helpers import rows_of
from tests.slack.conftest import ALICE, DANA, SlackHarness, dm_of
from tests.slack.test_forms import GOOD, submission

BRM_CHANNEL = "C0BRMTEAM"


@pytest.fixture
def engine(demo_db: Database, clock: FakeClock) -> Engine:
    return Engine(demo_db, default_flows(), clock=clock, default_timezone="UTC", brm_channel=f"slack:{BRM_CHANNEL}")


async def _file_unowned_request(slack: SlackHarness) -> None:
    await slack.command("request")
    (opened,) = await slack.fake.wait_for("views.open")
    accepted = await slack.interact(submission(opened, {**GOOD, "partner": "none"}))
    assert accepted.status == 200
    (confirmation,) = await slack.fake.wait_for("chat.postMessage")
    assert "Submitted as DR-13" in confirmation.text and "asking the BRM team" in confirmation.text


async def test_a_not_sure_request_is_announced_once_in_the_brm_channel(slack: SlackHarness, clock: FakeClock) -> None:
    await _file_unowned_request(slack)
    notices = [m for m in await rows_of(slack.db, OutboxMessage) if m.kind == "request_submitted"]
    assert [(m.recipient_id, m.channel) for m in notices] == [(None, f"slack:{BRM_CHANNEL}")], "not every BRM"

    worker = DeliveryWorker(slack.db, {}, clock=clock)
    worker.register(slack.adapter)
    assert await worker.run_once() == 1
    assert await worker.run_once() == 0, "sent once"
    posts = slack.fake.called("chat.postMessage")
    announced = [p for p in posts if p.args["channel"] == BRM_CHANNEL]
    assert len(announced) == 1 and "New demand request DR-13" in announced[0].text
    assert not [p for p in posts if p.args["channel"] in (dm_of(ALICE), "D0BEN")], "no BRM is messaged privately"
    [sent] = [m for m in await rows_of(slack.db, OutboxMessage) if m.kind == "request_submitted"]
    assert sent.status == "sent" and sent.platform_message_id


async def test_any_brm_can_press_accept_in_the_channel_and_a_requester_cannot(
    slack: SlackHarness, clock: FakeClock
) -> None:
    await _file_unowned_request(slack)
    worker = DeliveryWorker(slack.db, {}, clock=clock)
    worker.register(slack.adapter)
    assert await worker.run_once() == 1
    notice = slack.fake.called("chat.postMessage")[-1]
    assert notice.args["channel"] == BRM_CHANNEL

    sent = slack.fake.count("chat.postMessage")
    await slack.press(notice, "Accept", user=DANA)
    await slack.settle()
    [refusal] = [c for c in slack.fake.calls if c.method.startswith("response:press")]
    assert refusal.args["response_type"] == "ephemeral", "told to the presser alone"
    assert "DR-13" in json.dumps(refusal.args) and "Nothing changed" in json.dumps(refusal.args)
    assert slack.fake.count("chat.postMessage") == sent, "nothing said in the channel"
    assert not slack.fake.called("chat.update"), "the buttons stay for the BRMs"
    [request] = await rows_of(slack.db, DemandRequest, DemandRequest.id == 13)
    assert request.status == "submitted" and request.brm_id is None, "a requester changes nothing"

    await slack.press(notice, "Accept", user=ALICE)
    await slack.settle()
    await slack.fake.wait_for("chat.postMessage", sent + 1)
    answer = slack.fake.called("chat.postMessage")[-1]
    assert "DR-13 moved from submitted to triaged" in answer.text
    [request] = await rows_of(slack.db, DemandRequest, DemandRequest.id == 13)
    assert request.status == "triaged" and request.brm_id == 1, "the BRM who pressed takes it"
    (marked,) = await slack.fake.wait_for("chat.update")
    assert marked.args["channel"] == BRM_CHANNEL and "✓ Accept" in json.dumps(marked.args, ensure_ascii=False)
