"""Flows declare themselves; the engine runs actions without a conversation and resets stale steps."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar

import pytest
import sqlalchemy as sa

from conversations.catalog import Catalog, Command, HomeButton
from conversations.engine import ActionHandler, Engine, FlowState, Step, StepHandler, Turn
from conversations.flows import default_flows
from conversations.messages import Action, Inbound, Reply
from storage.db import Database
from storage.models import ConversationState, Person, StatusChange
from storage.tx import INTEGRITY_ERRORS
from tests.helpers import Chat, rows_of


class KudosFlow:
    """A flow added by a test: it must appear in help, the menu and /brm without touching anything else."""

    name: ClassVar[str] = "kudos"
    title: ClassVar[str] = "kudos"
    keeps_draft: ClassVar[bool] = False
    version: ClassVar[int] = 1
    commands: ClassVar[tuple[Command, ...]] = (
        Command(words=("kudos",), help="*kudos* to thank someone", slash=("kudos",), example="kudos"),
    )
    home: ClassVar[HomeButton | None] = HomeButton("Send kudos")
    form_id: ClassVar[str | None] = None
    form_words: ClassVar[frozenset[str]] = frozenset()

    def __init__(self) -> None:
        self.steps: Mapping[str, StepHandler] = {}
        self.actions: Mapping[str, ActionHandler] = MappingProxyType({"kudos:thank": self._thank})

    async def start(self, turn: Turn, argument: str) -> Step:
        return Step.end(Reply.text("Kudos sent."))

    async def reprompt(self, turn: Turn, state: FlowState) -> tuple[Reply, ...]:
        return ()

    async def _thank(self, turn: Turn, inbound: Inbound) -> Step:
        assert inbound.action is not None
        person = await turn.store.people.get(int(inbound.action.value))
        if person is None:
            return Step.end(Reply.text("That person is no longer here."))
        return Step.end(Reply.text(f"You thanked {person.name}."))


def _engine(db: Database, clock: object, *extra: object) -> Engine:
    flows = default_flows()
    flows.pop()  # the menu, rebuilt below with the extra flows
    from conversations.flows.menu import MenuFlow

    return Engine(db, [*flows, *extra, MenuFlow([*flows, *extra])], clock=clock, default_timezone="UTC")  # type: ignore[list-item, arg-type]


async def test_a_new_flow_shows_up_in_help_menu_and_slash_verbs(demo_db: Database, clock) -> None:
    engine = _engine(demo_db, clock, KudosFlow())
    chat = Chat(engine)
    text = await chat.say("help")
    assert "• *kudos* to thank someone" in text
    assert "Send kudos" in [o.label for o in chat.last_choices.options]
    assert engine.catalog.slash("kudos") is not None and engine.catalog.slash("kudos").flow == "kudos"  # type: ignore[union-attr]
    assert "kudos" in engine.catalog.slash_help()
    assert await chat.say("kudos") == "Kudos sent."


def test_two_flows_claiming_one_word_fail_at_start() -> None:
    class Clash(KudosFlow):
        name: ClassVar[str] = "clash"
        commands: ClassVar[tuple[Command, ...]] = (Command(words=("my requests",), help="clash"),)

    with pytest.raises(ValueError, match="'my requests' is claimed by both"):
        Catalog([*default_flows(), Clash()])


async def test_an_action_on_a_message_the_bot_sent_first_works_mid_intake_and_leaves_the_intake_as_it_was(
    demo_db: Database, clock
) -> None:
    engine = _engine(demo_db, clock, KudosFlow())
    chat = Chat(engine)
    await chat.say("new request")
    asked = await chat.say("Invoice OCR for accounts payable")
    assert "describe" in asked.casefold() or "description" in asked.casefold()
    [alice] = await rows_of(demo_db, Person, Person.email == "alice@example.com")
    chat.replies = await engine.handle(chat._inbound(action=Action("kudos:thank", str(alice.id))))
    assert chat.text == "You thanked Alice Moreno."
    # The intake goes on from the same question: the description.
    answer = await chat.say("Accounts payable types every invoice by hand today.")
    assert "outcome" in answer.casefold()


async def test_an_action_checks_its_subject_in_the_database(demo_db: Database, clock) -> None:
    engine = _engine(demo_db, clock, KudosFlow())
    chat = Chat(engine)
    chat.replies = await engine.handle(chat._inbound(action=Action("kudos:thank", "99999")))
    assert chat.text == "That person is no longer here."


async def test_a_saved_step_that_no_longer_exists_is_reset_with_a_message(engine: Engine) -> None:
    chat = Chat(engine)
    await chat.say("new request")
    async with engine.db.transaction() as store:
        await store.rows(
            sa.update(ConversationState.__table__).values(step="a_step_removed_in_an_upgrade")  # type: ignore[attr-defined]
        )
    fresh = Engine(engine.db, default_flows(), clock=engine._clock, default_timezone="UTC")  # no memory of the state
    text = await Chat(fresh).say("Invoice OCR")
    assert "I was updated since your last message" in text and "Nothing was submitted" in text
    [row] = await rows_of(engine.db, ConversationState)
    assert row.step != "a_step_removed_in_an_upgrade"


async def test_a_state_saved_by_an_older_flow_version_is_reset(engine: Engine) -> None:
    chat = Chat(engine)
    await chat.say("new request")
    async with engine.db.transaction() as store:
        await store.rows(sa.update(ConversationState.__table__).values(schema_version=0))  # type: ignore[attr-defined]
    fresh = Engine(engine.db, default_flows(), clock=engine._clock, default_timezone="UTC")
    assert "I was updated since your last message" in await Chat(fresh).say("Invoice OCR")


async def test_starting_afresh_sets_the_unfinished_draft_aside(engine: Engine) -> None:
    chat = Chat(engine)
    await chat.say("new request")
    await chat.say("Invoice OCR for accounts payable")
    replies = await engine.handle(chat._inbound(text="my requests"), afresh=True)
    text = "\n".join(r.plain_text() for r in replies)
    assert "I set aside your unfinished demand request." in text and "Your requests" in text


class BrokenFlow(KudosFlow):
    """A flow with a bug: it writes a status change for a request that does not exist."""

    name: ClassVar[str] = "broken"
    commands: ClassVar[tuple[Command, ...]] = (Command(words=("break",), help=""),)
    home: ClassVar[HomeButton | None] = None
    runs = 0

    def __init__(self) -> None:
        super().__init__()
        self.actions = MappingProxyType({})

    async def start(self, turn: Turn, argument: str) -> Step:
        BrokenFlow.runs += 1
        await turn.store.add(StatusChange(request_id=999_999, to_status="triaged", at=turn.now))
        return Step.end(Reply.text("unreachable"))


async def test_a_constraint_bug_surfaces_as_itself_and_is_not_retried(demo_db: Database, clock) -> None:
    engine = _engine(demo_db, clock, BrokenFlow())
    BrokenFlow.runs = 0
    with pytest.raises(INTEGRITY_ERRORS):
        await Chat(engine).say("break")
    assert BrokenFlow.runs == 1
