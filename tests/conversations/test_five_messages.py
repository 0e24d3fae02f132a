"""An intake a business user finishes in five messages, and the bot understanding people who
type the way people type: typos, commands in the middle of a question, bare keys, sentences."""

from __future__ import annotations

from datetime import date, timedelta

from conversations.codec import reply_from_json
from conversations.engine import Engine
from conversations.messages import ConversationKey, Sender
from storage.models import DemandRequest, OutboxMessage, RequestNote, RequestWatcher
from tests.helpers import Chat, rows_of

DANA = "dana@example.com"  # a requester of Finance
ALICE = "alice@example.com"  # Finance's BRM


async def _requests(engine: Engine) -> list[DemandRequest]:
    return await rows_of(engine.db, DemandRequest)


async def test_five_messages_from_the_command_to_the_filed_request(engine: Engine) -> None:
    chat = Chat(engine)
    assert "What do you need?" in await chat.say("new request")
    text = await chat.say("Invoice OCR for accounts payable")
    assert "Both in one answer works" in text
    text = await chat.say("Invoices are typed by hand, so that suppliers are paid within a week")
    assert "Which category fits best?" in text
    summary = await chat.say("project, high, end of March")
    for line in (
        "Description: Invoices are typed by hand",
        "Business outcome: Suppliers are paid within a week",
        "Category: Project",
        "Urgency: High",
        "Business partner: Finance (yours)",
        "Desired date: 31 Mar 2027",
    ):
        assert line in summary
    assert "Submitted as DR-13" in await chat.say("submit")
    assert chat.sent == 5

    stored = (await _requests(engine))[-1]
    assert (stored.title, stored.description, stored.outcome) == (
        "Invoice OCR for accounts payable",
        "Invoices are typed by hand",
        "Suppliers are paid within a week",
    )
    assert (stored.category, stored.urgency, stored.partner_id) == ("project", "high", 1)
    assert stored.desired_date == date(2027, 3, 31)
    [notice] = [m for m in await rows_of(engine.db, OutboxMessage) if m.kind == "request_submitted"]
    told = reply_from_json(notice.payload).plain_text()
    assert "Business partner: Finance" in told and "(yours)" not in told, "Finance is Dana's, not her BRM's"


async def test_with_the_title_in_the_command_and_one_answer_per_question_it_is_five_too(engine: Engine) -> None:
    chat = Chat(engine)
    await chat.say("request Supplier portal")
    await chat.say("Suppliers email PDFs. Outcome: suppliers upload invoices themselves")
    await chat.say("Project")
    assert "By when" not in await chat.say("High by Q1 2027")
    assert "Submitted as DR-13" in await chat.say("1")
    assert chat.sent == 5
    stored = (await _requests(engine))[-1]
    assert stored.description == "Suppliers email PDFs" and stored.outcome == "suppliers upload invoices themselves"
    assert stored.desired_date == date(2027, 3, 31)


async def test_skip_is_refused_where_an_answer_is_required_and_is_never_a_title(engine: Engine) -> None:
    chat = Chat(engine)
    await chat.say("new request")
    text = await chat.say("skip")
    assert "The title is required" in text and "What do you need?" in text
    await chat.say("Badge readers at the Leeds site")
    assert "business outcome" in await chat.say("skip")  # the description may be left out
    text = await chat.say("skip")
    assert "The business outcome is required" in text
    await chat.say("Staff get in without queueing at 9am")
    assert "The category is required" in await chat.say("skip")
    await chat.say("problem")
    assert "Title: Badge readers at the Leeds site" in await chat.say("low, skip")
    assert len(await _requests(engine)) == 12


async def test_typos_of_options_are_read_and_near_misses_offered(engine: Engine) -> None:
    chat = Chat(engine)
    for line in ("request Room booking kiosk", "Nobody walks to a booked room again so that meetings start on time"):
        await chat.say(line)
    assert "How urgent" in await chat.say("projcet")
    text = await chat.say("hihg")
    assert "Did you mean *High*?" in text
    await chat.say("high")
    assert "Category: Project" in await chat.say("1")


