"""Relationships, touchpoints and maturity in chat; health rules one by one with a set clock."""

from __future__ import annotations

from datetime import timedelta

from conversations.engine import Engine
from conversations.health import Level, judge, request_signal, touchpoint_signal
from storage.models import BusinessPartner, DemandRequest, MaturityChange, Relationship, Touchpoint
from tests.conftest import FakeClock
from tests.helpers import Chat, rows_of


def _rel(clock: FakeClock, days: int | None, cadence: int = 30) -> Relationship:
    last = None if days is None else clock() - timedelta(days=days)
    return Relationship(partner_id=1, brm_id=1, cadence_days=cadence, last_touchpoint_at=last)


def test_touchpoint_health_against_the_cadence(clock: FakeClock) -> None:
    assert touchpoint_signal(_rel(clock, 20), now=clock()) is None
    watch = touchpoint_signal(_rel(clock, 41), now=clock())
    assert watch is not None and watch.level == Level.WATCH
    assert watch.reason == "41 days since the last touchpoint; cadence 30"
    stalled = touchpoint_signal(_rel(clock, 61), now=clock())
    assert stalled is not None and stalled.level == Level.STALLED
    never = touchpoint_signal(_rel(clock, None), now=clock())
    assert never is not None and (never.level, never.reason) == (Level.STALLED, "no touchpoint recorded")


def test_a_request_stuck_in_one_status_past_its_limit(clock: FakeClock) -> None:
    request = DemandRequest(id=17, title="t", outcome="o", category="idea", urgency="low", requester_id=1,
                            status="shaping", source_platform="console", updated_at=clock() - timedelta(days=12))
    signal = request_signal(request, now=clock())
    assert signal is not None and signal.reason == "DR-17 in shaping for 12 days" and signal.item == "request:17"
    assert request_signal(request, now=clock(), limits={"shaping": 20}) is None
    health = judge(_rel(clock, 5), [request], now=clock())
    assert health.level == Level.WATCH and health.reasons == ("DR-17 in shaping for 12 days",)
    assert judge(_rel(clock, 5), [], now=clock()).line() == "healthy"


async def test_a_brm_lists_relationships_with_a_health_line(engine: Engine) -> None:
    alice = Chat(engine, email="alice@example.com")
    text = await alice.say("relationships")
    assert "Finance" in text and "People & Culture" in text and "Sales" not in text
    assert "DR-1 in shaping for" in text  # the demo's month-end accruals sit in shaping


async def test_a_touchpoint_in_one_line_updates_health(engine: Engine, clock: FakeClock) -> None:
    alice = Chat(engine, email="alice@example.com")
    text = await alice.say("met Finance today about the ERP roadmap")
    assert text == "Logged a meeting with Finance today about the ERP roadmap."
    (touchpoint,) = await rows_of(engine.db, Touchpoint)
    assert (touchpoint.kind, touchpoint.happened_on, touchpoint.note) == ("meeting", clock().date(), "the ERP roadmap")
    assert "call with People & Culture" in await alice.say("touchpoint call People & Culture yesterday")
    assert "future" in await alice.say("touchpoint call Finance 2030-01-01")
    assert "Which partner?" in await alice.say("met Sales today")  # not hers
    assert len(await rows_of(engine.db, Touchpoint)) == 2


async def test_a_touchpoint_through_the_form(engine: Engine) -> None:
    alice = Chat(engine, email="alice@example.com")
    await alice.say("touchpoint")
    form = alice.replies[0].blocks[0]
    assert getattr(form, "id", "") == "touchpoint:submit"
    finance = next(o.id for o in form.fields[0].options if o.label == "Finance")  # type: ignore[attr-defined]
    replies = await alice.submit("touchpoint:submit", {"partner": finance, "kind": "dance", "date": "", "note": ""})
    assert "Pick meeting" in str(replies[0].blocks[0])
    await alice.submit("touchpoint:submit", {"partner": finance, "kind": "workshop", "date": "2026-11-20", "note": "x"})
    assert alice.text.startswith("Logged a workshop with Finance 20 Nov 2026")


async def test_maturity_is_recorded_with_who_and_when(engine: Engine, clock: FakeClock) -> None:
    alice = Chat(engine, email="alice@example.com")
    text = await alice.say("maturity People & Culture trusted advisor")
    assert "People & Culture: ad hoc → *trusted advisor*" in text or "ad hoc → trusted advisor" in text
    (change,) = await rows_of(engine.db, MaturityChange)
    assert (change.from_stage, change.to_stage, change.at) == ("ad hoc", "trusted advisor", clock())
    partner = next(p for p in await rows_of(engine.db, BusinessPartner) if p.name == "People & Culture")
    assert partner.maturity == "trusted advisor"
    assert "not a stage" in await alice.say("maturity Finance best friend")


async def test_requesters_are_told_these_are_for_brms(engine: Engine) -> None:
    assert "for BRMs" in await Chat(engine).say("relationships")
