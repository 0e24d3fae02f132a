"""Demand intake, as a person would type it."""

from __future__ import annotations

from datetime import timedelta

from conversations.engine import Engine
from conversations.flows import default_flows
from conversations.messages import Source
from storage.models import DemandRequest, OutboxMessage
from tests.helpers import Chat, rows_of


async def _requests(engine: Engine) -> list[DemandRequest]:
    return await rows_of(engine.db, DemandRequest)


async def _outbox(engine: Engine) -> list[OutboxMessage]:
    return await rows_of(engine.db, OutboxMessage)


async def test_a_full_intake_stores_the_request_and_notifies_the_brm(engine: Engine) -> None:
    chat = Chat(engine)
    assert "short title" in await chat.say("new request")
    assert "Describe it" in await chat.say("Invoice OCR for accounts payable")
    # Only a description: the business outcome is asked on its own.
    assert "business outcome" in await chat.say("Suppliers complain about slow payments")
    text = await chat.say("Invoices are booked without manual typing")
    assert "Which category fits best?" in text and "Project*: new work of some size" in text
    text = await chat.press("Project")
    assert "How urgent is it?" in text and "Critical*: the business is blocked" in text
    assert "By when" in await chat.say("3")  # typed number: High
    summary = await chat.say("2027-03-31")
    assert "Urgency: High" in summary and "Business partner: Finance (yours)" in summary
    assert "Desired date: 31 Mar 2027" in summary
    done = await chat.press("Submit")
    assert "Submitted as DR-13" in done
    assert "I'm letting Alice Moreno, the BRM for Finance, know" in done

    stored = (await _requests(engine))[-1]
    assert (stored.title, stored.category, stored.urgency) == (
        "Invoice OCR for accounts payable",
        "project",
        "high",
    )
    assert stored.description == "Suppliers complain about slow payments"
    assert stored.desired_date is not None and stored.desired_date.isoformat() == "2027-03-31"
    assert stored.status == "submitted" and stored.source_platform == "console"
    outbox = await _outbox(engine)
    assert [(m.kind, m.subject) for m in outbox] == [("request_submitted", "DR-13")]
    assert "New demand request DR-13 from Dana Whitfield" in str(outbox[0].payload)


async def test_the_title_can_come_with_the_command_and_any_field_can_be_edited(engine: Engine) -> None:
    chat = Chat(engine)
    assert "Describe it" in await chat.say("request Shift planning for the night crew")
    for line in ("skip", "Supervisors plan a week in an hour", "idea", "low"):
        await chat.say(line)
    assert "Business partner: Finance (yours)" in await chat.say("skip")
    assert "Which field" in await chat.press("Edit a field")
    assert "urgent" in await chat.say("Urgency")
    summary = await chat.say("critical")
    assert "Urgency: Critical" in summary and "Submit it?" in summary
    await chat.press("Edit a field")
    assert "Which business partner" in await chat.press("Business partner")
    assert "Business partner: Not sure" in await chat.say("Not sure")
    done = await chat.say("submit")
    assert "No BRM owns this business partner yet" in done
    stored = (await _requests(engine))[-1]
    assert stored.partner_id is None and stored.brm_id is None and stored.urgency == "critical"
    # "Not sure" reaches the whole BRM team (Alice and Ben), not nobody.
    team = await _outbox(engine)
    assert sorted(m.recipient_id for m in team) == [1, 2] and {m.subject for m in team} == {stored.key}


async def test_cancel_at_any_point_saves_nothing(engine: Engine) -> None:
    chat = Chat(engine)
    before = len(await _requests(engine))
    await chat.say("new request")
    await chat.say("Something half done")
    assert "Cancelled your demand request. Nothing was saved." in await chat.say("cancel")
    assert len(await _requests(engine)) == before
    assert "nothing to cancel" in (await chat.say("cancel")).lower()


async def test_bad_answers_get_a_friendly_explanation_and_the_same_question(engine: Engine) -> None:
    chat = Chat(engine)
    await chat.say("new request")
    text = await chat.say("x" * 50_000)
    assert "50,000 characters long; the limit is 200" in text and "short title" in text
    assert "empty message" in await chat.say("   \t ")
    await chat.say("Badge readers at the Leeds site")
    await chat.say("skip")
    assert "a little short" in await chat.say("faster")
    await chat.say("Staff get in without queueing at 9am")
    text = await chat.say("9")
    assert "There is no option 9: pick a number from 1 to 5" in text and "category" in text
    text = await chat.say("maybe")
    assert "is not one of the options" in text
    await chat.say("problem")
    await chat.say("medium")
    assert "couldn't read that date" in await chat.say("next tuesday-ish")
    assert "is in the past" in await chat.say("2020-01-01")
    assert "Submit it?" in await chat.say("skip")
    assert len(await _requests(engine)) == 12  # only the demo's: nothing half-written


