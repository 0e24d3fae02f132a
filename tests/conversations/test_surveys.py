"""Pulse surveys end to end in the terminal: invitations on each recipient's own schedule,
one-tap and typed answers, stop and go on, changed and late answers, reminders only to those
who have not answered, and anonymity that holds (no person on an answer; who answered is
forgotten when the run closes)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.jobs import Scheduler, default_jobs
from conversations.codec import reply_from_json
from conversations.engine import Engine
from conversations.messages import Choices, Reply
from conversations.surveys import parse_definition
from storage.db import Database
from storage.models import (
    OutboxMessage,
    Person,
    SurveyAnswer,
    SurveyInvitation,
    SurveyRespondent,
    SurveyRun,
)
from tests.conftest import FakeClock
from tests.helpers import Chat, count_of, rows_of

PULSE = """\
name: contact-pulse
title: Contact pulse
audience: contacts
schedule: {{day: "1st mon", hour: 10}}
window_days: 5
reminder_after_days: 3
anonymous: {anonymous}
questions:
  - {{id: satisfaction, type: rating, text: "How satisfied are you with IT's services?"}}
  - {{id: role, type: choice, text: "How would you describe IT's role for your area?",
     options: [order taker, trusted advisor, strategic partner]}}
  - {{id: recommend, type: nps, text: "How likely are you to recommend IT's services?"}}
  - {{id: better, type: text, text: "One thing IT should do differently", required: false}}
