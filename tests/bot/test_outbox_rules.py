"""The outbox's rules: lease takeover, 429s, the delivery calendar, the weekly budget."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.delivery import DeliveryHours, DeliveryWorker
from conversations.engine import Engine
from conversations.ports import DeliveryError
from storage.models import OutboxMessage, OutboxStatus, Person
from tests.bot.test_delivery import Recorder
from tests.conftest import FakeClock
from tests.helpers import rows_of

HOURS = DeliveryHours.parse("Mon-Fri 08:00-18:00")


def test_the_calendar_is_read_in_the_recipients_zone() -> None:
    assert HOURS is not None
    madrid = ZoneInfo("Europe/Madrid")
    monday_10 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 10:00 in Madrid
    assert HOURS.next_open(monday_10, madrid) is None
    friday_evening = datetime(2026, 11, 27, 18, 30, tzinfo=UTC)  # 19:30 in Madrid
    assert HOURS.next_open(friday_evening, madrid) == datetime(2026, 11, 30, 7, 0, tzinfo=UTC)
    assert DeliveryHours.parse("always") is None
    with pytest.raises(ValueError, match="not like"):
        DeliveryHours.parse("weekdays")


async def _queue(engine: Engine, clock: FakeClock, n: int, *, email: str = "alice@example.com") -> int:
    person = next(p for p in await rows_of(engine.db, Person) if p.email == email)
    assert person.id is not None
    async with engine.db.transaction() as store:
        for i in range(n):
            await store.outbox.enqueue(kind="nudge", subject=f"s{i}", recipient_id=person.id, period="p",
                                       payload={"blocks": [{"type": "text", "text": f"m{i}"}]}, now=clock(),
                                       priority=2)
    return person.id


async def test_outside_hours_a_message_waits_without_using_an_attempt(engine: Engine, clock: FakeClock) -> None:
    clock.now = datetime(2026, 11, 28, 10, 0, tzinfo=UTC)  # Saturday
    await _queue(engine, clock, 1)
    recorder = Recorder()
    worker = DeliveryWorker(engine.db, {}, clock=clock, fallback=recorder, hours=HOURS)
    assert await worker.run_once() == 0
    (message,) = await rows_of(engine.db, OutboxMessage)
    assert (message.status, message.attempts) == ("pending", 0)
    assert message.held_reason and "outside delivery hours" in message.held_reason
    assert message.next_attempt_at == datetime(2026, 11, 30, 7, 0, tzinfo=UTC)  # Monday 08:00 Madrid
    clock.now = message.next_attempt_at
    assert await worker.run_once() == 1 and len(recorder.sent) == 1


async def test_over_the_weekly_budget_messages_are_held_until_next_week(engine: Engine, clock: FakeClock) -> None:
    await _queue(engine, clock, 7)
    recorder = Recorder()
    worker = DeliveryWorker(engine.db, {}, clock=clock, fallback=recorder, weekly_budget=5)
    assert await worker.run_once() == 5
    held = [m for m in await rows_of(engine.db, OutboxMessage) if m.status == OutboxStatus.HELD]
    assert len(held) == 2 and all("weekly budget" in (m.held_reason or "") for m in held)
    async with engine.db.transaction() as store:
        assert {m.id for m in await store.outbox.waiting()} == {m.id for m in held}
    clock.now = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)  # next Monday
    assert await worker.run_once() == 2


async def test_a_worker_whose_lease_was_taken_over_cannot_mark_the_message(engine: Engine, clock: FakeClock) -> None:
    await _queue(engine, clock, 1)
    async with engine.db.transaction() as store:
        (slow,) = await store.outbox.claim(now=clock(), lease_until=clock() + timedelta(minutes=5))
    clock.advance(timedelta(minutes=6))
    recorder = Recorder()
    assert await DeliveryWorker(engine.db, {}, clock=clock, fallback=recorder).run_once() == 1
    assert slow.id is not None
    async with engine.db.transaction() as store:  # the slow worker comes back and tries to record a failure
        assert not await store.outbox.finish(slow.id, token=slow.lease_token, status=OutboxStatus.FAILED,
                                             now=clock(), error="late")
    (message,) = await rows_of(engine.db, OutboxMessage)
    assert (message.status, message.attempts, message.last_error) == ("sent", 2, None)


async def test_a_429_waits_exactly_what_the_platform_asked(engine: Engine, clock: FakeClock) -> None:
    await _queue(engine, clock, 2)
    recorder = Recorder(failures=[DeliveryError("ratelimited", retry_after=30)])
    worker = DeliveryWorker(engine.db, {}, clock=clock, fallback=recorder)
    assert await worker.run_once() == 0  # the second waits out the pause without being tried
    first, second = await rows_of(engine.db, OutboxMessage)
    assert first.status == "pending"
    assert timedelta(seconds=30) <= first.next_attempt_at - clock() < timedelta(seconds=31)
    assert second.attempts == 0 and second.next_attempt_at == clock() + timedelta(seconds=30)
    clock.advance(timedelta(seconds=31))
    assert await worker.run_once() == 2