async def test_a_command_typed_into_a_free_text_question_is_asked_about_not_stored(engine: Engine) -> None:
    chat = Chat(engine)
    await chat.say("request Shift planning for the night crew")
    text = await chat.say("my requests")
    assert "Did you mean the command *my requests*?" in text
    text = await chat.press("Yes, my requests")
    assert "Your requests" in text and "DR-1 · Automate month-end accruals" in text
    assert "Back to your request “Shift planning for the night crew”" in text and "Both in one answer" in text
    text = await chat.say("status DR-2")
    assert "Did you mean the command *status DR-2*?" in text
    assert "DR-2 · Expense report approvals on mobile" in await chat.say("yes")
    # Saying no keeps it as the answer.
    await chat.say("my requests")
    assert "business outcome" in await chat.say("no")
    text = await chat.say("Supervisors plan a week in an hour")
    assert "Which category" in text
    await chat.say("idea")
    await chat.say("low")
    assert "Description: my requests" in await chat.say("1")


async def test_a_bare_key_shows_the_request_and_command_typos_are_understood(engine: Engine) -> None:
    chat = Chat(engine)
    text = await chat.say("DR-2")
    assert "DR-2 · Expense report approvals on mobile" in text and "Status: Submitted" in text
    text = await chat.say("my reqeusts")
    assert "I read that as *my requests*" in text and "Your requests" in text
    text = await chat.say("stauts DR-2")
    assert "Did you mean *status DR-2*?" in text
    assert "DR-2 · Expense report approvals on mobile" in await chat.press("Yes")
    assert "I'm not sure what you mean" in await chat.say("qwzx")


async def test_a_free_sentence_offers_a_request_with_its_title_and_date_filled(engine: Engine) -> None:
    chat = Chat(engine)
    text = await chat.say("I need a CRM dashboard for sales by March")
    assert "Shall I start a demand request “CRM dashboard for sales”, needed by 31 Mar 2027?" in text
    assert "Both in one answer" in await chat.press("Yes, start it")
    await chat.say("Sales leads sit in spreadsheets so that nobody misses a follow-up")
    await chat.say("enhancement")
    summary = await chat.say("medium")
    assert "Title: CRM dashboard for sales" in summary and "Desired date: 31 Mar 2027" in summary
    assert "Submitted as DR-13" in await chat.say("submit")
    assert chat.sent == 6  # the sentence, yes, three answers, submit


async def test_a_person_who_comes_back_to_a_draft_is_asked_to_continue_or_discard(engine: Engine, clock) -> None:
    chat = Chat(engine)
    await chat.say("request Mobile sign-off for purchase orders")
    text = await chat.say("hello")
    assert "You have an unfinished request “Mobile sign-off for purchase orders”: continue or discard?" in text
    assert "Both in one answer" in await chat.press("Continue")
    await chat.say("Managers approve on the go so that orders are not held up")
    clock.advance(timedelta(hours=2))
    text = await chat.say("what was I doing")  # not a category, after a pause
    assert "You have an unfinished request “Mobile sign-off for purchase orders”" in text
    text = await chat.say("discard")
    assert "Discarded your draft" in text and "What would you like to do?" in text
    assert len(await _requests(engine)) == 12


async def test_help_and_home_mention_the_unfinished_draft(engine: Engine) -> None:
    chat = Chat(engine)
    await chat.say("request Mobile sign-off for purchase orders")
    assert "You have an unfinished demand request “Mobile sign-off for purchase orders”" in await chat.say("menu")
    home = await engine.home(ConversationKey("console", "local", "terminal", DANA), Sender(email=DANA))
    assert home is not None
    assert "You have an unfinished request “Mobile sign-off for purchase orders”: continue or discard?" in (
        home.plain_text()
    )