"""
# December 2026's first Monday; 10:00 local is 09:00 UTC in Prague, Stockholm and Casablanca,
# 15:00 UTC in New York.
FIRST_MONDAY = datetime(2026, 12, 7, tzinfo=UTC)


async def apply(db: Database, clock: FakeClock, *, anonymous: bool = True, text: str = PULSE) -> None:
    definition = parse_definition(text.format(anonymous=str(anonymous).lower()))
    async with db.transaction() as store:
        await store.surveys.apply(name=definition.name, title=definition.title, definition=definition.to_json(),
                                  fingerprint=definition.fingerprint(), now=clock())


def scheduler(db: Database, clock: FakeClock) -> Scheduler:
    return Scheduler(db, default_jobs(), clock=clock)


async def invite_everyone(engine: Engine, clock: FakeClock, *, anonymous: bool = True) -> Scheduler:
    """The pulse applied, and invitations out in every zone on the first Monday."""
    await apply(engine.db, clock, anonymous=anonymous)
    jobs = scheduler(engine.db, clock)
    clock.now = FIRST_MONDAY + timedelta(hours=9)
    assert await jobs.tick("survey-invitations", "UTC") == 3
    clock.now = FIRST_MONDAY + timedelta(hours=15)
    assert await jobs.tick("survey-invitations", "UTC") == 1
    return jobs


async def sent_to(db: Database, email: str, kind: str = "survey-invitation") -> list[Reply]:
    [person] = await rows_of(db, Person, Person.email == email)
    messages = await rows_of(db, OutboxMessage, OutboxMessage.recipient_id == person.id, OutboxMessage.kind == kind)
    return [reply_from_json(m.payload) for m in messages]


def choices_of(reply: Reply) -> Choices:
    return next(b for b in reply.blocks if isinstance(b, Choices))


async def test_invitations_go_out_at_ten_in_each_recipients_zone_one_run_for_all(
    engine: Engine, clock: FakeClock
) -> None:
    await apply(engine.db, clock)
    jobs = scheduler(engine.db, clock)
    clock.now = FIRST_MONDAY + timedelta(hours=8, minutes=45)
    assert await jobs.tick("survey-invitations", "UTC") == 0  # 09:45 in Prague: not yet
    clock.now = FIRST_MONDAY + timedelta(hours=9)
    assert await jobs.tick("survey-invitations", "UTC") == 3  # Prague, Stockholm, Casablanca
    assert await jobs.tick("survey-invitations", "UTC") == 0  # the same slot again (another replica)
    clock.now += timedelta(minutes=15)
    assert await jobs.tick("survey-invitations", "UTC") == 0  # the next slot: all of them invited already
    assert await sent_to(engine.db, "dana@example.com") == []  # 04:15 in New York
    clock.now = FIRST_MONDAY + timedelta(hours=15)
    assert await jobs.tick("survey-invitations", "UTC") == 1
    [run] = await rows_of(engine.db, SurveyRun)
    assert run.period == "2026-12-07" and run.closes_at == FIRST_MONDAY + timedelta(days=5, hours=9)
    invited = await rows_of(engine.db, SurveyInvitation)
    assert len(invited) == 4 and {i.run_id for i in invited} == {run.id}
    [invitation] = await sent_to(engine.db, "dana@example.com")
    text = invitation.plain_text()
    assert "Contact pulse" in text and "4 quick questions" in text and "How satisfied" in text
    assert "Anonymous" in text and "Sat 12 Dec 04:00 EST" in text  # the window's end in Dana's zone
    assert [o.label for o in choices_of(invitation).options] == ["1", "2", "3", "4", "5"]
    messages = await rows_of(engine.db, OutboxMessage, OutboxMessage.kind == "survey-invitation")
    assert {m.priority for m in messages} == {1}  # counted in the weekly budget, after nudges
    # a process starting now catches up what it missed: nobody is invited twice
    await jobs.catch_up()
    assert await count_of(engine.db, OutboxMessage, OutboxMessage.kind == "survey-invitation") == 4


async def test_a_survey_applied_after_its_day_waits_for_the_next_one(engine: Engine, clock: FakeClock) -> None:
    clock.now = FIRST_MONDAY + timedelta(days=1)
    await apply(engine.db, clock)
    assert await scheduler(engine.db, clock).run_now("survey-invitations") == 0
    clock.now = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)  # January's first Monday
    assert await scheduler(engine.db, clock).run_now("survey-invitations") == 3


async def test_tap_through_a_survey_in_the_terminal(engine: Engine, clock: FakeClock) -> None:
    await invite_everyone(engine, clock)
    [invitation] = await sent_to(engine.db, "dana@example.com")
    dana = Chat(engine, email="dana@example.com")
    said = await dana.press_in(choices_of(invitation), "4")
    assert "Noted: 4." in said and "2/4" in said and "How would you describe IT's role" in said
    said = await dana.press("trusted advisor")
    assert "Noted: trusted advisor." in said and "3/4" in said
    said = await dana.press("9")
    assert "4/4" in said and "One thing IT should do differently" in said and "skip" in said
    said = await dana.say("Tell us earlier when projects slip")
    assert "That was the last question of *Contact pulse*. Thank you!" in said
    answers = await rows_of(engine.db, SurveyAnswer)
    assert [(a.question_id, a.value, a.choice, a.text) for a in answers] == [
        ("satisfaction", 4, None, None), ("role", None, "trusted advisor", None), ("recommend", 9, None, None),
        ("better", None, None, "Tell us earlier when projects slip"),
    ]
    assert {a.partner_id for a in answers} == {1} and len({a.response_id for a in answers}) == 1
    assert "no open survey" not in await dana.say("survey") and "answered everything" in dana.text


async def test_typed_answers_a_number_or_an_option_name(engine: Engine, clock: FakeClock) -> None:
    await invite_everyone(engine, clock)
    eli = Chat(engine, email="eli@example.com")
    said = await eli.say("survey")
    assert "1/4" in said and "1 · 2 · 3 · 4 · 5" not in said  # the Chat helper reads plain text
    assert "Type a number from 1 to 5" in await eli.say("7")  # out of range: nothing noted
    assert "2/4" in await eli.say("3")
    assert "3/4" in await eli.say("strategic")  # a unique start of an option's name
    assert "4/4" in await eli.say("0")  # NPS takes 0
    assert "last question" in await eli.say("skip")  # the free answer is optional
    answers = await rows_of(engine.db, SurveyAnswer)
    assert [(a.question_id, a.value, a.choice, a.text) for a in answers] == [
        ("satisfaction", 3, None, None), ("role", None, "strategic partner", None), ("recommend", 0, None, None),
        ("better", None, None, None),
    ]


async def test_stop_do_something_else_and_go_on_later(engine: Engine, clock: FakeClock) -> None:
    await invite_everyone(engine, clock)
    [invitation] = await sent_to(engine.db, "gus@example.com")
    gus = Chat(engine, email="gus@example.com")
    await gus.press_in(choices_of(invitation), "2")
    assert "2/4" in gus.text
    assert "DR-" in await gus.say("my requests") or "request" in gus.text.lower()  # something else
    clock.advance(timedelta(days=2))
    said = await gus.say("survey")
    assert "Going on with *Contact pulse*" in said and "2/4" in said
    assert "3/4" in await gus.say("1")


async def test_a_second_answer_asks_before_replacing_the_first(engine: Engine, clock: FakeClock) -> None:
    await invite_everyone(engine, clock)
    [invitation] = await sent_to(engine.db, "fatima@example.com")
    fatima = Chat(engine, email="fatima@example.com")
    first = choices_of(invitation)
    await fatima.press_in(first, "2")
    said = await fatima.press_in(first, "5")  # the old message's buttons, pressed again
    assert "You already answered “How satisfied are you with IT's services?” with 2. Replace it with 5?" in said
    assert "Changed: 5." in await fatima.press("Replace")
    [answer] = await rows_of(engine.db, SurveyAnswer)
    assert answer.value == 5
    await fatima.press_in(first, "1")
    assert "Kept your first answer." in await fatima.press("Keep the first")
    [answer] = await rows_of(engine.db, SurveyAnswer)
    assert answer.value == 5
    assert "Already noted." in await fatima.press_in(first, "5")  # the same answer again changes nothing


async def test_reminders_go_once_and_only_to_those_who_have_not_answered(engine: Engine, clock: FakeClock) -> None:
    jobs = await invite_everyone(engine, clock)
    [invitation] = await sent_to(engine.db, "dana@example.com")
    await Chat(engine, email="dana@example.com").press_in(choices_of(invitation), "3")
    clock.now = FIRST_MONDAY + timedelta(days=3, hours=8)
    assert await jobs.tick("survey-reminders", "UTC") == 0  # three days are not over yet
    clock.now = FIRST_MONDAY + timedelta(days=3, hours=9)
    assert await jobs.tick("survey-reminders", "UTC") == 3
    reminded = await rows_of(engine.db, OutboxMessage, OutboxMessage.kind == "survey-reminder")
    emails = {p.id: p.email for p in await rows_of(engine.db, Person)}
    assert sorted(emails[m.recipient_id] for m in reminded) == [
        "eli@example.com", "fatima@example.com", "gus@example.com",
    ]
    [reminder] = await sent_to(engine.db, "eli@example.com", "survey-reminder")
    assert "A reminder: *Contact pulse* is open until" in reminder.plain_text()
    clock.advance(timedelta(hours=1))
    assert await jobs.tick("survey-reminders", "UTC") == 0  # once
    assert "2/4" in await Chat(engine, email="eli@example.com").press_in(choices_of(reminder), "4")


async def test_anonymous_answers_name_no_one_and_who_answered_is_forgotten_at_close(
    engine: Engine, clock: FakeClock
) -> None:
    jobs = await invite_everyone(engine, clock)
    for email in ("dana@example.com", "eli@example.com"):
        [invitation] = await sent_to(engine.db, email)
        await Chat(engine, email=email).press_in(choices_of(invitation), "4")
    answers = await rows_of(engine.db, SurveyAnswer)
    assert len(answers) == 2 and all(a.person_id is None for a in answers)
    assert {a.partner_id for a in answers} == {1, 2}
    assert await count_of(engine.db, SurveyRespondent) == 2  # only while the run is open
    clock.now = FIRST_MONDAY + timedelta(days=5, hours=9)
    await jobs.tick("survey-reminders", "UTC")  # closes the run first
    [run] = await rows_of(engine.db, SurveyRun)
    assert run.closed_at == clock.now
    assert await count_of(engine.db, SurveyRespondent) == 0
    assert len(await rows_of(engine.db, SurveyAnswer)) == 2  # the answers stay, nameless


async def test_a_named_survey_keeps_the_person_with_the_answer(engine: Engine, clock: FakeClock) -> None:
    await invite_everyone(engine, clock, anonymous=False)
    [invitation] = await sent_to(engine.db, "dana@example.com")
    assert "Not anonymous" in invitation.plain_text()
    await Chat(engine, email="dana@example.com").press_in(choices_of(invitation), "4")
    [answer] = await rows_of(engine.db, SurveyAnswer)
    [dana] = await rows_of(engine.db, Person, Person.email == "dana@example.com")
    assert answer.person_id == dana.id


async def test_after_the_window_an_answer_gets_a_polite_closed(engine: Engine, clock: FakeClock) -> None:
    await invite_everyone(engine, clock)
    [invitation] = await sent_to(engine.db, "gus@example.com")
    gus = Chat(engine, email="gus@example.com")
    clock.now = FIRST_MONDAY + timedelta(days=5, hours=8)
    assert "1/4" in await gus.say("survey")
    clock.now = FIRST_MONDAY + timedelta(days=5, hours=9, minutes=1)
    said = await gus.press_in(choices_of(invitation), "5")
    assert "Thank you, but *Contact pulse* closed on" in said and "can't record" in said
    assert "closed on" in await gus.say("3")  # a typed answer in the flow: the same
    assert "You have no open survey right now" in await gus.say("survey")
    assert await count_of(engine.db, SurveyAnswer) == 0


async def test_someone_not_invited_cannot_answer(engine: Engine, clock: FakeClock) -> None:
    await invite_everyone(engine, clock)
    [invitation] = await sent_to(engine.db, "dana@example.com")
    said = await Chat(engine, email="alice@example.com").press_in(choices_of(invitation), "1")
    assert "not one you were invited to" in said
    assert await count_of(engine.db, SurveyAnswer) == 0


async def test_an_answer_pressed_in_the_middle_of_an_intake_leaves_the_intake_where_it_was(
    engine: Engine, clock: FakeClock
) -> None:
    await invite_everyone(engine, clock)
    [invitation] = await sent_to(engine.db, "dana@example.com")
    dana = Chat(engine, email="dana@example.com")
    await dana.say("new request")
    await dana.say("Invoice OCR for accounts payable")
    assert "describe it" in dana.text.lower()
    said = await dana.press_in(choices_of(invitation), "5")
    assert "Noted: 5." in said and "2/4" in said and "set aside" not in said
    said = await dana.press("order taker")
    assert "3/4" in said
    said = await dana.press("10")
    assert "type *survey* to answer it" in said  # the free answer waits: the intake is going on
    await dana.say("skip")  # the intake's description, not the survey
    assert "outcome" in dana.text.lower()
    assert await count_of(engine.db, SurveyAnswer) == 3
    for line in ("Invoices are booked without manual typing", "Project", "High", "1", "skip"):
        await dana.say(line)
    assert "DR-13" in await dana.say("submit")
    said = await dana.say("survey")
    assert "4/4" in said and "One thing IT should do differently" in said
    assert "last question" in await dana.say("Faster answers")


async def test_a_changed_definition_changes_future_runs_only(engine: Engine, clock: FakeClock) -> None:
    await invite_everyone(engine, clock)
    changed = parse_definition(PULSE.format(anonymous="true").replace("title: Contact pulse", "title: Winter pulse")
                               .replace("window_days: 5", "window_days: 4"))
    async with engine.db.transaction() as store:
        applied = [await store.surveys.apply(name=changed.name, title=changed.title, definition=changed.to_json(),
                                             fingerprint=changed.fingerprint(), now=clock()) for _ in range(2)]
    assert applied == ["changed", "unchanged"]
    [december] = await rows_of(engine.db, SurveyRun)
    assert december.definition["title"] == "Contact pulse"  # the run keeps what it started with
    assert "*Contact pulse*" in await Chat(engine, email="dana@example.com").say("survey")
    clock.now = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
    assert await scheduler(engine.db, clock).run_now("survey-invitations") == 3
    january = (await rows_of(engine.db, SurveyRun))[-1]
    assert january.period == "2027-01-04" and january.definition["title"] == "Winter pulse"
    assert january.closes_at == clock.now + timedelta(days=4)


async def test_the_terminal_shows_a_scale_as_the_numbers_to_type(engine: Engine, clock: FakeClock) -> None:
    from adapters.console.render import render

    await invite_everyone(engine, clock)
    [invitation] = await sent_to(engine.db, "dana@example.com")
    shown = render(invitation)
    assert "  1 · 2 · 3 · 4 · 5" in shown and "1. 1" not in shown
    dana = Chat(engine, email="dana@example.com")
    await dana.press_in(choices_of(invitation), "3")
    assert "  1. order taker\n  2. trusted advisor\n  3. strategic partner" in render(dana.replies[-1])
    await dana.say("2")
    assert "  0 · 1 · 2 · 3 · 4 · 5 · 6 · 7 · 8 · 9 · 10" in render(dana.replies[-1])


async def test_two_replicas_ticking_the_same_slot_invite_each_person_once(engine: Engine, clock: FakeClock) -> None:
    import asyncio

    await apply(engine.db, clock)
    clock.now = FIRST_MONDAY + timedelta(hours=9)
    first, second = scheduler(engine.db, clock), scheduler(engine.db, clock)
    done = await asyncio.gather(first.tick("survey-invitations", "UTC"), second.tick("survey-invitations", "UTC"))
    assert sorted(done) == [0, 3]
    assert len(await rows_of(engine.db, SurveyRun)) == 1
    assert await count_of(engine.db, OutboxMessage, OutboxMessage.kind == "survey-invitation") == 3


async def test_help_in_the_middle_of_a_survey_asks_the_same_question_again(engine: Engine, clock: FakeClock) -> None:
    await invite_everyone(engine, clock)
    eli = Chat(engine, email="eli@example.com")
    await eli.say("survey")
    await eli.say("2")
    said = await eli.say("help")
    assert "*survey* to answer" in said and "2/4" in said
    assert "3/4" in await eli.say("order taker")


async def test_one_scheduler_running_for_months_sees_newcomers_and_changed_definitions(
    engine: Engine, clock: FakeClock
) -> None:
    jobs = await invite_everyone(engine, clock)  # the same scheduler from here on, as in `brm-bot serve`
    [dana] = await rows_of(engine.db, Person, Person.email == "dana@example.com")
    async with engine.db.transaction() as store:
        await store.people.add(name="Nova Newcomer", email="nova@example.com", role="requester",
                               time_zone="Europe/Prague", partner_id=dana.partner_id, now=clock())
    clock.now += timedelta(minutes=15)
    assert await jobs.tick("survey-invitations", "UTC") == 1  # joined the same afternoon: the December run
    changed = parse_definition(PULSE.format(anonymous="true").replace("title: Contact pulse", "title: Winter pulse"))
    async with engine.db.transaction() as store:
        await store.surveys.apply(name=changed.name, title=changed.title, definition=changed.to_json(),
                                  fingerprint=changed.fingerprint(), now=clock())
    clock.now = datetime(2027, 1, 4, 9, 0, tzinfo=UTC)
    assert await jobs.tick("survey-invitations", "UTC") == 4  # Prague, Stockholm, Casablanca and Nova
    december, january = await sent_to(engine.db, "nova@example.com")
    assert "*Contact pulse*" in december.plain_text() and "*Winter pulse*" in january.plain_text()
    assert "Sat 09 Jan 10:00 CET" in january.plain_text()  # January's window, in Nova's zone
