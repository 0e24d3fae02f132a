"""Pulse results in chat, "you said, we did", and the pulse in relationship health."""

from __future__ import annotations

from datetime import timedelta

from bot.jobs import build_nudge
from conversations.engine import Engine
from conversations.flows.pulse import spark, trend_text
from conversations.health import Level, judge, pulse_signal
from storage.models import OutboxMessage, Person, Relationship, Role, SurveyFollowUp
from storage.survey_results import Satisfaction
from tests.conftest import FakeClock
from tests.helpers import Chat, count_of, rows_of
from tests.survey_data import load_pulse

ALICE, BEN, PRIYA = "alice@example.com", "ben@example.com", "priya@example.com"
HEARD = "Tickets wait too long and nobody says why."
DOING = "A weekly ticket review with your team, from January."


async def test_leaders_see_every_partner_with_a_trend(engine: Engine, clock: FakeClock) -> None:
    await load_pulse(engine.db, now=clock())
    text = await Chat(engine, email=PRIYA).say("pulse")
    assert "Partner pulse · 2026-11 (closed)" in text
    assert "Overall (all partners): 12 of 19 answered (63%) · satisfaction 4.1 ▆▆▅ 3.4 · NPS +25" in text
    assert "• *Finance*: 5 of 6 answered (83%) · satisfaction 4.2 ▇▆▅ 3.0 · NPS +20" in text
    assert "• *Operations*: 4 of 5 answered (80%) · satisfaction 4.0 ▆▇▇ 4.5 · NPS +75" in text
    assert "• *Sales & Marketing*: 5 invited, fewer than 3 answers" in text
    assert "• *People & Culture*: 3 invited, fewer than 3 answers" in text


async def test_a_brm_sees_their_own_partners(engine: Engine, clock: FakeClock) -> None:
    await load_pulse(engine.db, now=clock())
    text = await Chat(engine, email=ALICE).say("pulse")
    assert "*Finance*" in text and "*People & Culture*" in text
    assert "Sales" not in text and "Operations" not in text


async def test_one_partner_question_by_question(engine: Engine, clock: FakeClock) -> None:
    await load_pulse(engine.db, now=clock())
    alice = Chat(engine, email=ALICE)
    text = await alice.say("pulse finance")
    assert "Partner pulse · Finance · 2026-11 (closed)" in text
    assert "5 of 6 answered (83%)" in text
    assert "How satisfied are you with IT's services? 3.0 of 5 (−1.0 since 2026-10) · trend 4.2 ▇▆▅ 3.0" in text
    assert "order taker 3 · trusted advisor 2 · strategic partner 0" in text
    assert "NPS +20 (+20 since 2026-10)" in text
    assert "“Answer tickets sooner”" in text and "“Faster laptops”" in text
    assert "You said, we did: not yet. Type *follow up Finance*" in text
    refused = await alice.say("pulse Sales")
    assert "is not one of your partners (Finance, People & Culture)" in refused


async def test_a_group_under_the_threshold_shows_nothing_in_chat(engine: Engine, clock: FakeClock) -> None:
    await load_pulse(engine.db, now=clock())
    priya = Chat(engine, email=PRIYA)
    text = await priya.say("pulse Sales")
    assert "5 invited, fewer than 3 answers: no figures show" in text
    assert "Nothing works" not in text and "of 5" not in text and "NPS" not in text
    operations = await priya.say("pulse Operations")
    assert "One thing IT should do differently fewer than 3 answers" in operations
    assert "Keep it up" not in operations and "More workshops" not in operations


async def test_requesters_are_refused_kindly(engine: Engine, clock: FakeClock) -> None:
    await load_pulse(engine.db, now=clock())
    text = await Chat(engine).say("pulse")
    assert text.startswith("Pulse results are for BRMs and leaders")
    assert "follow up" not in (await Chat(engine).say("help")).casefold()
    assert "from the partner's BRM" in await Chat(engine).say("follow up Finance")


async def test_no_survey_yet(engine: Engine) -> None:
    assert "No pulse survey has run yet" in await Chat(engine, email=PRIYA).say("pulse")


async def test_you_said_we_did_goes_once_to_everyone_invited(engine: Engine, clock: FakeClock) -> None:
    data = await load_pulse(engine.db, now=clock())
    alice = Chat(engine, email=ALICE)
    text = await alice.say("follow up Finance")
    assert "after the Partner pulse (2026-11): it goes to the 6 people of Finance who were invited" in text
    assert "a little short" in await alice.say("short")
    assert "what we will do" in (await alice.say(HEARD)).casefold()
    await alice.say(DOING)
    assert "This is what they will read" in alice.text and HEARD in alice.text
    assert await count_of(engine.db, OutboxMessage) == 0, "nothing goes before Send"
    sent = await alice.press("Send")
    assert "Sent to the 6 people of Finance invited to the Partner pulse (2026-11)" in sent

    messages = await rows_of(engine.db, OutboxMessage, OutboxMessage.kind == "survey-follow-up")
    assert sorted(m.recipient_id for m in messages) == sorted(data.invited[("2026-11", "Finance")])
    assert {m.subject for m in messages} == {f"run:{data.runs['2026-11']}:partner:{data.partners['Finance']}"}
    body = str(messages[0].payload)
    assert "You said, we did: Partner pulse" in body and HEARD in body and DOING in body
    (record,) = await rows_of(engine.db, SurveyFollowUp)
    assert (record.run_id, record.partner_id) == (data.runs["2026-11"], data.partners["Finance"])

    again = await alice.say("follow up Finance")
    assert "Finance already had its follow-up to the Partner pulse (2026-11): sent 23 Nov 2026" in again
    assert "by Alice Moreno" in again and HEARD in again and DOING in again
    assert await count_of(engine.db, OutboxMessage) == 6
    assert "You said, we did: sent" in await alice.say("pulse Finance")


