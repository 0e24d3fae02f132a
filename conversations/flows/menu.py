"""The menu: answers *help*, anything unrecognised, and the buttons that start a flow."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import ClassVar

from conversations.catalog import Catalog, Command, HomeButton
from conversations.engine import ActionHandler, Flow, FlowState, Step, StepHandler, Turn
from conversations.flows.common import pick, question
from conversations.messages import Inbound, Option, Reply, Text, TextStyle


class MenuFlow:
    """Says hello, lists what the other flows offer (from their declarations) and hands over."""

    name: ClassVar[str] = "menu"
    title: ClassVar[str] = "menu"
    keeps_draft: ClassVar[bool] = False
    version: ClassVar[int] = 1
    commands: ClassVar[tuple[Command, ...]] = (
        Command(words=("hello", "hi", "hey", "start"), help="", slash=("", "help")),
    )
    home: ClassVar[HomeButton | None] = None
    form_id: ClassVar[str | None] = None
    form_words: ClassVar[frozenset[str]] = frozenset()
    actions: Mapping[str, ActionHandler] = MappingProxyType({})

    def __init__(self, flows: Sequence[Flow] = ()) -> None:
        self._catalog = Catalog([*flows, self])
        self.steps: Mapping[str, StepHandler] = {"pick": self._pick}

    async def start(self, turn: Turn, argument: str) -> Step:
        if argument:
            shown = argument if len(argument) <= 60 else argument[:60] + "…"
            intro = Reply.text(f"I'm not sure what you mean by “{shown}”.", TextStyle.MUTED)
            return Step((intro, self._question(turn)), "pick", {})
        greeting = Reply.of(Text(f"Hi {turn.person.name}!"), Text(self._catalog.help_text(turn.person.role)))
        return Step((greeting, self._question(turn)), "pick", {})

    async def _pick(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        options = self._catalog.home_options(turn.person.role)
        if inbound.action is not None:
            option = next((o for o in options if o.id == inbound.action.value), None)
            if option is None:
                return Step((self._question(turn),), "pick", {})
            return Step.hand_to(option.id, "")
        option = pick(inbound.text, options)
        if option is None:
            # Not a menu answer: read it afresh, as if no menu had been shown.
            return Step.hand_to("", inbound.text)
        return Step.hand_to(option.id, "")

    async def reprompt(self, turn: Turn, state: FlowState) -> tuple[Reply, ...]:
        return (self._question(turn),)

    def _question(self, turn: Turn) -> Reply:
        return menu_question(self._catalog.home_options(turn.person.role))


def menu_question(options: tuple[Option, ...], prompt: str = "What would you like to do?") -> Reply:
    """The menu's buttons; a flow that ends with them hands the conversation to the menu."""
    return question("menu:pick", prompt, options)
