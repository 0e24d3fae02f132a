"""The storage contract, run on SQLite and on PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from storage import migrate
from storage import queries as q
from storage.db import Database
from storage.demo import load_demo
from storage.models import BusinessPartner, DemandRequest, Person, Relationship, Role
from storage.tx import Tx


async def test_the_schema_is_at_the_newest_migration(db: Database) -> None:
    assert await migrate.current_revision(db) == migrate.head_revision()


async def test_an_event_id_is_claimed_once_per_platform(db: Database) -> None:
    now = datetime.now(UTC)
    async with db.transaction() as s:
        assert await q.claim_event(s, platform="slack", event_id="Ev1", now=now)
        assert not await q.claim_event(s, platform="slack", event_id="Ev1", now=now)
        assert await q.claim_event(s, platform="teams", event_id="Ev1", now=now)


async def test_a_rolled_back_turn_leaves_its_event_unclaimed(db: Database) -> None:
    now = datetime.now(UTC)
    with pytest.raises(RuntimeError):
        async with db.transaction() as s:
            await q.claim_event(s, platform="slack", event_id="Ev2", now=now)
            raise RuntimeError("the turn failed")
    async with db.transaction() as s:
        assert await q.claim_event(s, platform="slack", event_id="Ev2", now=now)


async def test_times_come_back_aware_in_utc(db: Database) -> None:
    plus_two = timezone(timedelta(hours=2))
    async with db.transaction() as s:
        partner = BusinessPartner(name="Legal", created_at=datetime(2026, 5, 1, 12, 0, tzinfo=plus_two))
        s.add(partner)
    async with db.session() as s:
        (stored,) = (await s.execute(sa.select(BusinessPartner))).scalars().all()
    assert stored.created_at == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    assert stored.created_at.tzinfo is not None


async def test_naive_times_are_refused(db: Database) -> None:
    with pytest.raises(Exception, match="naive datetime"):
        async with db.transaction() as s:
            s.add(BusinessPartner(name="Naive", created_at=datetime(2026, 1, 1)))


async def test_state_saves_check_the_version(db: Database) -> None:
    key = q.StateKey("slack", "T1", "D1", "U1")
    now = datetime.now(UTC)
    async with db.transaction() as s:
        await q.save_state(s, key, expected_version=None, flow="intake", step="title", data={}, now=now)
    with pytest.raises(q.StaleState):
        async with db.transaction() as s:
            await q.save_state(s, key, expected_version=None, flow="intake", step="x", data={}, now=now)
    with pytest.raises(q.StaleState):
        async with db.transaction() as s:
            await q.save_state(s, key, expected_version=7, flow="intake", step="x", data={}, now=now)
    async with db.transaction() as s:
        await q.save_state(s, key, expected_version=1, flow="intake", step="outcome", data={"a": 1}, now=now)
    async with db.session() as s:
        row = await q.load_state(s, key)
    assert row is not None and (row.step, row.data, row.version) == ("outcome", {"a": 1}, 2)


def _state(step: str, version: int, now: datetime) -> q.SavedState:
    return q.SavedState("intake", step, {"step": step}, version, now)


async def _finish(tx: Tx, event_id: str, state: q.SavedState | None, expected: int | None) -> bool:
    key, now = q.StateKey("slack", "T1", "D1", "U1"), datetime.now(UTC)
    return await q.finish_turn(tx, key, event_id=event_id, now=now, state=state, expected_version=expected)


async def test_a_turn_claims_its_event_and_saves_its_state_both_or_neither(db: Database) -> None:
    key = q.StateKey("slack", "T1", "D1", "U1")
    now = datetime.now(UTC)
    async with db.tx() as tx:
        assert await _finish(tx, "Ev1", _state("title", 1, now), None)
    # The platform retries Ev1: refused, and the state is left as the first delivery saved it.
    async with db.tx() as tx:
        again = await _finish(tx, "Ev1", _state("x", 2, now), 1)
    assert again is False
    # Ev2 raced another turn (its version is stale): nothing is saved and Ev2 stays unclaimed.
    with pytest.raises(q.StaleState):
        async with db.tx() as tx:
            await _finish(tx, "Ev2", _state("x", 8, now), 7)
    async with db.tx() as tx:
        assert await _finish(tx, "Ev2", _state("outcome", 2, now), 1)
    async with db.tx() as tx:
        row = await q.load_state(tx, key)
        assert not await _finish(tx, "Ev2", None, None)
    assert row is not None and (row.step, row.data, row.version) == ("outcome", {"step": "outcome"}, 2)


async def test_a_retried_event_rolls_back_what_its_turn_wrote(db: Database) -> None:
    async with db.tx() as tx:
        assert await _finish(tx, "Ev1", None, None)
    with pytest.raises(LookupError):
        async with db.tx() as tx:
            person = await q.add_person(tx, name="Twice", email="twice@example.com", role=Role.REQUESTER, time_zone="")
            assert person.id is not None
            if not await _finish(tx, "Ev1", None, None):
                raise LookupError("duplicate")
    async with db.tx() as tx:
        assert await q.person_by_email(tx, "twice@example.com") is None


async def test_an_outbox_message_is_queued_once_per_kind_subject_period_and_recipient(db: Database) -> None:
    now = datetime.now(UTC)
    async with db.transaction() as s:
        person = Person(name="Alice", email="alice@example.com", role=Role.BRM)
        s.add(person)
        await s.flush()
        args = {"kind": "digest", "subject": "weekly", "recipient_id": person.id, "payload": {"blocks": []}, "now": now}
        assert await q.enqueue(s, **args, period="2026-W48")
        assert not await q.enqueue(s, **args, period="2026-W48")
        assert await q.enqueue(s, **args, period="2026-W49")
    async with db.session() as s:
        assert len(await q.outbox_messages(s)) == 2


async def test_a_partner_has_at_most_one_primary_brm(db: Database) -> None:
    async with db.transaction() as s:
        partner = BusinessPartner(name="IT Security")
        a, b = Person(name="A", role=Role.BRM), Person(name="B", role=Role.BRM)
        s.add_all([partner, a, b])
        await s.flush()
        s.add(Relationship(partner_id=partner.id, brm_id=a.id, is_primary=True))
        s.add(Relationship(partner_id=partner.id, brm_id=b.id, is_primary=False))
    with pytest.raises(IntegrityError):
        async with db.transaction() as s:
            await s.execute(sa.update(Relationship).values(is_primary=True))


async def test_emails_are_unique(db: Database) -> None:
    async with db.transaction() as s:
        s.add(Person(name="One", email="same@example.com"))
    with pytest.raises(IntegrityError):
        async with db.transaction() as s:
            s.add(Person(name="Two", email="same@example.com"))


async def test_the_demo_loads_once_into_an_empty_database(db: Database) -> None:
    now = datetime.now(UTC)
    async with db.transaction() as s:
        assert await load_demo(s, now=now)
    async with db.transaction() as s:
        assert not await load_demo(s, now=now)
    async with db.session() as s:
        requests = (await s.execute(sa.select(DemandRequest))).scalars().all()
        statuses = {r.status for r in requests}
        history = await q.status_history(s, requests[0].id)
    assert len(requests) == 12 and len(statuses) >= 6
    assert [c.to_status for c in history] == ["submitted", "triaged", "shaping"]
    assert all(r.brm_id is not None for r in requests)


async def test_request_keys_follow_the_ids(db: Database) -> None:
    now = datetime.now(UTC)
    async with db.transaction() as s:
        await load_demo(s, now=now)
        person = await q.person_by_email(s, "DANA@example.com ")
        assert person is not None
        created = await q.create_request(
            s,
            q.NewRequest(
                title="T",
                outcome="O" * 10,
                category="idea",
                urgency="low",
                partner_id=None,
                requester_id=person.id,
                source_platform="console",
            ),
            now=now,
        )
    assert created.key == "DR-13" and created.brm_id is None


async def test_a_migration_that_fails_halfway_leaves_the_schema_as_it_was(tmp_path) -> None:
    db = Database.connect(f"sqlite+aiosqlite:///{tmp_path / 'half.db'}")
    async with db.engine.begin() as conn:  # a table in the way makes the first migration fail midway
        await conn.exec_driver_sql("CREATE TABLE person (id INTEGER PRIMARY KEY)")
    with pytest.raises(Exception, match="person"):
        await migrate.upgrade(db)
    async with db.engine.connect() as conn:
        tables = {row[0] for row in await conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE type='table'")}
    await db.dispose()
    assert tables == {"person"}  # business_partner and the others, made before the failure, are gone
