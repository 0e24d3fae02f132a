"""Messages the bot starts: to a person's DM or a channel, through the delivery worker."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

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


async def test_a_message_an_earlier_attempt_posted_is_found_in_the_dm_not_posted_again(slack: SlackHarness) -> None:
    queued = datetime.now(UTC)
    first = await slack.adapter.send(Address("slack", TEAM_ID, user=NEWBIE, outbox_id=7), Reply.text("Pulse survey"))
    (posted,) = slack.fake.called("chat.postMessage")
    assert posted.args["metadata"] == {"event_type": "brm_bot_outbox", "event_payload": {"outbox_id": 7}}
    assert not slack.fake.called("conversations.history"), "a first attempt posts without looking"

    again = Address("slack", TEAM_ID, user=NEWBIE, outbox_id=7, maybe_sent_since=queued)
    delivered = await slack.adapter.send(again, Reply.text("Pulse survey"))
    assert len(slack.fake.called("chat.postMessage")) == 1, "not posted twice"
    assert delivered.message_id == first.message_id == f"{dm_of(NEWBIE)}:{posted.result['ts']}"
    (looked,) = slack.fake.called("conversations.history")
    assert looked.args["channel"] == dm_of(NEWBIE)
    assert looked.args["include_all_metadata"] in {"1", "true"}
    assert float(looked.args["oldest"]) < queued.timestamp()


async def test_a_retried_message_slack_does_not_have_is_posted(slack: SlackHarness) -> None:
    since = datetime.now(UTC) - timedelta(minutes=5)
    await slack.adapter.send(Address("slack", TEAM_ID, channel="C0BRM", outbox_id=7), Reply.text("Request DR-1"))
    retried = Address("slack", TEAM_ID, channel="C0BRM", outbox_id=8, maybe_sent_since=since)
    delivered = await slack.adapter.send(retried, Reply.text("Request DR-2"))
    first, second = slack.fake.called("chat.postMessage")
    assert first.args["metadata"]["event_payload"] == {"outbox_id": 7}, "another message is not this one"
    assert "Request DR-2" in second.text and second.args["metadata"]["event_payload"] == {"outbox_id": 8}
    assert delivered.message_id == f"C0BRM:{second.result['ts']}"


async def test_a_history_slack_will_not_show_means_posting_and_a_pause_means_waiting(slack: SlackHarness) -> None:
    since = datetime.now(UTC)
    retried = Address("slack", TEAM_ID, channel="C0PRIVATE", outbox_id=9, maybe_sent_since=since)
    slack.fake.fail_once("conversations.history", 200, {"ok": False, "error": "missing_scope"})
    await slack.adapter.send(retried, Reply.text("Request DR-3"))
    assert len(slack.fake.called("chat.postMessage")) == 1, "not knowing, it posts (at least once)"

    slack.fake.rate_limit_once("conversations.history", retry_after=30)
    with pytest.raises(DeliveryError) as paused:
        await slack.adapter.send(dataclasses.replace(retried, outbox_id=10), Reply.text("Request DR-4"))
    assert paused.value.retry_after == 30
    assert len(slack.fake.called("chat.postMessage")) == 1, "nothing posted before Slack could be asked"