async def test_a_likely_duplicate_right_after_the_title_can_be_followed_with_a_comment(engine: Engine, clock) -> None:
    fatima = Chat(engine, email="fatima@example.com")  # Operations; not the requester of DR-1
    # Her partner is Operations: the check looks there, and finds nothing like Finance's DR-1.
    assert "Both in one answer" in await fatima.say("request Automate month-end accruals")
    await fatima.say("cancel")
    dana_colleague = Chat(engine, email="gus@example.com")  # People & Culture
    await dana_colleague.say("request Automate month-end accruals")
    assert "Follow" not in dana_colleague.text
    await dana_colleague.say("cancel")

    # A Finance colleague of Dana's (no request of their own) sees DR-1 and follows it.
    async with engine.db.transaction() as store:
        colleague = await store.people.add(name="Hana Ito", email="hana@example.com", role="requester",
                                           time_zone="Europe/Paris", partner_id=1, now=clock())
    hana = Chat(engine, email="hana@example.com")
    text = await hana.say("request Automate the month-end accruals")
    assert "already open, DR-1" in text and "Follow DR-1" in text
    text = await hana.press("Follow DR-1")
    assert "You now follow DR-1" in text and "nothing new was filed" in text
    assert "DR-1" in await hana.say("Accruals take us three days each month")
    [note] = await rows_of(engine.db, RequestNote)
    assert note.text == "Accruals take us three days each month" and note.request_id == 1
    assert [(w.request_id, w.person_id) for w in await rows_of(engine.db, RequestWatcher)] == [(1, colleague.id)]
    assert "DR-1 · Automate month-end accruals" in await hana.say("status DR-1"), "a follower sees what they follow"
    assert len(await _requests(engine)) == 12

    # DR-1's BRM reads the need; when Alice moves DR-1 on, Hana hears of it once, as Dana does.
    [need] = [m for m in await rows_of(engine.db, OutboxMessage) if m.period.startswith("note:")]
    assert need.recipient_id == 1 and "Accruals take us three days" in str(need.payload)
    await Chat(engine, email=ALICE).say("move DR-1 to approved because the sponsor agreed")
    told = [m for m in await rows_of(engine.db, OutboxMessage) if m.period.startswith("change:")]
    assert sorted(m.recipient_id for m in told) == sorted([4, colleague.id])
    assert all("is now approved" in str(m.payload) for m in told)


async def test_without_an_own_partner_the_check_looks_across_all_partners(engine: Engine) -> None:
    newbie = Chat(engine, email="nora@example.com", name="Nora New")
    text = await newbie.say("request CRM lead scoring")
    assert "already open for this business partner" in text and "File yours anyway?" in text
    assert "DR-4" not in text
    await newbie.press("File mine anyway")
    for line in ("Reps call the best leads first, so that more deals close", "idea", "low"):
        await newbie.say(line)
    assert "Business partner: Not sure" in await newbie.say("1")
    assert "asking the BRM team" in await newbie.say("submit")


async def test_lists_show_open_items_first_and_newest_activity_first(engine: Engine) -> None:
    text = await Chat(engine).say("my requests")
    assert text.index("DR-2") < text.index("DR-1") < text.index("DR-3")  # DR-3 is delivered: last
    await Chat(engine, email=ALICE).say("comment DR-1 sponsor met")  # a note is not a status change
    await Chat(engine, email=ALICE).say("accept DR-2")
    text = await Chat(engine).say("my requests")
    assert text.index("DR-2") < text.index("DR-1") < text.index("DR-3")


async def test_the_history_says_each_change_once_and_dates_read_the_same_everywhere(engine: Engine) -> None:
    alice = Chat(engine, email=ALICE)
    await alice.say("move DR-2 to triaged because triaged")
    await alice.say("assign DR-2 to ben@example.com")
    text = await Chat(engine).say("status DR-2")
    assert "Submitted → Triaged\n" in text + "\n" and "(triaged)" not in text
    assert "Assigned to Ben Okafor" in text and "Triaged → Triaged" not in text
    assert "Desired date: 18 Feb 2027" in text and "Submitted: 20 Nov 2026 04:00 EST" in text
    assert "23 Nov 2026 04:00 EST: Submitted → Triaged" in text


async def test_questions_and_thanks_are_not_offered_as_requests(engine: Engine) -> None:
    chat = Chat(engine)
    for line in ("what can you do for me", "thank you very much", "is this thing on?"):
        text = await chat.say(line)
        assert "Shall I start a demand request" not in text and "What would you like to do?" in text