async def test_hostile_and_international_text_is_stored_as_typed_minus_control_characters(
    engine: Engine,
) -> None:
    chat = Chat(engine)
    title = "Robert'); DROP TABLE demand_request;-- <b>📈</b> שלום \x00\x07"
    await chat.say(f"request {title}")
    for line in ("<script>alert(1)</script>", "Ledger reconciles itself every night", "2", "2", "1"):
        await chat.say(line)
    assert "Submitted as" in await chat.say("submit")
    stored = (await _requests(engine))[-1]
    assert stored.title == "Robert'); DROP TABLE demand_request;-- <b>📈</b> שלום"
    assert stored.description == "<script>alert(1)</script>"
    assert len(await _requests(engine)) == 13


async def test_a_close_match_of_an_open_request_asks_before_submitting(engine: Engine) -> None:
    chat = Chat(engine)
    # The demo has "Automate month-end accruals" open for Finance: it is found right after the title.
    await chat.say("new request")
    text = await chat.say("Automate the month-end accruals")
    assert "already open, DR-1" in text and "File yours anyway?" in text and "Follow DR-1" in text
    assert "Describe it" in await chat.press("File mine anyway")
    for line in ("skip", "Invoices are booked without manual typing", "Project", "High", "1"):
        await chat.say(line)
    assert "Submitted as DR-13" in await chat.say("submit")
    assert len(await _requests(engine)) == 13


async def test_help_mid_flow_keeps_the_draft_and_asks_again(engine: Engine) -> None:
    chat = Chat(engine)
    await chat.say("new request")
    await chat.say("Data warehouse for HR")
    text = await chat.say("help")
    assert "*status DR-42*" in text and "Describe it" in text
    assert "business outcome" in await chat.say("skip")


async def test_a_stale_button_is_ignored_and_the_current_question_repeated(engine: Engine) -> None:
    chat = Chat(engine)
    await chat.say("request Data catalogue")
    await chat.say("skip")
    await chat.say("Analysts find data in minutes")
    await chat.say("idea")
    old_choices = chat.last_choices  # urgency question
    await chat.say("low")  # now on the date question
    text = await chat.press_in(old_choices, "Critical")  # too late
    assert "earlier question, so I ignored it" in text and "By when" in text
    await chat.say("1")
    assert "Urgency: Low" in chat.text


async def test_a_draft_survives_a_restart_and_expires_after_24_hours_of_silence(engine: Engine, clock) -> None:
    chat = Chat(engine)
    await chat.say("request Mobile sign-off for purchase orders")
    restarted = Engine(engine.db, default_flows(), clock=clock)
    chat.engine = restarted
    assert "business outcome" in await chat.say("skip")
    clock.advance(timedelta(hours=23))
    assert "category" in await chat.say("Managers approve from their phones")
    clock.advance(timedelta(hours=24, seconds=1))
    text = await chat.say("idea")
    assert "expired after 24 hours of silence" in text
    assert "Nothing was submitted" in text
    assert len(await _requests(engine)) == 12


async def test_the_form_refuses_bad_fields_with_messages_and_stores_nothing(engine: Engine) -> None:
    chat = Chat(engine, platform="slack")
    (reply,) = await chat.submit("intake:open", {"title": "From a message", "source_link": "https://x.test/p1"})
    assert reply.form is not None and reply.form.context["source_link"] == "https://x.test/p1"
    title_field = next(f for f in reply.form.fields if f.name == "title")
    assert title_field.initial == "From a message"
    (refused,) = await chat.submit(
        "intake:submit", {"title": "x" * 201, "outcome": "short", "category": "nonsense", "urgency": "high"}
    )
    assert refused.form is not None
    assert set(refused.form.errors) == {"title", "outcome", "category"}
    assert "limit is 200" in refused.form.errors["title"]
    assert len(await _requests(engine)) == 12


async def test_a_valid_form_files_the_request_with_its_source_link(engine: Engine) -> None:
    chat = Chat(engine, platform="slack")
    values = {
        "title": "Quarterly forecast template",
        "outcome": "Controllers stop rebuilding the same sheet",
        "category": "enhancement",
        "urgency": "medium",
        "partner": "",
        "desired_date": "",
        "source_link": "https://example.slack.com/archives/C1/p123",
    }
    replies = await chat.submit("intake:submit", values)
    assert "Submitted as DR-13" in "\n".join(r.plain_text() for r in replies)
    stored = (await _requests(engine))[-1]
    assert stored.source_link == "https://example.slack.com/archives/C1/p123"
    assert stored.source_platform == "slack"


async def test_a_form_duplicate_is_flagged_once_then_accepted(engine: Engine) -> None:
    chat = Chat(engine, platform="slack")
    values = {
        "title": "Automate month end accruals",
        "outcome": "Close the books two days faster",
        "category": "project",
        "urgency": "high",
        "partner": "1",
    }
    (flagged,) = await chat.submit("intake:submit", values)
    assert flagged.form is not None and "DR-1" in flagged.form.errors["title"]
    assert len(await _requests(engine)) == 12
    replies = await chat.submit("intake:submit", {**values, **flagged.form.context})
    assert "Submitted as DR-13" in replies[0].plain_text()


