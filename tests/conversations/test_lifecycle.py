"""The BRM workflow in chat: the lifecycle, who may do what, the notification's actions, triage and pipeline."""

from __future__ import annotations

import pytest

from conversations import codec
from conversations.engine import Engine
from conversations.flows.lifecycle import TRANSITIONS, TRIAGE_ACTION
from conversations.messages import Choices, Reply
from storage.models import DemandRequest, OutboxMessage, Person, RequestNote, Role, Status, StatusChange
from storage.store import NewRequest
from tests.helpers import Chat, file_request, rows_of

ALICE, BEN, PRIYA, DANA, ELI = (
    "alice@example.com",
    "ben@example.com",
    "priya@example.com",
    "dana@example.com",
    "eli@example.com",
)


async def _request(engine: Engine, status: Status = Status.SUBMITTED, *, partner_id: int | None = 1) -> DemandRequest:
    """A Finance request by Dana (Alice is Finance's BRM), put straight into ``status``."""
    async with engine.db.transaction() as store:
        request = await store.requests.create(
            NewRequest(
                "Cash forecast", "Treasury sees cash a month ahead", "project", "high", partner_id, 4, "console"
            ),
            now=engine._clock(),
        )
        if status != Status.SUBMITTED:
            await store.requests.change_status(request, to=status, by_person_id=None, now=engine._clock())
    return request


async def _get(engine: Engine, request_id: int | None) -> DemandRequest:
    return (await rows_of(engine.db, DemandRequest, DemandRequest.id == request_id))[0]  # type: ignore[arg-type]


async def _updates(engine: Engine, recipient: int) -> list[OutboxMessage]:
    return [m for m in await rows_of(engine.db, OutboxMessage) if m.recipient_id == recipient]


async def _admin(engine: Engine) -> Chat:
    async with engine.db.transaction() as store:
        await store.people.add(
            name="Ada Admin", email="ada@example.com", role=Role.ADMIN, time_zone="UTC", now=engine._clock()
        )
    return Chat(engine, email="ada@example.com")


ALL_TRANSITIONS = [(a, b) for a, targets in TRANSITIONS.items() for b in targets]


@pytest.mark.parametrize(
    ("before", "after"), ALL_TRANSITIONS, ids=[f"{a.value}->{b.value}" for a, b in ALL_TRANSITIONS]
)
async def test_each_allowed_transition_is_recorded_with_who_when_and_why(
    engine: Engine, clock, before: Status, after: Status
) -> None:
    request = await _request(engine, before)
    text = await Chat(engine, email=ALICE).say(f"move {request.key} to {after.value} because the sponsor said so")
    assert f"{request.key} moved from {before.value} to {after.value}." in text
    assert (await _get(engine, request.id)).status == after.value
    last = (await rows_of(engine.db, StatusChange, StatusChange.request_id == request.id))[-1]
    assert (last.by_person_id, last.at, last.from_status, last.to_status, last.note) == (
        1,
        clock(),
        before.value,
        after.value,
        "the sponsor said so",
    )


async def test_a_forbidden_transition_is_refused_with_the_allowed_next_steps(engine: Engine) -> None:
    request = await _request(engine)
    text = await Chat(engine, email=ALICE).say(f"move {request.key} to delivered")
    assert text == (
        f"{request.key} can't move from submitted to delivered. "
        f"From submitted, {request.key} can move to: triaged, deferred, rejected."
    )
    assert (await _get(engine, request.id)).status == "submitted"
    assert len(await rows_of(engine.db, StatusChange, StatusChange.request_id == request.id)) == 1
    assert "is not a status" in await Chat(engine, email=ALICE).say(f"move {request.key} to done")
    assert "end of its lifecycle" in await Chat(engine, email=BEN).say("move DR-9 to triaged")


# who, command (DR-n is a submitted Finance request by Dana, whose BRM is Alice), allowed
MATRIX = [
    (ALICE, "accept {key}", True),
    (ALICE, "reject {key} because it is out of scope", True),
    (ALICE, "assign {key} to ben@example.com", True),
    (ALICE, "ask {key} who uses it?", True),
    (BEN, "accept {key}", False),
    (BEN, "assign {key} to ben@example.com", False),
    (BEN, "comment {key} looks like ours", False),
    (PRIYA, "accept {key}", False),
    (PRIYA, "assign {key} to ben@example.com", True),
    (PRIYA, "comment {key} please hurry", True),
    (DANA, "accept {key}", False),
    (DANA, "comment {key} the deadline moved", True),
    (DANA, "reject {key} because never mind", False),
    (ELI, "comment {key} me too", False),
    (ELI, "accept {key}", False),
    ("ada@example.com", "accept {key}", True),
    ("ada@example.com", "link {key} to DR-1", True),
]


