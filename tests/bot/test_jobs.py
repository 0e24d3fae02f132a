"""Scheduled jobs: nudges once per BRM and period, snoozes, draft reminders, local times, takeovers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.delivery import DeliveryWorker
from bot.jobs import Scheduler, default_jobs, period_of
from conversations.codec import reply_from_json
from conversations.engine import Engine
from conversations.messages import Choices
from storage.models import JobRun, OutboxMessage, Person, Snooze
from tests.bot.test_delivery import Recorder
from tests.conftest import FakeClock
from tests.helpers import Chat, rows_of


def _scheduler(engine: Engine, clock: FakeClock) -> Scheduler:
    return Scheduler(engine.db, default_jobs(), clock=clock)


async def _nudges(engine: Engine) -> list[OutboxMessage]:
    return [m for m in await rows_of(engine.db, OutboxMessage) if m.kind == "nudge"]


async def test_one_consolidated_nudge_per_brm_with_reasons_and_actions(engine: Engine, clock: FakeClock) -> None:
    scheduler = _scheduler(engine, clock)
    assert await scheduler.run("nudges", period_of(clock(), "Europe/Madrid"), tz="Europe/Madrid") == 1
    (nudge,) = await _nudges(engine)
    alice = next(p for p in await rows_of(engine.db, Person) if p.email == "alice@example.com")
    assert nudge.recipient_id == alice.id and nudge.period == "2026-11-23" and nudge.priority > 0
    reply = reply_from_json(nudge.payload)
    text = reply.plain_text()
    assert "DR-1 in shaping for" in text
    choices = [b for b in reply.blocks if isinstance(b, Choices)]
    assert {o.label for c in choices for o in c.options} >= {"Open DR-1", "Snooze 1 week", "Snooze 2 weeks"}
    # the same period again, by this or another replica: nothing new
    assert await scheduler.run("nudges", period_of(clock(), "Europe/Madrid"), tz="Europe/Madrid") == 0
    assert await scheduler.tick("nudges", "Europe/Madrid") == 0
    assert len(await _nudges(engine)) == 1


async def test_a_snoozed_item_stays_silent_until_the_snooze_ends(engine: Engine, clock: FakeClock) -> None:
    scheduler = _scheduler(engine, clock)
    await scheduler.run("nudges", "2026-11-23 Europe/Madrid", tz="Europe/Madrid")
    (nudge,) = await _nudges(engine)
    alice = Chat(engine, email="alice@example.com")
    choices = [b for b in reply_from_json(nudge.payload).blocks if isinstance(b, Choices)]
    for c in choices:
        assert "Snoozed until" in await alice.press_in(c, "Snooze 1 week")
        assert "reason" in (await alice.say("waiting for the CFO")).lower()
    (first, *_) = await rows_of(engine.db, Snooze)
    assert first.reason == "waiting for the CFO"
    clock.advance(timedelta(days=1))
    assert await scheduler.run("nudges", "2026-11-24 Europe/Madrid", tz="Europe/Madrid") == 0  # all snoozed
    clock.advance(timedelta(days=7))
    assert await scheduler.run("nudges", "2026-12-01 Europe/Madrid", tz="Europe/Madrid") == 1
    leader = await Chat(engine, email="priya@example.com").say("relationships")
    assert "Snoozed by their BRM" not in leader  # snoozes ended


async def test_a_nudge_button_checks_the_presser(engine: Engine, clock: FakeClock) -> None:
    await _scheduler(engine, clock).run("nudges", "2026-11-23 Europe/Madrid", tz="Europe/Madrid")
    (nudge,) = await _nudges(engine)
    choice = next(b for b in reply_from_json(nudge.payload).blocks if isinstance(b, Choices))
    ben = Chat(engine, email="ben@example.com")
    assert "not" in await ben.press_in(choice, "Snooze 2 weeks")
    assert await rows_of(engine.db, Snooze) == []


async def test_the_nudges_fire_at_nine_in_each_brms_zone(engine: Engine, clock: FakeClock) -> None:
    scheduler = _scheduler(engine, clock)
    assert await scheduler.zones(scheduler.jobs["nudges"]) == ["Europe/London", "Europe/Madrid"]
    madrid = scheduler.jobs["nudges"].schedule.trigger("Europe/Madrid")
    monday = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    assert madrid.get_next_fire_time(None, monday) == datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
    saturday = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)
    assert madrid.get_next_fire_time(None, saturday).astimezone(UTC) == datetime(2026, 11, 30, 8, 0, tzinfo=UTC)


async def test_a_brm_in_a_new_time_zone_gets_a_schedule_without_a_restart(engine: Engine, clock: FakeClock) -> None:
    scheduler = _scheduler(engine, clock)
    first = await scheduler.register()
    assert "nudges@Europe/Madrid" in first and "nudges@America/Chicago" not in first
    async with engine.db.transaction() as store:  # imported while the bot runs
        carla = await store.people.add(name="Carla Ruiz", email="carla@example.com", role="brm",
                                       time_zone="America/Chicago", now=clock())
        await store.directory.set_primary_brm(partner_id=3, brm_id=carla.id or 0, cadence_days=14, now=clock())
    assert "nudges@America/Chicago" in await scheduler.register()  # the next maintenance tick
    assert await scheduler.register() == [], "registered once"
    chicago = scheduler.aps.get_job("nudges@America/Chicago")
    assert chicago is not None and chicago.args == ("nudges", "America/Chicago")


async def test_a_run_missed_while_down_is_caught_up_once_at_start(engine: Engine, clock: FakeClock) -> None:
    clock.now = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)  # the process was down at 09:00 local
    scheduler = _scheduler(engine, clock)
    assert await scheduler.catch_up() >= 1
    assert len(await _nudges(engine)) == 2  # Alice (Madrid) and Ben (London)
    assert await _scheduler(engine, clock).catch_up() == 0  # a second replica starting: nothing twice


async def test_a_run_that_died_half_way_is_finished_by_the_next_tick(engine: Engine, clock: FakeClock) -> None:
    async with engine.db.transaction() as store:  # a replica claimed the run and died
        assert await store.jobs.claim(job="nudges", period="2026-11-23 Europe/Madrid", token="dead", now=clock(),
                                      lease_until=clock() + timedelta(minutes=10))
    scheduler = _scheduler(engine, clock)
    assert await scheduler.resume() == 0  # still leased
    clock.advance(timedelta(minutes=11))
    assert await scheduler.resume() == 1
    (run,) = await rows_of(engine.db, JobRun)
    assert run.finished_at == clock() and run.attempts == 2 and run.enqueued == 1


async def test_jobs_run_runs_now_whatever_the_claims_say_and_delivers(engine: Engine, clock: FakeClock) -> None:
    scheduler = _scheduler(engine, clock)
    assert await scheduler.run_now("nudges") == 2
    recorder = Recorder()
    assert await DeliveryWorker(engine.db, {}, clock=clock, fallback=recorder).drain() == 2
    assert await scheduler.run_now("nudges") == 0  # already nudged today: not twice
    listing = {name: (last, upcoming) for name, _, last, upcoming in await scheduler.listing()}
    assert listing["nudges"][0] == clock() and listing["nudges"][1] is not None


async def test_nothing_to_say_means_no_message(engine: Engine, clock: FakeClock) -> None:
    alice = Chat(engine, email="alice@example.com")
    await alice.say("met Finance today")
    await alice.say("met People & Culture today")
    scheduler = _scheduler(engine, clock)
    await scheduler.run("nudges", "2026-11-23 Europe/Madrid", tz="Europe/Madrid")
    nudges = await _nudges(engine)
    assert all("Finance" not in reply_from_json(n.payload).plain_text() or "DR-" in
               reply_from_json(n.payload).plain_text() for n in nudges)


async def test_a_draft_left_half_way_gets_one_reminder_the_next_working_day(engine: Engine, clock: FakeClock) -> None:
    dana = Chat(engine)  # America/New_York
    clock.now = datetime(2026, 11, 23, 20, 0, tzinfo=UTC)  # Monday 15:00 in New York
    await dana.say("new request")
    await dana.say("Invoice OCR for accounts payable")
    clock.now = datetime(2026, 11, 24, 14, 30, tzinfo=UTC)  # Tuesday 09:30 in New York
    scheduler = _scheduler(engine, clock)
    assert await scheduler.tick("draft-reminders", "America/New_York") == 1
    assert await scheduler.tick("draft-reminders", "America/New_York") == 0
    (reminder,) = [m for m in await rows_of(engine.db, OutboxMessage) if m.kind == "draft-reminder"]
    choices = next(b for b in reply_from_json(reminder.payload).blocks if isinstance(b, Choices))
    assert "Invoice OCR" in reply_from_json(reminder.payload).plain_text()
    text = await dana.press_in(choices, "Continue")
    assert "where you left off" in text
    assert "Discarded" in await dana.press_in(choices, "Discard")
    assert "no longer waiting" in await dana.press_in(choices, "Continue")
