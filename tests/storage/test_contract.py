"""The storage contract, run on SQLite and on PostgreSQL alike (the ``db`` fixture)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage import migrate
from storage.db import Database
from storage.demo import load_demo
from storage.models import (
    BusinessPartner,
    ConversationState,
    DemandRequest,
    OutboxMessage,
    OutboxStatus,
    Person,
    ProcessedEvent,
    Relationship,
    Role,
)
from storage.store import PERSON, RELATIONSHIP, REQUEST, NewRequest, SavedState, StaleState, StateKey, Store
from storage.tx import INTEGRITY_ERRORS
from tests.helpers import count_of, rows_of

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
KEY = StateKey("slack", "T1", "D1", "U1")


async def _person(store: Store, name: str, email: str | None = None, role: Role = Role.REQUESTER) -> Person:
    return await store.people.add(name=name, email=email, role=role, time_zone="UTC", now=NOW)


# --- schema ---------------------------------------------------------------------------------------


async def test_the_schema_is_at_the_newest_migration(db: Database) -> None:
    assert await migrate.current_revision(db) == migrate.head_revision()


async def test_the_migrated_schema_is_exactly_the_models(db: Database) -> None:
    """Alembic's compare (types included) finds nothing: the migrations and the tables agree."""
    assert await migrate.differences(db) == []


async def test_a_migration_that_fails_halfway_leaves_the_schema_as_it_was(tmp_path: Path) -> None:
    db = Database.connect(f"sqlite+aiosqlite:///{tmp_path / 'half.db'}")
    in_the_way = sa.Table("person", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True))
    try:
        async with db.migration_connection() as conn:  # a table in the way: the first migration fails midway
            assert isinstance(conn, sa.Connection)
            in_the_way.create(conn)
        with pytest.raises(Exception, match="person"):
            await migrate.upgrade(db)
        async with db.migration_connection() as conn:
            assert isinstance(conn, sa.Connection)
            tables = set(sa.inspect(conn).get_table_names())
    finally:
        await db.dispose()
    assert tables == {"person"}  # business_partner and the others, made before the failure, are gone


# --- values cross as their column types say -------------------------------------------------------


