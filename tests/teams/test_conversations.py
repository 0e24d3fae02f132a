"""People using the bot in Teams: personal chat, cards, the form, channels, the message extension."""

from __future__ import annotations

from typing import Any

from sqlmodel import select

from storage import queries as q
from storage.db import Database
from storage.models import DemandRequest, Identity
from tests.teams.conftest import ALICE, BOT_ID, CHANNEL_ID, DANA, NORA, TENANT, TeamsHarness


def _actions(card: dict[str, Any]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = list(card.get("actions", ()))
    for element in card.get("body", ()):
        if element.get("type") == "ActionSet":
            found.extend(element["actions"])
    return found


def _message_id(teams: TeamsHarness, call_index: int) -> str:
    # The fake numbers the messages it accepts bot-1, bot-2, ... in order.
    accepted = [c for c in teams.fake.calls if c.kind in ("send", "reply")]
    return f"bot-{accepted.index(teams.fake.messages[call_index]) + 1}"


def _last_card_with(teams: TeamsHarness, title: str) -> tuple[str, dict[str, Any], dict[str, Any]]:
    """(message id, card, data of the button ``title``) of the newest card holding that button."""
    messages = teams.fake.messages
    for index in range(len(messages) - 1, -1, -1):
        card = messages[index].card
        if card is None:
            continue
        for action in _actions(card):
            if action.get("title") == title:
                return _message_id(teams, index), card, action["data"]
    raise AssertionError(f"no button {title!r} in: {teams.fake.text()}")


async def _requests(db: Database) -> list[DemandRequest]:
    async with db.session() as session:
        return list((await session.execute(select(DemandRequest).order_by(DemandRequest.id))).scalars().all())


async def test_personal_chat_runs_the_whole_intake_with_buttons_and_typing(
    teams: TeamsHarness, demo_db: Database
) -> None:
    for line in ("new request", "Invoice OCR for accounts payable", "skip",
                 "Invoices are booked without manual typing"):
        await teams.send(teams.personal(DANA, line))
    assert "Which category fits best?" in teams.fake.text()

    card_id, _, data = _last_card_with(teams, "Project")
    await teams.send(teams.submit(DANA, card_id, data))
    assert "How urgent is it?" in teams.fake.messages[-1].text

    for line in ("High", "1", "skip", "submit"):
        await teams.send(teams.personal(DANA, line))
    assert "Submitted as DR-13" in teams.fake.messages[-1].text

    [request] = [r for r in await _requests(demo_db) if r.id == 13]
    assert (request.title, request.category, request.urgency, request.source_platform) == (
        "Invoice OCR for accounts payable", "project", "high", "teams")
    async with demo_db.session() as session:
        dana = await q.person_by_email(session, "dana@example.com")
        assert dana is not None and request.requester_id == dana.id  # matched via the roster email
        identity = (await session.execute(select(Identity).where(Identity.user_id == DANA.id))).scalars().one()
        assert (identity.workspace, identity.directory_id, identity.person_id) == (TENANT, DANA.aad, dana.id)


async def test_a_pressed_card_is_replaced_so_it_cannot_be_pressed_again(teams: TeamsHarness) -> None:
    await teams.send(teams.personal(DANA, "hello"))
    card_id, _, data = _last_card_with(teams, "My requests")
    await teams.send(teams.submit(DANA, card_id, data))

    [update] = teams.fake.of("update")
    assert update.activity_id == card_id
    assert update.card is not None and _actions(update.card) == []
    assert "✓ My requests" in update.text
    assert "Automate month-end accruals" in teams.fake.text()  # the flow went on


async def test_the_intake_form_card_shows_errors_then_files_the_request(teams: TeamsHarness, demo_db: Database) -> None:
    await teams.send(teams.personal(DANA, "form"))
    card_id, card, data = _last_card_with(teams, "Submit")
    inputs = {e["id"]: e for e in card["body"] if e["type"].startswith("Input.")}
    assert set(inputs) == {"title", "description", "outcome", "category", "urgency", "partner", "desired_date"}
    assert inputs["category"]["type"] == "Input.ChoiceSet" and inputs["desired_date"]["type"] == "Input.Date"

    values = {"title": "Contract renewal reminders", "description": "", "outcome": "short",
              "category": "enhancement", "urgency": "high", "partner": "1", "desired_date": ""}
    await teams.send(teams.submit(DANA, card_id, {**data, **values}))
    [refused] = teams.fake.of("update")
    assert refused.activity_id == card_id
    assert "business outcome is a little short" in refused.text
    assert _actions(refused.card or {})[0]["title"] == "Submit"  # still a form to fix
    assert len(await _requests(demo_db)) == 12

    values["outcome"] = "No contract renews by surprise again"
    await teams.send(teams.submit(DANA, card_id, {**data, **values}))
    done = teams.fake.of("update")[-1]
    assert "✓ Submitted" in done.text and _actions(done.card or {}) == []
    assert "Submitted as DR-13" in teams.fake.messages[-1].text
    assert (await _requests(demo_db))[-1].title == "Contract renewal reminders"


async def test_in_a_channel_the_bot_answers_only_when_mentioned(teams: TeamsHarness) -> None:
    await teams.send(teams.channel(DANA, "lunch anyone?", mention=False))
    assert teams.fake.messages == []

    asked = await teams.send(teams.channel(DANA, "my requests"))
    assert "Automate month-end accruals" in teams.fake.text()
    assert "I'm not sure what you mean" not in teams.fake.text()  # the mention text was stripped
    # answered in the thread of the message that mentioned the bot
    assert {m.conversation for m in teams.fake.messages} == {f"{CHANNEL_ID};messageid={asked['id']}"}


async def test_message_extension_captures_a_message_as_a_prefilled_request(
    teams: TeamsHarness, demo_db: Database
) -> None:
    html = "<p>Our <b>invoice scanner</b> is too slow&nbsp;for month end</p><p>It takes 5 minutes per batch.</p>"
    fetched = await teams.invoke(teams.fetch_task(NORA, html))
    task = fetched["task"]
    assert task["type"] == "continue"
    card = task["value"]["card"]["content"]
    inputs = {e["id"]: e for e in card["body"] if e["type"].startswith("Input.")}
    assert inputs["title"]["value"] == "Our invoice scanner is too slow for month end"
    assert "It takes 5 minutes per batch." in inputs["description"]["value"]
    [submit] = _actions(card)
    link = submit["data"]["brm"]["context"]["source_link"]
    assert link.startswith("https://teams.microsoft.com/l/message/")

    values = {k: e.get("value", "") for k, e in inputs.items()}
    values.update(outcome="", category="problem")
    refused = await teams.invoke(teams.submit_action(NORA, {**submit["data"], **values}))
    assert refused["task"]["type"] == "continue"
    assert "business outcome can't be empty" in str(refused["task"]["value"]["card"]["content"])

    values["outcome"] = "Month-end batches finish within a minute"
    done = await teams.invoke(teams.submit_action(NORA, {**submit["data"], **values}))
    assert done["task"]["type"] == "message"
    assert "Submitted as DR-13" in done["task"]["value"]

    request = (await _requests(demo_db))[-1]
    assert request.source_link == link and request.source_channel == CHANNEL_ID
    async with demo_db.session() as session:
        nora = await q.person_by_email(session, NORA.email)  # a new person, email from the roster
        assert nora is not None and request.requester_id == nora.id and nora.name == NORA.name


async def test_installing_the_app_greets_once(teams: TeamsHarness) -> None:
    install = teams.install_personal(ALICE)
    await teams.send(install)
    await teams.send(install)  # Teams resends
    [welcome] = teams.fake.messages
    assert "Hi! I capture demand requests" in welcome.text
    assert "[Open the request form]" in welcome.text

    _, _, data = _last_card_with(teams, "Open the request form")
    await teams.send(teams.submit(ALICE, _message_id(teams, 0), data))
    assert "New demand request" in teams.fake.messages[-1].text


async def test_a_repeated_activity_runs_once(teams: TeamsHarness, demo_db: Database) -> None:
    for line in ("new request", "Invoice OCR for accounts payable", "skip",
                 "Invoices are booked without manual typing", "Project", "High", "1", "skip"):
        await teams.send(teams.personal(DANA, line))
    submit = teams.personal(DANA, "submit")
    await teams.send(submit)
    sent = len(teams.fake.messages)
    await teams.send(submit)  # the same activity id again
    await teams.send(submit)
    assert len(teams.fake.messages) == sent
    assert len(await _requests(demo_db)) == 13


async def test_the_bot_recipient_id_is_what_counts_as_a_mention(teams: TeamsHarness) -> None:
    other = teams.channel(DANA, "my requests", mention=False)
    other["text"] = "<at>Alice Moreno</at> my requests"
    other["entities"] = [{"mentioned": {"id": ALICE.id, "name": ALICE.name}, "text": "<at>Alice Moreno</at>",
                          "type": "mention"}]
    await teams.send(other)
    assert teams.fake.messages == []
    assert BOT_ID.startswith("28:")