async def test_where_a_request_came_from_is_recorded(engine: Engine) -> None:
    chat = Chat(engine, platform="slack", channel="D123")
    await chat.say("request Expense policy bot", source=Source(channel="D123", link="https://x.test/m/1"))
    for line in ("skip", "Fewer policy questions to finance", "idea", "low", "1"):
        await chat.say(line)
    await chat.say("submit")
    stored = (await _requests(engine))[-1]
    assert (stored.source_platform, stored.source_channel) == ("slack", "D123")


async def test_pressed_buttons_and_form_selects_pick_by_id_not_by_position(engine: Engine) -> None:
    chat = Chat(engine, platform="slack")
    for line in ("request Territory planning sheet", "skip", "Reps see their accounts in one place", "idea", "low"):
        await chat.say(line)
    await chat.press("No particular date")
    await chat.press("Edit a field")
    await chat.press("Business partner")
    assert "Business partner: Sales & Marketing" in await chat.press("Sales & Marketing")
    await chat.press("Submit")
    assert (await _requests(engine))[-1].brm_id is not None
    async with engine.db.transaction() as store:
        sales = next(p for p in await store.partners.all() if p.name == "Sales & Marketing")
    assert (await _requests(engine))[-1].partner_id == sales.id

    values = {
        "title": "Pipeline hygiene report",
        "outcome": "Forecast calls take half the time",
        "category": "idea",
        "urgency": "low",
        "partner": str(sales.id),
    }
    await chat.submit("intake:submit", values)
    assert (await _requests(engine))[-1].partner_id == sales.id


async def test_a_choice_field_can_be_edited_by_pressing_its_button(engine: Engine) -> None:
    chat = Chat(engine, platform="slack")
    for line in ("request Badge printer", "skip", "Visitors get badges without a queue", "idea", "low", "1"):
        await chat.say(line)
    await chat.press("Edit a field")
    assert "Which category" in await chat.press("Category")
    summary = await chat.press("Project")
    assert "Category: Project" in summary and "Submit it?" in summary


async def test_a_close_match_of_someone_elses_request_reveals_nothing_about_it(engine: Engine) -> None:
    gus = Chat(engine, email="gus@example.com")  # a requester of People & Culture
    # Eli's open "CRM lead scoring" belongs to Sales & Marketing.
    for line in ("request CRM lead scoring", "skip", "Sales reps call the best leads first", "idea", "low", "skip"):
        await gus.say(line)
    await gus.say("Edit a field")
    await gus.say("Business partner")
    assert "Business partner: Sales & Marketing" in await gus.say("Sales & Marketing")
    text = await gus.say("submit")
    assert "already open for this business partner" in text and "Submit yours anyway?" in text
    assert "DR-4" not in text and "Submitted" not in text.replace("Submit yours", "")
    assert "Follow" not in text, "a request one may not see cannot be followed"
    values = {
        "title": "CRM lead scoring",
        "outcome": "Sales reps call the best leads first",
        "category": "idea",
        "urgency": "low",
        "partner": "2",
    }
    (flagged,) = await Chat(engine, email="gus@example.com", platform="slack").submit("intake:submit", values)
    assert flagged.form is not None and "DR-4" not in flagged.form.errors["title"]


async def test_commands_work_with_trailing_punctuation(engine: Engine) -> None:
    chat = Chat(engine)
    await chat.say("new request")
    assert "Cancelled your demand request" in await chat.say("Cancel.")
    assert len(await _requests(engine)) == 12


async def test_emoji_sequences_and_joiners_survive_but_bidi_overrides_do_not(engine: Engine) -> None:
    chat = Chat(engine)
    await chat.say("request Laptop for 👩\u200d💻 team می\u200cخواهم \u202eevil")
    for line in ("skip", "Developers get the right machine", "idea", "low", "1", "submit"):
        await chat.say(line)
    assert (await _requests(engine))[-1].title == "Laptop for 👩\u200d💻 team می\u200cخواهم evil"


async def test_the_same_form_submitted_twice_files_one_request(engine: Engine) -> None:
    chat = Chat(engine, platform="teams")
    (opened,) = await chat.submit("intake:open", {"title": "Room booking kiosk"})
    assert opened.form is not None and opened.form.context.get("form_token")
    values = {
        "title": "Room booking kiosk",
        "outcome": "Nobody walks to a booked room again",
        "category": "idea",
        "urgency": "low",
        "partner": "",
        **opened.form.context,
    }
    first = await chat.submit("intake:submit", values)
    again = await chat.submit("intake:submit", values)
    assert "Submitted as DR-13" in first[0].plain_text()
    assert "already submitted" in again[0].plain_text()
    assert len(await _requests(engine)) == 13
