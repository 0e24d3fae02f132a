"""Random message sequences never crash the engine nor leave a half-written request."""

from __future__ import annotations

import itertools

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conversations.engine import Engine
from conversations.flows import default_flows
from conversations.messages import Action, ConversationKey, Inbound, Sender
from storage.models import Category, DemandRequest, Person, StatusChange, Urgency
from tests.helpers import rows_of

WORDS = [
    "new request",
    "request Lab kit",
    "cancel",
    "help",
    "submit",
    "edit",
    "skip",
    "1",
    "2",
    "5",
    "99",
    "mine",
    "status",
    "status DR-1",
    "status DR-999",
    "idea",
    "critical",
    "Finance",
    "Not sure",
    "2027-01-01",
    "yesterday",
    "",
    "   ",
    "DROP TABLE person;",
    "<!channel>",
    "😀" * 3,
    "שלום עולם",
    "A sensible business outcome text",
    "x" * 300,
    "\x00\x1b[31m",
]
ACTIONS = [
    "intake:category",
    "intake:confirm",
    "intake:duplicate",
    "menu:pick",
    "status:key",
    "intake:start",
    "nope",
]
VALUES = ["submit", "edit", "cancel", "idea", "intake", "mine", "DR-1", "", "999"]

message = st.one_of(
    st.sampled_from(WORDS).map(lambda t: ("text", t, "")),
    st.text(max_size=60).map(lambda t: ("text", t, "")),
    st.tuples(st.sampled_from(ACTIONS), st.sampled_from(VALUES)).map(lambda a: ("action", a[0], a[1])),
)
_ids = itertools.count()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.lists(message, min_size=1, max_size=20))
async def test_random_scripts_never_crash_nor_half_write(engine: Engine, script: list[tuple[str, str, str]]) -> None:
    key = ConversationKey("console", "local", "terminal", f"fuzz{next(_ids)}@example.com")
    submitted = 0
    for kind, a, b in script:
        inbound = Inbound(
            key=key,
            event_id=f"fuzz-{next(_ids)}",
            text=a if kind == "text" else "",
            action=Action(a, b) if kind == "action" else None,
            sender=Sender(email=key.user),
        )
        replies = await engine.handle(inbound)
        assert replies, f"no answer to {inbound!r}"
        submitted += sum("Submitted as DR-" in r.plain_text() for r in replies)
    async with engine.db.transaction() as store:
        mine = await store.tx.models(
            DemandRequest,
            sa.select(DemandRequest.__table__)  # type: ignore[attr-defined]
            .join(Person.__table__, Person.id == DemandRequest.requester_id)  # type: ignore[attr-defined]
            .where(Person.email == key.user),
        )
    ids = [r.id for r in mine]
    changes = await rows_of(engine.db, StatusChange, StatusChange.request_id.in_(ids or [0]))
    assert submitted == len(mine)
    for request in mine:
        assert 3 <= len(request.title) <= 200 and len(request.outcome) >= 10
        assert request.category in set(Category) and request.urgency in set(Urgency)
    assert len(changes) == len(mine)


async def test_the_engine_refuses_flows_wired_wrongly() -> None:
    import pytest

    flows = default_flows()
    with pytest.raises(ValueError, match="share a name"):
        Engine(None, [*flows, flows[0]], clock=lambda: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="'menu' flow"):
        Engine(None, flows[:-1], clock=lambda: None)  # type: ignore[arg-type]