async def test_times_come_back_aware_in_utc_from_any_zone(db: Database) -> None:
    plus_two = timezone(timedelta(hours=2))
    minus_five = timezone(timedelta(hours=-5, minutes=-30))
    async with db.transaction() as store:
        legal_at = datetime(2026, 5, 1, 12, 0, 0, 123456, tzinfo=plus_two)
        await store.add(BusinessPartner(name="Legal", created_at=legal_at))
        await store.add(BusinessPartner(name="Tax", created_at=datetime(2026, 12, 31, 23, 30, tzinfo=minus_five)))
    legal, tax = await rows_of(db, BusinessPartner, order_by=BusinessPartner.id)
    assert legal.created_at == datetime(2026, 5, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert tax.created_at == datetime(2027, 1, 1, 5, 0, tzinfo=UTC)
    for stored in (legal.created_at, tax.created_at):
        assert stored.utcoffset() == timedelta(0)


async def test_naive_times_are_refused(db: Database) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        async with db.transaction() as store:
            await store.add(BusinessPartner(name="Naive", created_at=datetime(2026, 1, 1)))
    with pytest.raises(ValueError, match="naive datetime"):
        async with db.transaction() as store:
            await store.events.claim(platform="slack", event_id="Ev1", now=datetime(2026, 1, 1))
    assert await count_of(db, BusinessPartner) == 0
    assert await count_of(db, ProcessedEvent) == 0


async def test_every_column_type_survives_a_write_and_a_read(db: Database) -> None:
    payload = {
        "name": "Zoë 🚀 日本語 — «quoted» \"double\" 'single' \\ back",
        "nested": {"list": [1, 2.5, None, True, False, {"ü": ["ß", {"deep": "∑"}]}], "empty": {}, "none": None},
        "big": 2**53,
    }
    long_text = ("Lorem ipsum ✓ ünïcödé\n" * 5000) + "end"
    async with db.transaction() as store:
        brm = await _person(store, "Bea", "bea@example.com", Role.BRM)
        nobody = await _person(store, "No Email")  # None in a unique column
        partner = BusinessPartner(name="Finance")
        await store.add(partner)
        await store.add(Relationship(partner_id=partner.id, brm_id=brm.id, is_primary=True, last_touchpoint_at=None))
        await store.add(Relationship(partner_id=partner.id, brm_id=nobody.id, is_primary=False,
                                     last_touchpoint_at=datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)))
        assert brm.id is not None and nobody.id is not None
        request = await store.requests.create(
            NewRequest(title="Ünïcödé title ✓", outcome="o", category="idea", urgency="low", partner_id=partner.id,
                       requester_id=nobody.id, source_platform="console", description=long_text,
                       desired_date=date(2027, 2, 28)),
            now=NOW,
        )
        undated = await store.requests.create(
            NewRequest(title="Undated", outcome="o", category="idea", urgency="low", partner_id=None,
                       requester_id=nobody.id, source_platform="console"),
            now=NOW,
        )
        await store.state.save(KEY, SavedState("intake", "title", payload, 1, NOW), expected_version=None)
        await store.references.save(platform="teams", workspace="tenant", scope="user", target="29:abc",
                                    reference=payload, now=NOW)
        assert await store.outbox.enqueue(kind="k", subject="s", recipient_id=brm.id, payload=payload, now=NOW)

    assert request.id is not None and undated.id is not None
    people = {p.name: p for p in await rows_of(db, Person)}
    assert people["No Email"].email is None and people["No Email"].partner_id is None
    assert people["Bea"].role == "brm"

    primary, other = await rows_of(db, Relationship, order_by=Relationship.id)
    assert primary.is_primary is True and other.is_primary is False
    assert primary.last_touchpoint_at is None
    assert other.last_touchpoint_at == datetime(2026, 2, 3, 4, 5, 6, tzinfo=UTC)

    async with db.transaction() as store:
        stored = await store.requests.get(request.id)
        plain = await store.requests.get(undated.id)
        state = await store.state.load(KEY)
        reference = await store.references.load(platform="teams", workspace="tenant", scope="user", target="29:abc")
        (message,) = await store.outbox.all()
        # one column read on its own comes back typed too, not as the driver's string or integer
        day = await store.tx.scalar(sa.select(REQUEST.c.desired_date).where(REQUEST.c.id == request.id))
        flag = await store.tx.scalar(sa.select(RELATIONSHIP.c.is_primary).where(RELATIONSHIP.c.id == primary.id))
    assert stored is not None and plain is not None
    assert stored.description == long_text and stored.title == "Ünïcödé title ✓"
    assert stored.desired_date == date(2027, 2, 28) and type(stored.desired_date) is date
    assert day == date(2027, 2, 28) and flag is True
    assert stored.created_at == NOW and stored.created_at.tzinfo is not None
    assert plain.desired_date is None and plain.description is None and plain.partner_id is None
    assert plain.brm_id is None
    assert state is not None and state.data == payload and state.updated_at == NOW
    assert reference == payload
    assert message.payload == payload and message.sent_at is None and message.last_error is None
    assert message.next_attempt_at == NOW


# --- events and conversation state ---------------------------------------------------------------


async def test_an_event_id_is_claimed_once_per_platform(db: Database) -> None:
    async with db.transaction() as store:
        assert await store.events.claim(platform="slack", event_id="Ev1", now=NOW)
        assert not await store.events.claim(platform="slack", event_id="Ev1", now=NOW)
        assert await store.events.claim(platform="teams", event_id="Ev1", now=NOW)
    async with db.transaction() as store:
        assert not await store.events.claim(platform="slack", event_id="Ev1", now=NOW)


async def test_a_rolled_back_turn_leaves_its_event_unclaimed(db: Database) -> None:
    with pytest.raises(RuntimeError, match="the turn failed"):
        async with db.transaction() as store:
            await store.events.claim(platform="slack", event_id="Ev2", now=NOW)
            raise RuntimeError("the turn failed")
    async with db.transaction() as store:
        assert await store.events.claim(platform="slack", event_id="Ev2", now=NOW)


async def test_old_events_are_forgotten(db: Database) -> None:
    async with db.transaction() as store:
        await store.events.claim(platform="slack", event_id="old", now=NOW - timedelta(days=3))
        await store.events.claim(platform="slack", event_id="new", now=NOW)
        assert await store.events.forget_before(before=NOW - timedelta(days=1)) == 1
    async with db.transaction() as store:
        assert await store.events.claim(platform="slack", event_id="old", now=NOW)
        assert not await store.events.claim(platform="slack", event_id="new", now=NOW)


