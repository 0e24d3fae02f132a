"""Two messages of one conversation at once, two processes, a platform retry."""

from __future__ import annotations

import asyncio

from conversations.engine import Engine
from conversations.flows import default_flows
from conversations.messages import ConversationKey, Inbound, Sender
from storage.models import DemandRequest, Person
from storage.store import StateKey
from tests.helpers import count_of


def _inbound(text: str, event_id: str, user: str = "dana@example.com") -> Inbound:
    key = ConversationKey("console", "local", "terminal", user)
    return Inbound(key=key, event_id=event_id, text=text, sender=Sender(email=user))


async def _state(engine: Engine) -> tuple[str | None, str | None, dict]:
    async with engine.db.transaction() as store:
        row = await store.state.load(StateKey("console", "local", "terminal", "dana@example.com"))
    assert row is not None
    return row.flow, row.step, dict(row.data)


async def test_two_messages_at_once_are_both_applied_in_order(engine: Engine) -> None:
    await engine.handle(_inbound("new request", "a1"))
    first, second = await asyncio.gather(
        engine.handle(_inbound("Parallel title", "a2")), engine.handle(_inbound("Parallel description", "a3"))
    )
    assert "Describe it" in first[0].plain_text()
    assert "business outcome" in second[0].plain_text()
    flow, step, data = await _state(engine)
    assert (flow, step) == ("intake", "outcome")
    assert (data["title"], data["description"], data["partner"]) == ("Parallel title", "Parallel description", 1)
    assert "outcome" not in data


async def test_two_engines_on_one_database_never_lose_a_turn(engine: Engine, clock) -> None:
    """Two replicas: no shared lock, only the version check on the state row."""
    other = Engine(engine.db, default_flows(), clock=clock)
    await engine.handle(_inbound("new request", "b1"))
    lines = ["Replica title", "skip", "Two replicas never lose a message", "idea", "low", "1"]
    for n, line in enumerate(lines):
        replica = engine if n % 2 else other
        await asyncio.gather(replica.handle(_inbound(line, f"b{n + 2}")), asyncio.sleep(0))
    # now both replicas race on the same turn with different event ids: exactly one "submit" wins
    results = await asyncio.gather(engine.handle(_inbound("submit", "c1")), other.handle(_inbound("submit", "c2")))
    texts = ["\n".join(r.plain_text() for r in replies) for replies in results]
    # (PostgreSQL may skip a key: the losing turn's insert used a sequence value, then rolled back)
    assert sum("Submitted as DR-" in t for t in texts) == 1
    count = await count_of(engine.db, DemandRequest)
    assert count == 13


async def test_a_retried_event_is_processed_once(engine: Engine) -> None:
    await engine.handle(_inbound("new request", "r1"))
    replies = await asyncio.gather(*(engine.handle(_inbound("Retried title", "r2")) for _ in range(5)))
    assert sum(bool(r) for r in replies) == 1
    _, step, data = await _state(engine)
    assert step == "details" and data["title"] == "Retried title" and "description" not in data


async def test_many_people_at_once_each_get_their_own_conversation(engine: Engine) -> None:
    people = [f"user{n}@example.com" for n in range(20)]
    await asyncio.gather(*(engine.handle(_inbound("request Laptop for " + p, f"m-{p}", p)) for p in people))
    async with engine.db.transaction() as store:
        for p in people:
            row = await store.state.load(StateKey("console", "local", "terminal", p))
            assert row is not None and row.data["title"] == "Laptop for " + p


async def test_a_replica_with_a_stale_memory_still_sees_the_other_replicas_draft(engine: Engine, clock) -> None:
    other = Engine(engine.db, default_flows(), clock=clock)
    await engine.handle(_inbound("my requests", "s1"))  # engine now remembers "no flow"
    await other.handle(_inbound("new request", "s2"))  # the other replica starts a draft
    replies = await engine.handle(_inbound("cancel", "s3"))
    assert "Cancelled your demand request" in replies[0].plain_text()
    flow, _, _ = await _state(engine)
    assert flow is None


async def test_first_contact_in_two_channels_at_once_makes_one_person(engine: Engine) -> None:
    def hello(channel: str, event: str) -> Inbound:
        key = ConversationKey("slack", "T1", channel, "U-NEW")
        return Inbound(key=key, event_id=event, text="request Shared drive clean-up", sender=Sender(name="Noor"))

    await asyncio.gather(engine.handle(hello("D1", "f1")), engine.handle(hello("C1", "f2")))
    async with engine.db.transaction() as store:
        person = await store.people.by_identity(platform="slack", workspace="T1", user_id="U-NEW")
    noors = await count_of(engine.db, Person, Person.name == "Noor")
    assert person is not None and noors == 1
