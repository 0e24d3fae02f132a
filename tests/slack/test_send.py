"""Messages the bot starts: to a person's DM or a channel, through the delivery worker."""

from __future__ import annotations

import pytest

from bot.delivery import DeliveryWorker
from conversations.messages import Address, Reply, Text, TextStyle
from conversations.ports import DeliveryError, Unreachable
from tests.conftest import FakeClock
from tests.slack.conftest import ALICE, NEWBIE, SlackHarness, dm_of
from tests.slack.fake_slack import TEAM_ID
from tests.slack.test_forms import GOOD, submission


async def test_a_brm_hears_of_a_new_request_in_their_slack_dm(slack: SlackHarness, clock: FakeClock) -> None:
    await slack.dm("hello", user=ALICE)
    await slack.fake.wait_for("chat.postMessage")
    await slack.command("request")
    (opened,) = await slack.fake.wait_for("views.open")
    await slack.interact(submission(opened, GOOD))
    await slack.fake.wait_for("chat.postMessage", 2)

    worker = DeliveryWorker(slack.db, {}, clock=clock)
    worker.register(slack.adapter)
    assert await worker.run_once() == 1
    notice = slack.fake.called("chat.postMessage")[-1]
    assert notice.args["channel"] == dm_of(ALICE)
    assert "New demand request DR-13 from Dana Whitfield" in notice.text


async def test_send_to_someone_never_met_opens_the_dm_first(slack: SlackHarness) -> None:
    reply = Reply.of(Text("Your pulse survey is open", TextStyle.HEADING), Text("Takes two minutes."))
    delivered = await slack.adapter.send(Address("slack", TEAM_ID, user=NEWBIE), reply)
    (opened,) = slack.fake.called("conversations.open")
    assert opened.args["users"] == NEWBIE
    (posted,) = slack.fake.called("chat.postMessage")
    assert posted.args["channel"] == dm_of(NEWBIE)
    assert "Your pulse survey is open" in posted.text
    assert delivered.message_id == f"{dm_of(NEWBIE)}:{posted.result['ts']}"

    await slack.adapter.send(Address("slack", TEAM_ID, user=NEWBIE), reply)
    assert len(slack.fake.called("conversations.open")) == 1, "the DM channel is remembered"


async def test_send_to_a_channel(slack: SlackHarness) -> None:
    await slack.adapter.send(Address("slack", TEAM_ID, channel="C0DIGEST"), Reply.text("Weekly digest"))
    (posted,) = slack.fake.called("chat.postMessage")
    assert posted.args["channel"] == "C0DIGEST" and "Weekly digest" in posted.text


async def test_unreachable_people_and_channels_are_reported_as_such(slack: SlackHarness) -> None:
    with pytest.raises(Unreachable, match="channel_not_found"):
        await slack.adapter.send(Address("slack", TEAM_ID, channel="C0GONE1"), Reply.text("hi"))
    with pytest.raises(Unreachable, match="user_not_found"):
        await slack.adapter.send(Address("slack", TEAM_ID, user="U0NOBODY"), Reply.text("hi"))


async def test_a_rate_limit_that_outlasts_the_retries_asks_the_worker_to_wait(slack: SlackHarness) -> None:
    for _ in range(3):
        slack.fake.rate_limit_once("chat.postMessage", retry_after=0)
    with pytest.raises(DeliveryError) as refused:
        await slack.adapter.send(Address("slack", TEAM_ID, channel="C0DIGEST"), Reply.text("hi"))
    assert refused.value.retryable and refused.value.retry_after == 0
    assert "xoxb" not in str(refused.value)