async def test_state_saves_check_the_version(db: Database) -> None:
    async with db.transaction() as store:
        await store.state.save(KEY, SavedState("intake", "title", {}, 1, NOW), expected_version=None)
    with pytest.raises(StaleState):
        async with db.transaction() as store:
            await store.state.save(KEY, SavedState("intake", "x", {}, 1, NOW), expected_version=None)
    with pytest.raises(StaleState):
        async with db.transaction() as store:
            await store.state.save(KEY, SavedState("intake", "x", {}, 8, NOW), expected_version=7)
    async with db.transaction() as store:
        await store.state.save(KEY, SavedState("intake", "outcome", {"a": 1}, 2, NOW), expected_version=1)
    async with db.transaction() as store:
        row = await store.state.load(KEY)
    assert row is not None and (row.step, row.data, row.version) == ("outcome", {"a": 1}, 2)
    (saved,) = await rows_of(db, ConversationState)
    assert (saved.version, saved.schema_version) == (2, 1)


def _state(step: str, version: int) -> SavedState:
    return SavedState("intake", step, {"step": step}, version, NOW)


async def _finish(store: Store, event_id: str, state: SavedState | None, expected: int | None) -> bool:
    return await store.state.finish_turn(KEY, event_id=event_id, now=NOW, state=state, expected_version=expected)


async def test_a_turn_claims_its_event_and_saves_its_state_both_or_neither(db: Database) -> None:
    async with db.transaction() as store:
        assert await _finish(store, "Ev1", _state("title", 1), None)
    # The platform retries Ev1: refused, and the state is left as the first delivery saved it.
    async with db.transaction() as store:
        assert await _finish(store, "Ev1", _state("x", 2), 1) is False
    # Ev2 raced another turn (its version is stale): nothing is saved and Ev2 stays unclaimed.
    with pytest.raises(StaleState):
        async with db.transaction() as store:
            await _finish(store, "Ev2", _state("x", 8), 7)
    async with db.transaction() as store:
        assert await _finish(store, "Ev2", _state("outcome", 2), 1)
    async with db.transaction() as store:
        row = await store.state.load(KEY)
        assert not await _finish(store, "Ev2", None, None)
    assert row is not None and (row.step, row.data, row.version) == ("outcome", {"step": "outcome"}, 2)


async def test_a_turn_that_wrote_first_then_finishes_keeps_both(db: Database) -> None:
    """The path where the transaction has begun before the finish (a turn that created a person)."""
    async with db.transaction() as store:
        await _person(store, "Writer", "writer@example.com")
        assert await _finish(store, "Ev1", _state("title", 1), None)
    async with db.transaction() as store:
        assert await store.people.by_email("writer@example.com") is not None
        state = await store.state.load(KEY)
    assert state is not None and state.step == "title"


async def test_a_retried_event_rolls_back_what_its_turn_wrote(db: Database) -> None:
    async with db.transaction() as store:
        assert await _finish(store, "Ev1", None, None)
    with pytest.raises(LookupError):
        async with db.transaction() as store:
            person = await _person(store, "Twice", "twice@example.com")
            assert person.id is not None
            if not await _finish(store, "Ev1", None, None):
                raise LookupError("duplicate")
    async with db.transaction() as store:
        assert await store.people.by_email("twice@example.com") is None


# --- savepoints and nesting -------------------------------------------------------------------


async def test_an_error_in_a_savepoint_rolls_back_only_the_inner_writes(db: Database) -> None:
    async with db.transaction() as store:
        await _person(store, "Outer", "outer@example.com")
        with pytest.raises(INTEGRITY_ERRORS):
            async with store.tx.savepoint():
                await _person(store, "Inner", "inner@example.com")
                await _person(store, "Duplicate", "outer@example.com")  # the database refuses this one
        async with store.tx.savepoint():  # a savepoint that succeeds keeps its writes
            await _person(store, "Kept", "kept@example.com")
            with pytest.raises(LookupError):
                async with store.tx.savepoint():  # nested
                    await _person(store, "Nested", "nested@example.com")
                    raise LookupError("inner step failed")
            await _person(store, "Sibling", "sibling@example.com")
        await _person(store, "After", "after@example.com")
    names = [p.name for p in await rows_of(db, Person, order_by=PERSON.c.id)]
    assert names == ["Outer", "Kept", "Sibling", "After"]


async def test_released_savepoints_go_with_a_failed_transaction(db: Database) -> None:
    with pytest.raises(RuntimeError, match="later"):
        async with db.transaction() as store:
            async with store.tx.savepoint():
                await _person(store, "Saved", "saved@example.com")
            raise RuntimeError("later")
    assert await count_of(db, Person) == 0


