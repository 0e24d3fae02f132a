"""People using the bot in Teams: personal chat, cards, the form, channels, the message extension."""

from __future__ import annotations

import json
from typing import Any

from storage.db import Database
from storage.models import DemandRequest, Identity
from tests.helpers import rows_of
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
    return await rows_of(db, DemandRequest)


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

    for line in ("High", "1", "submit"):  # "1": No particular date
        await teams.send(teams.personal(DANA, line))
    assert "Submitted as DR-13" in teams.fake.messages[-1].text

    [request] = [r for r in await _requests(demo_db) if r.id == 13]
    assert (request.title, request.category, request.urgency, request.source_platform) == (
        "Invoice OCR for accounts payable", "project", "high", "teams")
    async with demo_db.transaction() as store:
        dana = await store.people.by_email("dana@example.com")
    assert dana is not None and request.requester_id == dana.id  # matched via the roster email
    [identity] = await rows_of(demo_db, Identity, Identity.user_id == DANA.id)
    assert (identity.workspace, identity.directory_id, identity.person_id) == (TENANT, DANA.aad, dana.id)


async def test_five_messages_in_a_personal_chat_file_a_complete_request(
    teams: TeamsHarness, demo_db: Database
) -> None:
    lines = (
        "request Invoice OCR for accounts payable",
        "Suppliers email PDF invoices. Outcome: invoices are booked without manual typing",
        "Project",
        "high by end of March",
    )
    for line in lines:
        await teams.send(teams.personal(DANA, line))
    summary = teams.fake.text()
    assert "Finance (yours)" in summary and "31 Mar 2027" in summary and "Submit it?" in summary
    card_id, _, data = _last_card_with(teams, "Submit")
    await teams.send(teams.submit(DANA, card_id, data))  # the fifth: the confirmation, pressed
    assert "Submitted as DR-13" in teams.fake.messages[-1].text

    [request] = [r for r in await _requests(demo_db) if r.id == 13]
    assert (request.description, request.outcome) == (
        "Suppliers email PDF invoices", "invoices are booked without manual typing")
    assert (request.category, request.urgency, request.partner_id) == ("project", "high", 1)
    assert request.desired_date is not None and request.desired_date.isoformat() == "2027-03-31"


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
    assert done["task"]["type"] == "continue"  # a card: its paragraphs stay paragraphs
    result = done["task"]["value"]["card"]["content"]
    blocks = [e["text"] for e in result["body"] if e["type"] == "TextBlock"]
    assert any("Submitted as DR-13" in b for b in blocks) and len(blocks) > 1

    request = (await _requests(demo_db))[-1]
    assert request.source_link == link and request.source_channel == CHANNEL_ID
    async with demo_db.transaction() as store:
        nora = await store.people.by_email(NORA.email)  # a new person, email from the roster
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


async def test_pressing_an_old_card_again_changes_nothing(teams: TeamsHarness, demo_db: Database) -> None:
    for line in ("new request", "Invoice OCR for accounts payable", "skip",
                 "Invoices are booked without manual typing"):
        await teams.send(teams.personal(DANA, line))
    card_id, _, data = _last_card_with(teams, "Project")
    await teams.send(teams.submit(DANA, card_id, data))
    assert "How urgent is it?" in teams.fake.messages[-1].text

    # The old card pressed again (another device had not seen the update yet): ignored, and
    # the question that is open now is asked again.
    before = len(teams.fake.messages)
    await teams.send(teams.submit(DANA, card_id, data))
    again = [m.text for m in teams.fake.messages[before:]]
    assert "earlier question" in again[0] and "How urgent is it?" in again[-1]
    assert all(_actions(u.card or {}) == [] for u in teams.fake.of("update"))
    last_update = json.dumps(teams.fake.of("update")[-1].card, ensure_ascii=False)
    assert "No longer active" in last_update and "✓ Project" not in last_update, "the ignored press is not taken"

    for line in ("High", "1", "submit"):  # "1": No particular date
        await teams.send(teams.personal(DANA, line))
    assert "Submitted as DR-13" in teams.fake.messages[-1].text
    [request] = [r for r in await _requests(demo_db) if r.id == 13]
    assert request.category == "project"


