"""Chatting with the bot in Slack: direct messages, buttons, threads in channels."""

from __future__ import annotations

import json

from storage.models import DemandRequest, Identity, Person
from tests.helpers import rows_of
from tests.slack.conftest import ALICE, DANA, NEWBIE, SlackHarness, dm_of
from tests.slack.fake_slack import BOT_USER_ID, TEAM_ID


async def test_a_whole_intake_by_direct_message_with_buttons(slack: SlackHarness) -> None:
    await slack.dm("new request")
    (asked,) = await slack.fake.wait_for("chat.postMessage", 1)
    assert asked.args["channel"] == dm_of(DANA)
    assert "What do you need?" in asked.text
    assert asked.token == "xoxb-1111-2222-testtokenvalue"

    for n, line in enumerate(("Invoice OCR for accounts payable", "skip", "Invoices are booked without typing"), 2):
        await slack.dm(line)
        await slack.fake.wait_for("chat.postMessage", n)
    category = slack.fake.called("chat.postMessage")[-1]
    assert "Which category fits best?" in category.text

    for n, label in enumerate(("Project", "High", "No particular date"), 5):
        pressed = slack.fake.called("chat.postMessage")[-1]
        await slack.press(pressed, label)
        updates = await slack.fake.wait_for("chat.update", n - 4)
        assert updates[-1].args["ts"] == pressed.result["ts"]
        assert f"✓ {label}" in updates[-1].text
        assert not [b for b in updates[-1].blocks if b["type"] == "actions"], "the pressed buttons are gone"
        await slack.fake.wait_for("chat.postMessage", n)

    summary = slack.fake.called("chat.postMessage")[-1]
    assert "Invoice OCR for accounts payable" in summary.text and "Submit it?" in summary.text
    assert "Finance (yours)" in summary.text, "the requester's own business partner, not asked"
    await slack.press(summary, "Submit")
    done = (await slack.fake.wait_for("chat.postMessage", 8))[-1]
    assert "Submitted as DR-13" in done.text

    [request] = await rows_of(slack.db, DemandRequest, DemandRequest.id == 13)
    [dana] = await rows_of(slack.db, Person, Person.email == "dana@example.com")
    assert request.requester_id == dana.id
    assert request.source_platform == "slack" and request.source_channel == dm_of(DANA)
    assert request.category == "project" and request.urgency == "high"


async def test_five_direct_messages_file_a_complete_request(slack: SlackHarness) -> None:
    lines = (
        "new request",
        "Invoice OCR for accounts payable",
        "Invoices are typed by hand, so that suppliers are paid within a week",
        "project, high, end of March",
    )
    for n, line in enumerate(lines, 1):
        await slack.dm(line)
        await slack.fake.wait_for("chat.postMessage", n)
    summary = slack.fake.called("chat.postMessage")[-1]
    assert "31 Mar 2027" in summary.text and "Finance (yours)" in summary.text
    await slack.press(summary, "Submit")  # the fifth message: the confirmation
    done = (await slack.fake.wait_for("chat.postMessage", 5))[-1]
    assert "Submitted as DR-13" in done.text

    [request] = await rows_of(slack.db, DemandRequest, DemandRequest.id == 13)
    assert (request.title, request.description, request.outcome) == (
        "Invoice OCR for accounts payable", "Invoices are typed by hand", "Suppliers are paid within a week")
    assert (request.category, request.urgency, request.partner_id) == ("project", "high", 1)
    assert request.desired_date is not None and request.desired_date.isoformat() == "2027-03-31"


async def test_a_new_person_is_matched_by_the_email_slack_reports_once(slack: SlackHarness) -> None:
    await slack.dm("hello", user=NEWBIE)
    await slack.fake.wait_for("chat.postMessage", 1)
    await slack.dm("my requests", user=NEWBIE)
    await slack.fake.wait_for("chat.postMessage", 2)

    lookups = slack.fake.called("users.info")
    assert [c.args["user"] for c in lookups] == [NEWBIE], "users.info only on first contact"
    [person] = await rows_of(slack.db, Person, Person.email == "nora.new@example.com")
    [identity] = await rows_of(slack.db, Identity, Identity.user_id == NEWBIE)
    assert person.name == "Nora New" and person.time_zone == "Europe/Berlin"
    assert identity.person_id == person.id and identity.platform == "slack"


async def _to_the_urgency_question(slack: SlackHarness) -> None:
    for n, line in enumerate(("new request", "Invoice OCR for accounts payable", "skip",
                              "Invoices are booked without typing", "project"), 1):
        await slack.dm(line)
        await slack.fake.wait_for("chat.postMessage", n)
    assert "How urgent is it?" in slack.fake.called("chat.postMessage")[-1].text


async def test_a_stale_button_is_harmless_and_says_so(slack: SlackHarness) -> None:
    await _to_the_urgency_question(slack)
    urgency = slack.fake.called("chat.postMessage")[-1]
    await slack.dm("high")  # typed instead of pressed: the buttons are still there
    when = (await slack.fake.wait_for("chat.postMessage", 6))[-1]
    assert "By when do you need it?" in when.text

    await slack.press(urgency, "Low")
    answer = (await slack.fake.wait_for("chat.postMessage", 7))[-1]
    assert "earlier question, so I ignored it" in answer.text
    assert [b for b in answer.blocks if b["type"] == "actions"], "the open question is asked again"
    (update,) = slack.fake.called("chat.update")
    assert not [b for b in update.blocks if b["type"] == "actions"], "the stale buttons are gone"
    shown = json.dumps(update.blocks, ensure_ascii=False)
    assert "No longer active" in shown and "✓ Low" not in shown, "the ignored press isn't shown as taken"

    await slack.press(when, "No particular date")
    summary = (await slack.fake.wait_for("chat.postMessage", 8))[-1]
    assert "Submit it?" in summary.text, "the flow went on from where it was"
    assert "High" in summary.text and "Low" not in summary.text, "the stale press changed nothing"


async def test_pressing_the_same_button_twice_answers_once(slack: SlackHarness) -> None:
    await _to_the_urgency_question(slack)
    urgency = slack.fake.called("chat.postMessage")[-1]
    await slack.press(urgency, "High")
    await slack.fake.wait_for("chat.postMessage", 6)
    await slack.press(urgency, "High")  # a double click: Slack sends a second payload
    await slack.settle()
    texts = [c.text for c in slack.fake.called("chat.postMessage")[5:]]
    assert len(texts) == 2 and "ignored it" in texts[1]


async def test_someone_elses_press_in_a_thread_leaves_the_question_to_its_owner(slack: SlackHarness) -> None:
    await slack.event({"type": "app_mention", "user": DANA, "text": f"<@{BOT_USER_ID}> hello",
                       "ts": "1700000500.000100", "team": TEAM_ID, "channel": "C0GENERAL"})
    (menu,) = await slack.fake.wait_for("chat.postMessage")
    await slack.press(menu, "New request", user=ALICE)
    await slack.settle()
    (note,) = [c for c in slack.fake.calls if c.method.startswith("response:")]
    assert note.args["response_type"] == "ephemeral" and "someone else's question" in note.text
    assert not slack.fake.called("chat.update"), "Dana's buttons stay"
    assert len(slack.fake.called("chat.postMessage")) == 1, "nothing is posted into Dana's thread"

    await slack.press(menu, "New request")
    asked = (await slack.fake.wait_for("chat.postMessage", 2))[-1]
    assert asked.args["thread_ts"] == "1700000500.000100" and "What do you need?" in asked.text