async def test_a_transaction_inside_a_transaction_of_the_same_task_fails_at_once(db: Database) -> None:
    # asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for runs the inner block in a
    # task of its own, which is not nesting (and on SQLite would rightly wait for the lock).
    async with db.transaction() as store:
        await _person(store, "Holder", "holder@example.com")
        with pytest.raises(RuntimeError, match="savepoint"):
            async with asyncio.timeout(5), db.transaction():
                pass
    async with asyncio.timeout(5), db.transaction() as store:  # free again, and the outer one committed
        assert await store.people.by_email("holder@example.com") is not None


async def test_a_failed_transaction_and_a_concurrent_one_never_share_their_writes(db: Database) -> None:
    entering = asyncio.Event()

    async def failing() -> None:
        with pytest.raises(RuntimeError, match="fails"):
            async with db.transaction() as store:
                assert await store.events.claim(platform="slack", event_id="EvRolledBack", now=NOW)
                await asyncio.wait_for(entering.wait(), 5)  # the other transaction is on its way in
                raise RuntimeError("the transaction fails")

    async def committing() -> None:
        entering.set()
        async with db.transaction() as store:
            assert await store.events.claim(platform="slack", event_id="EvCommitted", now=NOW)

    async with asyncio.timeout(10):
        await asyncio.gather(failing(), committing())
    async with db.transaction() as store:
        assert not await store.events.claim(platform="slack", event_id="EvCommitted", now=NOW), "its write stayed"
        assert await store.events.claim(platform="slack", event_id="EvRolledBack", now=NOW), "the failed one's went"


async def test_a_transaction_after_dispose_fails(db: Database) -> None:
    async with db.transaction() as store:
        await _person(store, "Before", "before@example.com")
    await db.dispose()
    with pytest.raises(RuntimeError, match="closed"):
        async with asyncio.timeout(5), db.transaction():
            pass


# --- outbox -----------------------------------------------------------------------------------


async def test_an_outbox_message_is_queued_once_per_kind_subject_period_and_recipient(db: Database) -> None:
    async with db.transaction() as store:
        alice = await _person(store, "Alice", "alice@example.com", Role.BRM)
        bob = await _person(store, "Bob", "bob@example.com", Role.BRM)
        assert alice.id is not None and bob.id is not None
        args = {"kind": "digest", "subject": "weekly", "payload": {"blocks": []}, "now": NOW}
        assert await store.outbox.enqueue(**args, recipient_id=alice.id, period="2026-W48")
        assert not await store.outbox.enqueue(**args, recipient_id=alice.id, period="2026-W48")
        assert await store.outbox.enqueue(**args, recipient_id=alice.id, period="2026-W49")
        assert await store.outbox.enqueue(**args, recipient_id=bob.id, period="2026-W48")
        assert await store.outbox.enqueue(**{**args, "kind": "nudge"}, recipient_id=alice.id, period="2026-W48")
        assert await store.outbox.enqueue(**{**args, "subject": "DR-1"}, recipient_id=alice.id, period="2026-W48")
    async with db.transaction() as store:  # and in a later transaction too
        assert not await store.outbox.enqueue(**args, recipient_id=alice.id, period="2026-W48")
    assert await count_of(db, OutboxMessage) == 5


async def test_claimed_messages_are_leased_and_finishing_records_the_outcome(db: Database) -> None:
    async with db.transaction() as store:
        alice = await _person(store, "Alice", "alice@example.com", Role.BRM)
        assert alice.id is not None
        for n in range(3):
            await store.outbox.enqueue(kind="k", subject=f"s{n}", recipient_id=alice.id, payload={"n": n}, now=NOW)
        await store.outbox.enqueue(kind="k", subject="later", recipient_id=alice.id, payload={},
                                   now=NOW + timedelta(hours=1))
    lease = NOW + timedelta(minutes=5)
    async with db.transaction() as store:
        first = await store.outbox.claim(now=NOW, lease_until=lease, limit=2)
    async with db.transaction() as store:
        second = await store.outbox.claim(now=NOW, lease_until=lease, limit=10)
    assert [m.subject for m in first] == ["s0", "s1"] and [m.subject for m in second] == ["s2"]
    assert {m.status for m in first + second} == {OutboxStatus.SENDING.value}
    assert {m.next_attempt_at for m in first + second} == {lease}

    sent, failed, _ = (m.id for m in first + second)
    assert sent is not None and failed is not None
    token = first[0].lease_token
    retry_at = NOW + timedelta(minutes=10)
    async with db.transaction() as store:
        await store.outbox.finish(sent, token=token, status=OutboxStatus.SENT, now=NOW, platform_message_id="ts.1")
        await store.outbox.finish(failed, token=token, status=OutboxStatus.PENDING, now=NOW, next_attempt_at=retry_at,
                                  error="x" * 600)
    by_subject = {m.subject: m for m in await rows_of(db, OutboxMessage)}
    done, retried = by_subject["s0"], by_subject["s1"]
    assert (done.status, done.attempts, done.sent_at, done.platform_message_id) == ("sent", 1, NOW, "ts.1")
    assert (retried.status, retried.attempts, retried.sent_at) == ("pending", 1, None)
    assert retried.next_attempt_at == retry_at and retried.last_error == "x" * 500

    async with db.transaction() as store:  # the lease ran out on s2 (its worker died): due again
        again = await store.outbox.claim(now=lease + timedelta(seconds=1), lease_until=lease + timedelta(minutes=5))
    assert [m.subject for m in again] == ["s2"]
    async with db.transaction() as store:
        later = await store.outbox.claim(now=retry_at + timedelta(hours=1), lease_until=retry_at + timedelta(hours=2))
    assert [m.subject for m in later] == ["s1", "s2", "later"]