@pytest.mark.parametrize(
    ("who", "command", "allowed"), MATRIX, ids=[f"{w.split('@')[0]}: {c.split()[0]}" for w, c, _ in MATRIX]
)
async def test_the_role_matrix(engine: Engine, who: str, command: str, allowed: bool) -> None:
    await _admin(engine)
    request = await _request(engine)
    before = (
        await _get(engine, request.id),
        len(await rows_of(engine.db, StatusChange)),
        len(await rows_of(engine.db, RequestNote)),
    )
    text = await Chat(engine, email=who).say(command.format(key=request.key))
    after = (
        await _get(engine, request.id),
        len(await rows_of(engine.db, StatusChange)),
        len(await rows_of(engine.db, RequestNote)),
    )
    if allowed:
        assert after != before, text
        assert "Nothing changed" not in text and "couldn't find" not in text
    else:
        assert after == before
        assert "Nothing changed" in text or "couldn't find" in text, text


async def test_any_brm_acts_on_an_unassigned_request_and_takes_it(engine: Engine) -> None:
    request = await _request(engine, partner_id=None)
    assert "moved from submitted to triaged" in await Chat(engine, email=BEN).say(f"accept {request.key}")
    assert (await _get(engine, request.id)).brm_id == 2
    # Once Ben has it, it is no longer unassigned: another BRM cannot act on it.
    assert "couldn't find" in await Chat(engine, email=ALICE).say(f"move {request.key} to shaping")
    assert (await _get(engine, request.id)).status == "triaged"


async def test_reject_needs_a_reason(engine: Engine) -> None:
    request = await _request(engine)
    assert "needs a reason" in await Chat(engine, email=ALICE).say(f"reject {request.key}")
    assert (await _get(engine, request.id)).status == "submitted"


async def test_link_closes_a_duplicate_and_its_requester_follows_the_original(engine: Engine) -> None:
    request = await _request(engine)
    text = await Chat(engine, email=ALICE).say(f"link {request.key} to DR-1")
    assert "moved from submitted to rejected" in text and "now follows DR-1" in text
    stored = await _get(engine, request.id)
    assert stored.duplicate_of_id == 1 and stored.status == "rejected"
    # Dana now hears about DR-1's changes.
    await Chat(engine, email=ALICE).say("move DR-1 to deferred because budget freeze")
    about_one = [m for m in await _updates(engine, 4) if m.subject == "DR-1"]
    assert len(about_one) == 1 and "budget freeze" in codec.reply_from_json(about_one[0].payload).plain_text()


def _notification(message: OutboxMessage) -> Choices:
    reply: Reply = codec.reply_from_json(message.payload)
    return next(b for b in reply.blocks if isinstance(b, Choices) and b.id == TRIAGE_ACTION)


async def _filed(engine: Engine) -> tuple[DemandRequest, Choices]:
    await file_request(Chat(engine, email=DANA), "Cash forecast for treasury")
    request = (await rows_of(engine.db, DemandRequest))[-1]
    [message] = [m for m in await _updates(engine, 1) if m.subject == request.key]
    assert message.kind == "request_submitted"
    return request, _notification(message)


async def test_accept_on_the_notification_tells_the_requester_once(engine: Engine) -> None:
    request, actions = await _filed(engine)
    assert [o.label for o in actions.options] == [
        "Accept",
        "Ask the requester",
        "Assign to another BRM",
        "Link as duplicate",
        "Reject",
    ]
    alice = Chat(engine, email=ALICE)
    assert "moved from submitted to triaged. The requester has been told." in await alice.press_in(actions, "Accept")
    assert "already triaged" in await alice.press_in(actions, "Accept")  # a second press changes nothing
    told = await _updates(engine, 4)
    assert len(told) == 1 and "is now triaged" in codec.reply_from_json(told[0].payload).plain_text()
    assert (await _get(engine, request.id)).status == "triaged"
    # Someone else's press is refused and changes nothing.
    assert "couldn't find" in await Chat(engine, email=BEN).press_in(actions, "Reject")
    assert (await _get(engine, request.id)).status == "triaged"


