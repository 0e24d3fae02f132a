"""The weekly leader digest: its content on a fixed data set, its scope, its rendering and its buttons."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from adapters.console.render import render as console_render
from adapters.slack.render import MESSAGE_BLOCKS, SECTION_CHARS
from adapters.slack.render import render as slack_render
from adapters.teams.render import render as teams_render
from conversations.codec import reply_from_json
from conversations.digest import Week, gather, render, scope_for
from conversations.engine import Engine
from conversations.messages import Choices, Reply
from storage.db import Database
from storage.models import (
    OutboxMessage,
    Person,
    Snooze,
    Status,
    Survey,
    SurveyAnswer,
    SurveyFollowUp,
    SurveyRun,
    ValueCheck,
)
from storage.store import NewRequest, Store
from tests.conftest import FakeClock
from tests.helpers import Chat, rows_of

GOLDEN = Path(__file__).with_name("digest_golden.txt")
KOLKATA = ZoneInfo("Asia/Kolkata")
TEAMS_CARD_BYTES = 28_000


async def _person(store: Store, email: str) -> Person:
    person = await store.people.by_email(email)
    assert person is not None
    return person


async def _file(store: Store, *, title: str, category: str, urgency: str, requester: Person, partner_id: int,
                at: datetime) -> int:
    request = await store.requests.create(
        NewRequest(title=title, outcome=f"{title} done", category=category, urgency=urgency, partner_id=partner_id,
                   requester_id=requester.id or 0, source_platform="console"),
        now=at,
    )
    return request.id or 0


async def fixed_set(db: Database, now: datetime) -> None:
    """The demo organisation plus a week of demand, a pulse, snoozes, maturity and a value answer."""
    async with db.transaction() as store:
        partners = {p.name: p.id or 0 for p in await store.partners.all()}
        dana, eli, fatima = [await _person(store, e) for e in ("dana@example.com", "eli@example.com",
                                                                 "fatima@example.com")]
        alice = await _person(store, "alice@example.com")
        # look-alike demand of three partners, filed last week
        await _file(store, title="Invoice automation", category="project", urgency="high", requester=dana,
                    partner_id=partners["Finance"], at=now - timedelta(days=5))
        await _file(store, title="Invoice automation for suppliers", category="idea", urgency="medium",
                    requester=fatima, partner_id=partners["Operations"], at=now - timedelta(days=4))
        await _file(store, title="invoice automation", category="service request", urgency="low", requester=eli,
                    partner_id=partners["Sales & Marketing"], at=now - timedelta(days=3))
        # Sales uses its BRM for tactical work only
        for n, title in enumerate(("Reset VPN tokens", "Laptop for new rep", "Fix CRM export", "Printer on floor 3",
                                   "Phone line for desk 12", "Shared mailbox for events")):
            await _file(store, title=title, category="service request" if n % 2 else "problem", urgency="low",
                        requester=eli, partner_id=partners["Sales & Marketing"], at=now - timedelta(days=20 + n))
        # Finance's stage has not moved since May; Operations moved last month
        finance = await store.partners.get(partners["Finance"])
        operations = await store.partners.get(partners["Operations"])
        assert finance is not None and operations is not None
        await store.relationships.set_maturity(finance, stage="trusted advisor", by_person_id=alice.id or 0,
                                               now=now - timedelta(days=200))
        await store.relationships.set_maturity(operations, stage="strategic partner", by_person_id=alice.id or 0,
                                               now=now - timedelta(days=30))
        snooze = Snooze(brm_id=alice.id or 0, item="request:1", until=now + timedelta(days=5),
                        reason="waiting for the CFO", created_at=now - timedelta(days=2))
        await store.add(snooze)
        # a monthly pulse: Finance answers (3 a run), Sales too few to show, Operations from September
        definition = {"title": "Partner pulse", "min_group": 3,
                      "questions": [{"id": "satisfaction", "type": "rating", "text": "How satisfied are you?"}]}
        survey = Survey(name="partner-pulse", title="Partner pulse", definition=definition, fingerprint="x",
                        created_at=now - timedelta(days=120), updated_at=now - timedelta(days=120))
        await store.add(survey)
        scores = {"Finance": ((3, 3, 4), (4, 3, 4), (4, 4, 4), (5, 4, 4)),
                  "Sales & Marketing": ((2, 2), (3,), (2, 1), (1, 2)),
                  "Operations": ((), (), (4, 4, 3, 4), (2, 3, 3, 3))}
        for month in range(4):
            opens = now - timedelta(days=30 * (4 - month) - 2)
            run = SurveyRun(survey_id=survey.id or 0, period=f"2026-{8 + month:02d}", definition=definition,
                            opens_at=opens, closes_at=opens + timedelta(days=5), closed_at=opens + timedelta(days=5))
            await store.add(run)
            for name, by_month in scores.items():
                for n, value in enumerate(by_month[month]):
                    await store.add(SurveyAnswer(run_id=run.id or 0, partner_id=partners[name],
                                                 question_id="satisfaction", kind="rating",
                                                 response_id=f"{name}-{month}-{n}", value=value))
            if month == 3:
                await store.add(SurveyFollowUp(run_id=run.id or 0, partner_id=partners["Finance"],
                                               by_person_id=alice.id or 0, text="We heard you: faster closes.",
                                               created_at=opens + timedelta(days=8)))
        # DR-3 was delivered; its requester said "partly"
        await store.add(ValueCheck(request_id=3, requester_id=dana.id or 0, asked_at=now - timedelta(days=60),
                                   answer="partly", answered_at=now - timedelta(days=55),
                                   comment="Duplicates are down, but not gone"))


async def _digest(db: Database, email: str, now: datetime, week: Week | None = None) -> Reply:
    async with db.transaction() as store:
        person = await _person(store, email)
        scope = scope_for(person)
        assert scope is not None
        tz = ZoneInfo(person.time_zone)
        chosen = week or Week.last_complete(now, tz)
        digest = await gather(store, scope, week=chosen, tz=tz, now=now, whose=f"Digest for {person.name}")
    return render(digest, tz=tz, now=now)


async def test_the_digest_of_a_fixed_week_reads_as_written(demo_db: Database, clock: FakeClock) -> None:
    await fixed_set(demo_db, clock())
    text = console_render(await _digest(demo_db, "priya@example.com", clock()))
    if not GOLDEN.exists():  # pragma: no cover - a new golden file is written, read by a person, committed
        GOLDEN.write_text(text + "\n", encoding="utf-8")
        raise AssertionError(f"wrote {GOLDEN.name}: read it, and commit it if it is right")
    assert text + "\n" == GOLDEN.read_text(encoding="utf-8")


async def test_connected_demand_names_the_partners_and_requests(demo_db: Database, clock: FakeClock) -> None:
    await fixed_set(demo_db, clock())
    text = (await _digest(demo_db, "priya@example.com", clock())).plain_text()
    assert "Finance, Operations and Sales & Marketing each asked for invoice automation: DR-13, DR-14, DR-15" in text


async def test_a_brm_preview_sees_only_their_partners(demo_db: Database, clock: FakeClock) -> None:
    await fixed_set(demo_db, clock())
    leader = (await _digest(demo_db, "priya@example.com", clock())).plain_text()
    alice = (await _digest(demo_db, "alice@example.com", clock())).plain_text()  # Finance, People & Culture
    assert "Sales & Marketing" in leader and "Operations" in leader
    assert "Sales & Marketing:" not in alice and "Operations (" not in alice and "Operations:" not in alice
    assert "Finance" in alice and "People & Culture" in alice
    assert "DR-5" in leader and "DR-5" not in alice  # Sales' stuck approved request
    async with demo_db.transaction() as store:
        assert scope_for(await _person(store, "dana@example.com")) is None  # requesters get no digest


async def test_the_pulse_hides_partners_under_the_threshold(demo_db: Database, clock: FakeClock) -> None:
    await fixed_set(demo_db, clock())
    text = (await _digest(demo_db, "priya@example.com", clock())).plain_text()
    assert "• Finance 3.3 ▅▆▆▇ 4.3 (+0.3)" in text
    assert "• Operations 3.8 ··▆▄ 2.8 (−1.0)" in text
    assert "Sales & Marketing 1" not in text and "Sales & Marketing 2" not in text
    assert "1 partner(s) with fewer than 3 answers a run: not shown" in text


def _texts(block: object) -> list[str]:
    found: list[str] = []
    if isinstance(block, dict):
        for key, value in block.items():
            if key == "text" and isinstance(value, str):
                found.append(value)
            else:
                found.extend(_texts(value))
    elif isinstance(block, list):
        for value in block:
            found.extend(_texts(value))
    return found


async def _crowded(db: Database, now: datetime) -> None:
    """Many partners, many stuck requests, many snoozes: lists that must be cut."""
    async with db.transaction() as store:
        dana = await _person(store, "dana@example.com")
        alice = await _person(store, "alice@example.com")
        for n in range(40):
            partner = await store.directory.add_partner(name=f"Unit {n:02d} " + "x" * 60, maturity="ad hoc",
                                                        now=now - timedelta(days=400))
            await store.directory.set_primary_brm(partner_id=partner.id or 0, brm_id=alice.id or 0, cadence_days=7,
                                                  now=now - timedelta(days=400))
            for k in range(3):
                await _file(store, title=f"Long stuck work item number {k} " + "y" * 150, category="problem",
                            urgency="critical", requester=dana, partner_id=partner.id or 0,
                            at=now - timedelta(days=30 + k))
            await store.add(Snooze(brm_id=alice.id or 0, item=f"partner:{partner.id}", until=now + timedelta(days=3),
                                   reason="r" * 290, created_at=now - timedelta(days=1)))


async def test_block_kit_and_the_adaptive_card_stay_within_limits(demo_db: Database, clock: FakeClock) -> None:
    await fixed_set(demo_db, clock())
    await _crowded(demo_db, clock())
    reply = await _digest(demo_db, "priya@example.com", clock())
    text = reply.plain_text()
    assert "… and" in text and "more" in text  # long lists cut, saying how many are left out
    blocks = slack_render(reply)
    assert len(blocks) <= MESSAGE_BLOCKS
    assert all(len(t) <= SECTION_CHARS for t in _texts(blocks))
    assert blocks[0]["type"] == "header" and "Weekly digest" in blocks[0]["text"]["text"]
    actions = [b for b in blocks if b["type"] == "actions"]
    assert actions and all(e["action_id"].startswith("digest:act") for b in actions for e in b["elements"])
    assert not any("more blocks" in t for t in _texts(blocks)), "nothing cut by the renderer's own limit"
    messages = teams_render(reply)
    assert len(messages) == 1, "one card"
    card = messages[0]["attachments"][0]["content"]
    assert card["type"] == "AdaptiveCard"
    size = len(json.dumps(messages[0], ensure_ascii=False).encode("utf-8"))
    assert size <= TEAMS_CARD_BYTES
    sets = [e for e in card["body"] if e.get("type") == "ActionSet"]
    titles = {a["title"] for e in sets for a in e["actions"] if a["type"] == "Action.Submit"}
    assert any(t.startswith("Open DR-") for t in titles) and any(t.startswith("Ask ") for t in titles)
    assert all(a["data"][next(iter(a["data"]))]["id"] == "digest:act" for e in sets for a in e["actions"])


async def test_the_ask_button_nudges_the_brm_once_a_day(engine: Engine, clock: FakeClock) -> None:
    reply = await _digest(engine.db, "priya@example.com", clock())
    stuck = next(b for b in reply.blocks if isinstance(b, Choices) and any(o.id == "ask|1" for o in b.options))
    priya = Chat(engine, email="priya@example.com")
    assert "Asked Alice Moreno for an update on DR-1" in await priya.press_in(stuck, "Ask Alice for an update")
    assert "today already" in await priya.press_in(stuck, "Ask Alice for an update")
    asks = [m for m in await rows_of(engine.db, OutboxMessage) if m.kind == "update-ask"]
    assert len(asks) == 1
    alice = next(p for p in await rows_of(engine.db, Person) if p.email == "alice@example.com")
    assert asks[0].recipient_id == alice.id
    assert "Priya Raman asks for an update on DR-1" in reply_from_json(asks[0].payload).plain_text()
    assert "DR-1 · Automate month-end accruals" in await priya.press_in(stuck, "Open DR-1")
    dana = Chat(engine, email="dana@example.com")  # DR-1's requester
    assert "for leaders" in await dana.press_in(stuck, "Ask Alice for an update")
    ben = Chat(engine, email="ben@example.com")  # a BRM of other partners
    assert "not a request you can see" in await ben.press_in(stuck, "Ask Alice for an update")
    assert len([m for m in await rows_of(engine.db, OutboxMessage) if m.kind == "update-ask"]) == 1


async def test_a_week_is_parsed_and_bounded_in_the_readers_zone() -> None:
    week = Week.parse("2026-W47")
    assert str(week) == "2026-W47"
    assert week.start(KOLKATA) == datetime(2026, 11, 16, tzinfo=KOLKATA)
    monday = datetime(2026, 11, 23, 2, 0, tzinfo=ZoneInfo("UTC"))  # 07:30 in Kolkata
    assert Week.last_complete(monday, KOLKATA) == week
    for bad in ("2026-47", "2026-W54", "W47", ""):
        try:
            Week.parse(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} was accepted")


async def test_the_pipeline_shows_connected_demand_to_the_brm(engine: Engine, clock: FakeClock) -> None:
    await fixed_set(engine.db, clock())
    text = await Chat(engine, email="alice@example.com").say("pipeline")
    assert "Connected demand" in text
    assert "Finance, Operations and Sales & Marketing each asked for invoice automation: DR-13, DR-14, DR-15" in text
    assert Status.SHAPING.value.capitalize() in text


async def test_the_runs_min_group_is_respected_and_never_below_three(demo_db: Database, clock: FakeClock) -> None:
    await fixed_set(demo_db, clock())
    run = SurveyRun.__table__  # type: ignore[attr-defined]
    for floor, shown, hidden in ((1, "• Finance", "• Sales & Marketing"), (4, "• Operations", "• Finance")):
        definition = {"title": "Partner pulse", "min_group": floor,
                      "questions": [{"id": "satisfaction", "type": "rating", "text": "How satisfied are you?"}]}
        async with demo_db.transaction() as store:
            await store.rows(sa.update(run).values(definition=definition))
        text = (await _digest(demo_db, "priya@example.com", clock())).plain_text()
        pulse = text.split("*Pulse*", 1)[1].split("*Demand mix*", 1)[0]
        assert shown in pulse and hidden not in pulse, (floor, pulse)


async def test_digest_in_chat_for_leaders_and_brms_refused_to_requesters(engine: Engine) -> None:
    shown = await Chat(engine, email="priya@example.com").say("digest")
    assert "Weekly digest," in shown and "Everyone's demand" in shown and "Pipeline by status" in shown
    brm = await Chat(engine, email="alice@example.com").say("digest 2026-W47")
    assert "(2026-W47)" in brm and "Alice Moreno's partners" in brm
    assert "has no week 60" in await Chat(engine, email="priya@example.com").say("digest 2026-W60")
    refused = await Chat(engine, email="dana@example.com").say("digest")
    assert "is for leaders and BRMs" in refused and "Weekly digest," not in refused