# --- people, partners, requests -----------------------------------------------------------------


async def test_a_partner_has_at_most_one_primary_brm(db: Database) -> None:
    async with db.transaction() as store:
        partner = BusinessPartner(name="IT Security")
        await store.add(partner)
        a, b = await _person(store, "A", role=Role.BRM), await _person(store, "B", role=Role.BRM)
        await store.add(Relationship(partner_id=partner.id, brm_id=a.id, is_primary=True))
        await store.add(Relationship(partner_id=partner.id, brm_id=b.id, is_primary=False))
    with pytest.raises(INTEGRITY_ERRORS):
        async with db.transaction() as store:
            await store.rows(sa.update(RELATIONSHIP).values(is_primary=True))
    async with db.transaction() as store:
        assert partner.id is not None
        primary = await store.partners.primary_brm(partner.id)
    assert primary is not None and primary.name == "A"


async def test_emails_are_unique(db: Database) -> None:
    async with db.transaction() as store:
        await _person(store, "One", "same@example.com")
    with pytest.raises(INTEGRITY_ERRORS):
        async with db.transaction() as store:
            await _person(store, "Two", "same@example.com")
    assert [p.name for p in await rows_of(db, Person)] == ["One"]


async def test_a_platform_account_links_to_one_person(db: Database) -> None:
    async with db.transaction() as store:
        dana = await _person(store, "Dana", "dana@example.com")
        eli = await _person(store, "Eli", "eli@example.com")
        assert dana.id is not None and eli.id is not None
        assert await store.people.link(person_id=dana.id, platform="slack", workspace="T1", user_id="U1", now=NOW)
        assert not await store.people.link(person_id=eli.id, platform="slack", workspace="T1", user_id="U1", now=NOW)
        assert await store.people.link(person_id=dana.id, platform="teams", workspace="t", user_id="U1", now=NOW,
                                       directory_id="aad-1")
    async with db.transaction() as store:
        found = await store.people.by_identity(platform="slack", workspace="T1", user_id="U1")
        by_directory = await store.people.by_directory_id("aad-1")
        identities = await store.people.identities(dana.id)
    assert found is not None and found.name == "Dana"
    assert by_directory is not None and by_directory.id == dana.id
    assert [(i.platform, i.directory_id) for i in identities] == [("slack", None), ("teams", "aad-1")]


async def test_the_demo_loads_once_into_an_empty_database(db: Database) -> None:
    async with db.transaction() as store:
        assert await load_demo(store, now=NOW)
    async with db.transaction() as store:
        assert not await load_demo(store, now=NOW)
    requests = await rows_of(db, DemandRequest)
    async with db.transaction() as store:
        history = await store.requests.history(requests[0].id or 0)
    assert len(requests) == 12 and len({r.status for r in requests}) >= 6
    assert [c.to_status for c in history] == ["submitted", "triaged", "shaping"]
    assert all(r.brm_id is not None for r in requests)


async def test_request_keys_follow_the_ids(db: Database) -> None:
    async with db.transaction() as store:
        await load_demo(store, now=NOW)
        person = await store.people.by_email("DANA@example.com ")
        assert person is not None and person.id is not None
        created = await store.requests.create(
            NewRequest(title="T", outcome="O" * 10, category="idea", urgency="low", partner_id=None,
                       requester_id=person.id, source_platform="console"),
            now=NOW,
        )
    assert created.key == "DR-13" and created.brm_id is None