async def test_ask_the_requester_and_the_answer_comes_back(engine: Engine) -> None:
    request, actions = await _filed(engine)
    alice, dana = Chat(engine, email=ALICE), Chat(engine, email=DANA)
    assert "What do you want to ask" in await alice.press_in(actions, "Ask the requester")
    assert "I asked the requester" in await alice.say("Which bank accounts are in scope?")
    [question] = await _updates(engine, 4)
    asked = codec.reply_from_json(question.payload)
    assert "Which bank accounts are in scope?" in asked.plain_text()
    answer_button = next(b for b in asked.blocks if isinstance(b, Choices))
    assert "Type your answer" in await dana.press_in(answer_button, "Answer")
    assert "passed that on" in await dana.say("All euro accounts")
    back = [m for m in await _updates(engine, 1) if m.kind == "request_update"]
    assert len(back) == 1 and "All euro accounts" in codec.reply_from_json(back[0].payload).plain_text()
    notes = [(n.kind, n.text) for n in await rows_of(engine.db, RequestNote, RequestNote.request_id == request.id)]
    assert notes == [("question", "Which bank accounts are in scope?"), ("answer", "All euro accounts")]


async def test_reject_assign_and_link_from_the_notification(engine: Engine) -> None:
    request, actions = await _filed(engine)
    alice = Chat(engine, email=ALICE)
    assert "Why is" in await alice.press_in(actions, "Reject")
    assert "needs a reason" in await alice.say("skip")
    assert "moved from submitted to rejected" in await alice.say("Covered by the ERP upgrade")
    told = await _updates(engine, 4)
    assert len(told) == 1 and "Covered by the ERP upgrade" in codec.reply_from_json(told[0].payload).plain_text()

    request, actions = await _filed(engine)
    assert "Who should take" in await alice.press_in(actions, "Assign to another BRM")
    assert "now with Ben Okafor" in await alice.press("Ben Okafor (ben@example.com)")
    assert (await _get(engine, request.id)).brm_id == 2
    assert [m.kind for m in await _updates(engine, 2)] == ["request_assigned"]

    request, actions = await _filed(engine)
    assert "duplicate of" in await alice.press_in(actions, "Link as duplicate")
    assert "now follows DR-1" in await alice.say("DR-1")
    assert (await _get(engine, request.id)).duplicate_of_id == 1


async def test_not_sure_requests_reach_every_brm_and_the_triage_queue(engine: Engine) -> None:
    dana = Chat(engine, email=DANA)
    for line in (
        "new request",
        "Travel booking tool",
        "skip",
        "Trips are booked in minutes",
        "idea",
        "low",
        "1",  # no particular date
        "Edit a field",
        "Business partner",
        "Not sure",
    ):
        await dana.say(line)
    assert "so I'm asking the BRM team to triage it" in await dana.say("submit")
    request = (await rows_of(engine.db, DemandRequest))[-1]
    assert {m.recipient_id for m in await rows_of(engine.db, OutboxMessage)} == {1, 2}
    queue = await Chat(engine, email=BEN).say("triage")
    assert f"{request.key} · Travel booking tool — submitted, no business partner, waiting today" in queue
    assert "for BRMs and leaders" in await dana.say("triage")
    assert request.key in await Chat(engine, email=PRIYA).say("triage")


async def test_pipeline_counts_by_status_with_the_oldest_items(engine: Engine, clock) -> None:
    text = await Chat(engine, email=ALICE).say("pipeline")
    assert "Pipeline of your business partners" in text
    assert "Shaping: 2" in text  # DR-1 (Finance) and DR-10 (People & Culture)
    assert "• Shaping: DR-1 Automate month-end accruals" in text
    leader = await Chat(engine, email=PRIYA).say("pipeline")
    assert "Pipeline of everyone" in leader and "Submitted: 2" in leader
    assert "for BRMs and leaders" in await Chat(engine, email=DANA).say("pipeline")


async def test_help_shows_each_role_its_commands(engine: Engine) -> None:
    assert "*accept DR-13*" in await Chat(engine, email=ALICE).say("help")
    requester = await Chat(engine, email=DANA).say("help")
    assert "*accept DR-13*" not in requester and "*triage*" not in requester and "*comment DR-13" in requester
    leader = await Chat(engine, email=PRIYA).say("help")
    assert "*assign DR-13" in leader and "*accept DR-13*" not in leader


async def test_imported_brm_role_is_used(engine: Engine) -> None:
    people = {p.email: p for p in await rows_of(engine.db, Person)}
    assert people[ALICE].role == "brm"