async def test_follow_up_through_the_form(engine: Engine, clock: FakeClock) -> None:
    data = await load_pulse(engine.db, now=clock())
    alice = Chat(engine, email=ALICE)
    await alice.say("follow up")
    form = alice.replies[0].form
    assert form is not None and form.id == "followup:submit"
    finance = str(data.partners["Finance"])
    replies = await alice.submit("followup:submit", {"partner": finance, "heard": "", "doing": DOING})
    refused = replies[0].form
    assert refused is not None and "heard" in refused.errors
    assert await count_of(engine.db, OutboxMessage) == 0
    await alice.submit("followup:submit", {"partner": finance, "heard": HEARD, "doing": DOING})
    assert "Sent to the 6 people of Finance" in alice.text
    people = str(data.partners["People & Culture"])
    await alice.submit("followup:submit", {"partner": people, "heard": HEARD, "doing": DOING})
    assert "Sent to the 3 people of People & Culture" in alice.text, "hidden results still get a follow-up"
    await alice.submit("followup:submit", {"partner": finance, "heard": HEARD, "doing": DOING})
    assert "already had its follow-up" in alice.text
    assert await count_of(engine.db, OutboxMessage) == 9


async def test_only_the_partners_brm_or_an_admin_follows_up(engine: Engine, clock: FakeClock) -> None:
    await load_pulse(engine.db, now=clock())
    assert "is not one of your partners" in await Chat(engine, email=BEN).say("follow up Finance")
    assert "from the partner's BRM" in await Chat(engine, email=PRIYA).say("follow up Finance")
    async with engine.db.transaction() as store:
        await store.add(Person(name="Ada Admin", email="ada@example.com", role=Role.ADMIN, created_at=clock()))
    ada = Chat(engine, email="ada@example.com")
    assert "it goes to the 5 people of Operations" in await ada.say("follow up Operations")
    assert "Cancelled your follow-up to a pulse" in await ada.say("cancel")
    assert await count_of(engine.db, SurveyFollowUp) == 0


async def test_no_follow_up_before_a_run_closes(engine: Engine, clock: FakeClock) -> None:
    clock.now = clock.now.replace(month=11, day=4)  # November's run is open until the 7th
    await load_pulse(engine.db, now=clock())
    text = await Chat(engine, email=ALICE).say("follow up People & Culture")
    assert "No pulse run that invited People & Culture has closed yet" in text


# --- the pulse in relationship health ----------------------------------------------------------------


def test_the_pulse_rule_with_fixed_figures() -> None:
    fell = pulse_signal(3, Satisfaction(current=3.0, previous=4.2))
    assert fell is not None and (fell.level, fell.reason, fell.item) == (
        Level.WATCH, "pulse satisfaction fell from 4.2 to 3.0", "partner:3")
    assert pulse_signal(3, Satisfaction(current=3.3, previous=4.2)) is None, "0.9 is not a point"
    low = pulse_signal(3, Satisfaction(current=2.6, previous=None))
    assert low is not None and low.reason == "pulse satisfaction 2.6, below 3.0"
    assert pulse_signal(3, Satisfaction(current=3.0, previous=3.4)) is None
    assert pulse_signal(3, Satisfaction(current=None, previous=4.5)) is None, "a hidden group says nothing"
    assert pulse_signal(3, None) is None
    fresh = Relationship(partner_id=3, brm_id=1, cadence_days=30)
    now = fresh.created_at
    fresh.last_touchpoint_at = now - timedelta(days=1)
    health = judge(fresh, [], now=now, pulse=Satisfaction(current=2.0, previous=2.2))
    assert health.level == Level.WATCH and health.reasons == ("pulse satisfaction 2.0, below 3.0",)
    assert judge(fresh, [], now=now, pulse=Satisfaction(current=4.0, previous=4.1)).level == Level.HEALTHY


async def test_a_falling_pulse_shows_in_relationships_and_the_nudge(engine: Engine, clock: FakeClock) -> None:
    await load_pulse(engine.db, now=clock())
    text = await Chat(engine, email=ALICE).say("relationships")
    finance = next(line for line in text.splitlines() if "*Finance*" in line)
    assert "pulse satisfaction fell from 4.0 to 3.0" in finance
    people = next(line for line in text.splitlines() if "*People & Culture*" in line)
    assert "pulse" not in people, "one answer from People & Culture: under the threshold, no signal"
    async with engine.db.transaction() as store:
        alice = await store.people.by_email(ALICE)
        assert alice is not None
        assert await build_nudge(store, alice, clock(), "2026-11-23") == 1
    (nudge,) = await rows_of(engine.db, OutboxMessage, OutboxMessage.kind == "nudge")
    assert "*Finance* (watch): pulse satisfaction fell from 4.0 to 3.0" in str(nudge.payload)


def test_the_trend_reads_at_a_glance() -> None:
    assert spark([1.0, 3.0, 5.0]) == "▁▅█"
    assert trend_text([3.4, 3.6, 3.9, 4.1]) == "3.4 ▅▆▆▆ 4.1"
    assert trend_text([None, 3.0, None, 4.0]) == "3.0 ·▅·▆ 4.0"
    assert trend_text([4.0]) == "4.0" and trend_text([None, 4.0]) == "4.0" and trend_text([]) == ""
