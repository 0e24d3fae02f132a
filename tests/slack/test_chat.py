"""Chatting with the bot in Slack: direct messages, buttons, threads in channels."""

from __future__ import annotations

from sqlmodel import select

from storage.models import DemandRequest, Identity, Person
from tests.slack.conftest import DANA, NEWBIE, SlackHarness, dm_of


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

    for n, label in enumerate(("Project", "High", "Finance (yours)", "No particular date"), 5):
        pressed = slack.fake.called("chat.postMessage")[-1]
        await slack.press(pressed, label)
        updates = await slack.fake.wait_for("chat.update", n - 4)
        assert updates[-1].args["ts"] == pressed.result["ts"]
        assert f"✓ {label}" in updates[-1].text
        assert not [b for b in updates[-1].blocks if b["type"] == "actions"], "the pressed buttons are gone"
        await slack.fake.wait_for("chat.postMessage", n)

    summary = slack.fake.called("chat.postMessage")[-1]
    assert "Invoice OCR for accounts payable" in summary.text and "Submit it?" in summary.text
    await slack.press(summary, "Submit")
    done = (await slack.fake.wait_for("chat.postMessage", 9))[-1]
    assert "Submitted as DR-13" in done.text

    async with slack.db.session() as session:
        request = (await session.execute(select(DemandRequest).where(DemandRequest.id == 13))).scalar_one()
        dana = (await session.execute(select(Person).where(Person.email == "dana@example.com"))).scalar_one()
    assert request.requester_id == dana.id
    assert request.source_platform == "slack" and request.source_channel == dm_of(DANA)
    assert request.category == "project" and request.urgency == "high"


async def test_a_new_person_is_matched_by_the_email_slack_reports_once(slack: SlackHarness) -> None:
    await slack.dm("hello", user=NEWBIE)
    await slack.fake.wait_for("chat.postMessage", 1)
    await slack.dm("my requests", user=NEWBIE)
    await slack.fake.wait_for("chat.postMessage", 2)

    lookups = slack.fake.called("users.info")
    assert [c.args["user"] for c in lookups] == [NEWBIE], "users.info only on first contact"
    async with slack.db.session() as session:
        person = (await session.execute(select(Person).where(Person.email == "nora.new@example.com"))).scalar_one()
        identity = (await session.execute(select(Identity).where(Identity.user_id == NEWBIE))).scalar_one()
    assert person.name == "Nora New" and person.time_zone == "Europe/Berlin"
    assert identity.person_id == person.id and identity.platform == "slack"
