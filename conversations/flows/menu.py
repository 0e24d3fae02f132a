"""The menu: answers *help*, anything unrecognised, and the buttons that start a flow."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import ClassVar

from conversations.catalog import GLOBAL_CANCEL, GLOBAL_HELP, Catalog, Command
from conversations.engine import Flow, FlowBase, FlowState, Step, StepHandler, Turn
from conversations.flows.common import (
    OFFER_SCORE,
    USE_SCORE,
    closest,
    day_first,
    pick,
    question,
    show_date,
    split_date,
)
from conversations.messages import Inbound, Option, Reply, Text, TextStyle

BARE_KEY = re.compile(r"^\s*(?:dr\s*-?\s*|#)\d{1,9}\s*$", re.IGNORECASE)
REQUEST_FLOW = "intake"
SENTENCE_WORDS = 3  # this many words or more, not a command: perhaps a need, offered as a request
NOT_A_NEED = re.compile(
    r"^(?:what|how|who|why|when|where|which|can\s+you|could\s+you|do\s+you|are\s+you|is\s+there|thank|thanks|"
    r"ok|okay|bye|cheers|great|good\s+(?:morning|afternoon|evening))\b|\?\s*$",
    re.IGNORECASE,
)
YES_NO = (Option("yes", "Yes", primary=True), Option("no", "No"))


class MenuFlow(FlowBase):
    """Says hello, lists what the other flows offer (from their declarations) and hands over."""

    name: ClassVar[str] = "menu"
    title: ClassVar[str] = "menu"
    commands: ClassVar[tuple[Command, ...]] = (
        Command(words=("hello", "hi", "hey", "start"), help="", slash=("", "help")),
    )

    def __init__(self, flows: Sequence[Flow] = ()) -> None:
        self._catalog = Catalog([*flows, self])
        self.steps: Mapping[str, StepHandler] = {"pick": self._pick, "meant": self._meant, "offer": self._offer}

    async def start(self, turn: Turn, argument: str) -> Step:
        """The menu; with ``argument`` (text nothing else understood) a reading of it first: a bare
        key shows that request, a typo of a command runs it (or asks), a sentence may be a need."""
        if argument:
            return await self._understand(turn, argument)
        greeting = Reply.of(Text(f"Hi {turn.person.name}!"), Text(self._catalog.help_text(turn.person.role)))
        return Step((greeting, self._question(turn)), "pick", {})

    async def _understand(self, turn: Turn, text: str) -> Step:
        if BARE_KEY.match(text):
            return Step.hand_to("", f"status {text.strip()}")
        corrected = self._corrected(text)
        if corrected is not None:
            command, score = corrected
            if score >= USE_SCORE:
                note = Reply.text(f"(I read that as *{command}*.)", TextStyle.MUTED)
                return Step.hand_to("", command, note)
            return Step((question("menu:meant", f"Did you mean *{command}*?", YES_NO),), "meant", {"command": command})
        shown = text if len(text) <= 60 else text[:60] + "…"
        wanted = len(text.split()) >= SENTENCE_WORDS and not NOT_A_NEED.search(text)
        if wanted and REQUEST_FLOW in {f.name for f in self._catalog.flows}:
            from conversations.flows.intake import title_of

            today = turn.now.astimezone(turn.tz).date()
            sender = turn.inbound.sender
            head, when = split_date(text, today=today, day_first=day_first(sender.locale if sender else None))
            title = title_of(head)[:200]
            by = f", needed by {show_date(when)}" if when else ""
            prompt = f"Shall I start a demand request “{title}”{by}?"
            offer = (Option("yes", "Yes, start it", primary=True), Option("no", "No"))
            return Step((question("menu:offer", prompt, offer),), "offer", {"text": text[:1000]})
        intro = Reply.text(f"I'm not sure what you mean by “{shown}”.", TextStyle.MUTED)
        return Step((intro, self._question(turn)), "pick", {})

    def _corrected(self, text: str) -> tuple[str, float] | None:
        """The command ``text`` is a typo of (its first words, the rest kept), and how close."""
        words = text.split()
        known = [w for w, _ in self._catalog.triggers] + sorted(GLOBAL_HELP | GLOBAL_CANCEL)
        best: tuple[str, float] | None = None
        for n in range(min(3, len(words)), 0, -1):
            near = closest(" ".join(words[:n]), known)
            if near is not None and near[1] >= OFFER_SCORE and (best is None or near[1] > best[1]):
                best = (" ".join([near[0], *words[n:]]), near[1])
        return best

    async def _meant(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        said = inbound.action.value if inbound.action is not None else inbound.text
        option = next((o for o in YES_NO if o.id == said), None) if inbound.action else pick(said, YES_NO)
        if option is None:
            return Step.hand_to("", said)  # something else: read it afresh
        if option.id == "yes":
            return Step.hand_to("", str(state.data["command"]))
        return Step((self._question(turn),), "pick", {})

    async def _offer(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        said = inbound.action.value if inbound.action is not None else inbound.text
        options = (Option("yes", "Yes, start it"), Option("no", "No"))
        option = next((o for o in options if o.id == said), None) if inbound.action else pick(said, options)
        if option is None and inbound.action is None and said.casefold().strip(" .!") in ("yes", "y", "ok", "sure"):
            option = options[0]
        if option is None:
            return Step.hand_to("", said)
        if option.id == "yes":
            return Step.hand_to(REQUEST_FLOW, str(state.data["text"]))
        return Step((self._question(turn),), "pick", {})

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
        if state.step == "meant":
            return (question("menu:meant", f"Did you mean *{state.data.get('command')}*?", YES_NO),)
        return (self._question(turn),)

    def _question(self, turn: Turn) -> Reply:
        return menu_question(self._catalog.home_options(turn.person.role))


def menu_question(options: tuple[Option, ...], prompt: str = "What would you like to do?") -> Reply:
    """The menu's buttons; a flow that ends with them hands the conversation to the menu."""
    return question("menu:pick", prompt, options)
