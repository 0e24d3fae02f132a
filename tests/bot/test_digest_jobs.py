"""The digest and value-checks jobs: once a week per leader across replicas; value asked on time, once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bot.jobs import Scheduler, default_jobs
from conversations.codec import reply_from_json
from conversations.engine import Engine
from conversations.messages import Choices
from storage.models import DemandRequest, OutboxMessage, Person, Status, StatusChange, ValueCheck
from tests.conftest import FakeClock
from tests.helpers import Chat, rows_of

KOLKATA = "Asia/Kolkata"  # Priya, the demo's leader


async def _sent(engine: Engine, kind: str) -> list[OutboxMessage]:
    return [m for m in await rows_of(engine.db, OutboxMessage) if m.kind == kind]


async def test_the_digest_goes_to_each_leader_once_a_week_with_two_replicas(engine: Engine, clock: FakeClock) -> None:
    jobs = default_jobs(digest="mon-fri 08:00")  # fires daily: the week still sends once
    first, second = Scheduler(engine.db, jobs, clock=clock), Scheduler(engine.db, jobs, clock=clock)
    monday = datetime(2026, 11, 23, 2, 30, tzinfo=UTC)  # 08:00 in Kolkata
    clock.now = monday
    assert sum([await first.tick("digest", KOLKATA, monday), await second.tick("digest", KOLKATA, monday)]) == 1
    (digest,) = await _sent(engine, "digest")
    priya = next(p for p in await rows_of(engine.db, Person) if p.email == "priya@example.com")
    assert digest.recipient_id == priya.id and digest.period == "2026-W47" and digest.priority > 0
    assert "Weekly digest, 16 Nov – 22 Nov 2026 (2026-W47)" in reply_from_json(digest.payload).plain_text()
    for day in range(1, 5):  # Tuesday to Friday: the same ISO week
        clock.now = monday + timedelta(days=day)
        assert await first.tick("digest", KOLKATA, clock.now) == 0
        assert await second.tick("digest", KOLKATA, clock.now) == 0
    clock.now = monday + timedelta(days=7)
    assert await second.tick("digest", KOLKATA, clock.now) + await first.tick("digest", KOLKATA, clock.now) == 1
    assert [m.period for m in await _sent(engine, "digest")] == ["2026-W47", "2026-W48"]
    assert await first.run_now("digest") == 0  # a forced run finds this week's digest queued already


async def test_with_a_leadership_channel_the_digest_goes_there_once_a_week(engine: Engine, clock: FakeClock) -> None:
    async with engine.db.transaction() as store:  # a second leader, in the same zone
        await store.people.add(name="Lee Chen", email="lee@example.com", role="leader", time_zone=KOLKATA,
                               now=clock())
    jobs = default_jobs(leadership_channel="slack:C0LEADERS")
    first, second = Scheduler(engine.db, jobs, clock=clock), Scheduler(engine.db, jobs, clock=clock)
    monday = datetime(2026, 11, 23, 2, 30, tzinfo=UTC)
    clock.now = monday
    assert await first.tick("digest", KOLKATA, monday) + await second.tick("digest", KOLKATA, monday) == 1
    (digest,) = await _sent(engine, "digest")
    assert (digest.channel, digest.recipient_id, digest.period) == ("slack:C0LEADERS", None, "2026-W47")
    assert "Weekly digest, 16 Nov – 22 Nov 2026 (2026-W47)" in reply_from_json(digest.payload).plain_text()
    assert await first.run_now("digest") == 0, "not once per leader: once for the channel"


async def test_the_digest_fires_monday_at_eight_in_each_leaders_zone(engine: Engine, clock: FakeClock) -> None:
    scheduler = Scheduler(engine.db, default_jobs(), clock=clock)
    job = scheduler.jobs["digest"]
    assert await scheduler.zones(job) == [KOLKATA]  # leaders only: no BRM, requester or admin
    fire = job.schedule.trigger(KOLKATA).get_next_fire_time(None, datetime(2026, 11, 24, tzinfo=UTC))
    assert fire is not None and fire.astimezone(UTC) == datetime(2026, 11, 30, 2, 30, tzinfo=UTC)


async def _deliver_dr6(engine: Engine) -> DemandRequest:
    """DR-6 (in delivery, requested by Eli) moved to delivered by its BRM, Ben."""
    ben = Chat(engine, email="ben@example.com")
    assert "moved from in delivery to delivered" in await ben.say("move DR-6 to delivered")
    async with engine.db.transaction() as store:
        request = await store.requests.get(6)
    assert request is not None and request.status == Status.DELIVERED.value
    return request


async def test_value_is_asked_after_the_delay_then_reminded_once(engine: Engine, clock: FakeClock) -> None:
    request = await _deliver_dr6(engine)
    jobs = default_jobs(value_checks="* 10:00", value_check_days=30, value_reminder_days=7)
    first, second = Scheduler(engine.db, jobs, clock=clock), Scheduler(engine.db, jobs, clock=clock)

    async def dr6_after_both_replicas() -> list[str]:
        day = clock.now.date().isoformat()
        await first.run("value-checks", f"{day} UTC")
        await second.run("value-checks", f"{day} UTC")
        await first.run("value-checks", f"{day} retry", tz="UTC")  # a retry under another period: no effect
        return [m.period for m in await _sent(engine, "value-check") if m.subject == "DR-6"]

    assert await dr6_after_both_replicas() == []
    clock.advance(timedelta(days=29))
    assert await dr6_after_both_replicas() == []  # not yet: the job runs once a day
    clock.advance(timedelta(days=1))
    assert await dr6_after_both_replicas() == ["ask"]
    question = next(m for m in await _sent(engine, "value-check") if m.subject == "DR-6")
    eli = next(p for p in await rows_of(engine.db, Person) if p.email == "eli@example.com")
    assert question.recipient_id == eli.id
    text = reply_from_json(question.payload).plain_text()
    assert f"Did DR-6 “{request.title}” deliver what you expected: {request.outcome}?" in text
    assert [o.label for b in reply_from_json(question.payload).blocks if isinstance(b, Choices)
            for o in b.options] == ["Yes", "Partly", "No"]
    clock.advance(timedelta(days=3))
    assert await dr6_after_both_replicas() == ["ask"]  # no second question
    clock.advance(timedelta(days=4))
    assert await dr6_after_both_replicas() == ["ask", "reminder"]  # the one reminder
    clock.advance(timedelta(days=7))
    assert await dr6_after_both_replicas() == ["ask", "reminder"]  # and no more
    checks = {c.request_id: c for c in await rows_of(engine.db, ValueCheck)}
    assert checks[6].reminded_at is not None and checks[6].answer is None


async def _asked(engine: Engine, clock: FakeClock) -> Choices:
    await _deliver_dr6(engine)
    clock.advance(timedelta(days=31))
    await Scheduler(engine.db, default_jobs(), clock=clock).run_now("value-checks")
    question = next(m for m in await _sent(engine, "value-check") if m.subject == "DR-6")
    return next(b for b in reply_from_json(question.payload).blocks if isinstance(b, Choices))


async def test_yes_moves_the_request_to_value_realized(engine: Engine, clock: FakeClock) -> None:
    choices = await _asked(engine, clock)
    ben = Chat(engine, email="ben@example.com")
    assert "not about one of your requests" in await ben.press_in(choices, "Yes")
    eli = Chat(engine, email="eli@example.com")
    assert "DR-6 is now value realized" in await eli.press_in(choices, "Yes")
    assert "Thank you" in await eli.say("Quotes over 500 lines work now")
    assert "answered about DR-6 already" in await eli.press_in(choices, "No")
    async with engine.db.transaction() as store:
        request = await store.requests.get(6)
        history = await store.requests.history(6)
    assert request is not None and request.status == Status.VALUE_REALIZED.value
    last: StatusChange = history[-1]
    people = {p.id: p.email for p in await rows_of(engine.db, Person)}
    assert (last.to_status, people[last.by_person_id], last.at) == ("value realized", "eli@example.com", clock())
    (check,) = [c for c in await rows_of(engine.db, ValueCheck) if c.request_id == 6]
    assert (check.answer, check.comment) == ("yes", "Quotes over 500 lines work now")


async def test_partly_or_no_tells_the_brm_and_shows_in_the_digest(engine: Engine, clock: FakeClock) -> None:
    choices = await _asked(engine, clock)
    eli = Chat(engine, email="eli@example.com")
    assert "BRM will follow up" in await eli.press_in(choices, "Partly")
    assert "Kept your comment" in await eli.say("Large orders still time out")
    feedback = await _sent(engine, "value-feedback")
    ben = next(p for p in await rows_of(engine.db, Person) if p.email == "ben@example.com")
    assert {m.recipient_id for m in feedback} == {ben.id} and [m.period for m in feedback] == ["answer", "comment"]
    assert "delivered only partly" in reply_from_json(feedback[0].payload).plain_text()
    assert "Large orders still time out" in reply_from_json(feedback[1].payload).plain_text()
    async with engine.db.transaction() as store:
        request = await store.requests.get(6)
    assert request is not None and request.status == Status.DELIVERED.value
    priya = Chat(engine, email="priya@example.com")
    clock.advance(timedelta(days=7))
    await Scheduler(engine.db, default_jobs(), clock=clock).run_now("digest")
    (digest,) = await _sent(engine, "digest")
    text = reply_from_json(digest.payload).plain_text()
    assert "the requester said partly: “Large orders still time out”" in text
    assert "DR-6" in text and priya.engine is engine


async def test_no_answer_after_the_reminder_shows_as_unconfirmed(engine: Engine, clock: FakeClock) -> None:
    await _asked(engine, clock)
    jobs = default_jobs()
    scheduler = Scheduler(engine.db, jobs, clock=clock)
    clock.advance(timedelta(days=8))
    await scheduler.run_now("value-checks")
    clock.advance(timedelta(days=7))
    await scheduler.run_now("digest")
    (digest,) = await _sent(engine, "digest")
    text = reply_from_json(digest.payload).plain_text()
    assert "*Delivered, value not yet confirmed:* 2" in text and "2 no answer after a reminder" in text
    assert "DR-6 Quote tool crashes on large orders (Sales & Marketing): no answer after a reminder" in text