async def test_submitting_an_old_form_card_again_files_nothing_and_keeps_it_closed(
    teams: TeamsHarness, demo_db: Database
) -> None:
    await teams.send(teams.personal(DANA, "form"))
    card_id, _, data = _last_card_with(teams, "Submit")
    values = {"title": "Contract renewal reminders", "description": "", "category": "enhancement",
              "outcome": "No contract renews by surprise again", "urgency": "high", "partner": "1",
              "desired_date": ""}
    await teams.send(teams.submit(DANA, card_id, {**data, **values}))
    assert "Submitted as DR-13" in teams.fake.messages[-1].text
    sent = len(teams.fake.messages)

    for _ in range(2):  # a double click, then the old card once more
        await teams.send(teams.submit(DANA, card_id, {**data, **values}))
    assert len(teams.fake.messages) == sent  # no second confirmation, no "looks like DR-13" form
    updates = teams.fake.of("update")
    assert len(updates) == 3 and all(u.activity_id == card_id for u in updates)
    assert all("✓ Submitted" in u.text and _actions(u.card or {}) == [] for u in updates)
    assert len(await _requests(demo_db)) == 13

    # A new form card in the same chat is a new form.
    await teams.send(teams.personal(DANA, "form"))
    new_id, _, new_data = _last_card_with(teams, "Submit")
    assert new_id != card_id
    await teams.send(teams.submit(DANA, new_id, {**new_data, **values, "title": "Supplier portal logins"}))
    assert "Submitted as DR-14" in teams.fake.messages[-1].text


async def test_repeated_invokes_and_installs_run_once(teams: TeamsHarness, demo_db: Database) -> None:
    fetch = teams.fetch_task(NORA, "<p>Scanner too slow</p>")
    first = await teams.invoke(fetch)
    assert first["task"]["type"] == "continue"
    again = await teams.invoke(fetch)  # Teams resends an invoke it got no answer to in time
    assert again["task"]["type"] == "message"

    [submit] = _actions(first["task"]["value"]["card"]["content"])
    values = {"title": "Scanner too slow", "description": "Batches take minutes", "category": "problem",
              "outcome": "Month-end batches finish within a minute", "urgency": "high", "partner": "1",
              "desired_date": ""}
    action = teams.submit_action(NORA, {**submit["data"], **values})
    done = await teams.invoke(action)
    assert "Submitted as DR-13" in str(done["task"]["value"]["card"]["content"])
    repeated = await teams.invoke(action)
    assert "already received" in repeated["task"]["value"]
    assert len(await _requests(demo_db)) == 13

    install = teams.install_team(ALICE)
    for _ in range(3):
        await teams.send(install)
    assert sum("Mention me" in m.text for m in teams.fake.messages) == 1


async def test_every_flow_runs_in_personal_chat(teams: TeamsHarness) -> None:
    await teams.send(teams.personal(DANA, "help"))
    assert "**status DR-42**" in teams.fake.text() and "&lt;title&gt;" in teams.fake.text()  # shown, not a tag
    before = len(teams.fake.messages)
    await teams.send(teams.personal(DANA, "my requests"))
    assert "Automate month-end accruals" in "\n".join(m.text for m in teams.fake.messages[before:])
    await teams.send(teams.personal(DANA, "new request"))
    await teams.send(teams.personal(DANA, "cancel"))
    assert "Nothing was saved" in teams.fake.messages[-1].text
    await teams.send(teams.personal(DANA, "status DR-1"))
    assert "DR-1 · Automate month-end accruals" in teams.fake.messages[-1].text
    assert "Submitted → Triaged" in teams.fake.messages[-1].text


async def test_a_throttled_card_update_is_retried(teams: TeamsHarness) -> None:
    await teams.send(teams.personal(DANA, "hello"))
    card_id, _, data = _last_card_with(teams, "My requests")
    teams.fake.fail_next(429, retry_after="2")
    teams.fake.fail_next(503)
    await teams.send(teams.submit(DANA, card_id, data))
    [update] = teams.fake.of("update")  # the PUT went through on the third try
    assert update.activity_id == card_id and "✓ My requests" in update.text
    assert len(teams.fake.of("refused")) == 2 and teams.sleeps[0] >= 2


async def test_dates_are_read_in_the_teams_client_locale(teams: TeamsHarness, demo_db: Database) -> None:
    # The harness's client says en-US: 04/05/2027 is April 5, not 4 May.
    for line in ("request Invoice OCR for accounts payable",
                 "Suppliers email PDF invoices. Outcome: invoices are booked without manual typing",
                 "project, high, 04/05/2027"):
        await teams.send(teams.personal(DANA, line))
    assert "5 Apr 2027" in teams.fake.text()
