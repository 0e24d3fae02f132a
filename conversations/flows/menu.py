"""The menu: answers *help*, anything unrecognised, and the buttons that start a flow."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from conversations.engine import Flow, FlowState, Step, Turn
from conversations.flows.common import pick, question
from conversations.messages import Inbound, Option, Reply, Text, TextStyle

MENU_OPTIONS = (
    Option("intake", "New request", primary=True),
    Option("mine", "My requests"),
    Option("status", "Check a status"),
)

HELP = (
    "I capture demand requests and keep you posted on them. You can type:\n"
    "• *new request* (or *request <title>*) to file a demand request\n"
    "• *my requests* to list yours with their status\n"
    "• *status DR-42* to see one request and its history\n"
    "• *cancel* to stop what we are doing, *help* for this list"
)


class MenuFlow:
    name: ClassVar[str] = "menu"
    title: ClassVar[str] = "menu"
    keeps_draft: ClassVar[bool] = False
    triggers: ClassVar[frozenset[str]] = frozenset({"hello", "hi", "hey", "start"})

    def __init__(self, flows: Sequence[Flow] = ()) -> None:
        self._flows = {f.name for f in flows}

    def help_text(self) -> Reply:
        return Reply.text(HELP)

    async def start(self, turn: Turn, argument: str) -> Step:
        if argument:
            shown = argument if len(argument) <= 60 else argument[:60] + "…"
            intro = Reply.text(f"I'm not sure what you mean by “{shown}”.", TextStyle.MUTED)
            return Step((intro, self._question()), "pick", {})
        return Step((Reply.of(Text(f"Hi {turn.person.name}!"), Text(HELP)), self._question()), "pick", {})

    async def step(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        if inbound.action is not None:
            option = next((o for o in MENU_OPTIONS if o.id == inbound.action.value), None)
            if option is None:
                return Step((self._question(),), "pick", {})
            return Step.hand_to(option.id, "")
        option = pick(inbound.text, MENU_OPTIONS)
        if option is None:
            # Not a menu answer: read it afresh, as if no menu had been shown.
            return Step.hand_to("", inbound.text)
        return Step.hand_to(option.id, "")

    async def reprompt(self, turn: Turn, state: FlowState) -> tuple[Reply, ...]:
        return (self._question(),)

    @staticmethod
    def _question() -> Reply:
        return menu_question()


def menu_question(prompt: str = "What would you like to do?") -> Reply:
    """The menu's buttons; a flow that ends with them hands the conversation to the menu."""
    return question("menu:pick", prompt, MENU_OPTIONS)
