"""Demand intake: a short conversation (or one form) that files a complete demand request.

The diagram is in ``docs/flows/intake.md``. Chat and form share one set of field rules,
so a request filed from a Slack modal or a Teams card is held to the same limits as one
typed in the terminal.
"""

from __future__ import annotations

import dataclasses
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

from conversations.catalog import FORM_SUBMIT, Command, HomeButton
from conversations.engine import FlowBase, FlowState, Step, StepHandler, Turn
from conversations.flows.common import (
    SKIP_WORDS,
    USE_SCORE,
    check_text,
    closest,
    day_first,
    not_an_option,
    parse_date,
    pick,
    question,
    show_date,
    split_date,
    warn,
)
from conversations.flows.lifecycle import NOTE_MAX, UPDATE_KIND, triage_choices
from conversations.matching import most_alike
from conversations.messages import Choices, Facts, Field, Form, Inbound, Option, Reply, Text, TextStyle
from storage.models import BusinessPartner, Category, DemandRequest, NoteKind, Urgency
from storage.store import NewRequest, Store

TITLE_MAX = 200
DESCRIPTION_MAX = 4000
OUTCOME_MAX = 2000
NO_PARTNER = "none"
SOURCE_LINK_MAX = 1000  # the columns' lengths (storage/models.py DemandRequest)
SOURCE_CHANNEL_MAX = 128
PLATFORM_DOMAINS = ("slack.com", "teams.microsoft.com")  # the hosts and their subdomains
PLATFORM_HOSTS = frozenset({*PLATFORM_DOMAINS, "teams.cloud.microsoft"})
CHANNEL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9:@._;=,-]*")
FORM_TOKEN = "form_token"  # one per opened form: a second submission of it files nothing

FIELDS = ("title", "description", "outcome", "category", "urgency", "partner", "desired_date")
LABELS = {
    "title": "Title",
    "description": "Description",
    "outcome": "Business outcome",
    "category": "Category",
    "urgency": "Urgency",
    "partner": "Business partner",
    "desired_date": "Desired date",
}
CATEGORY_OPTIONS = tuple(Option(c.value, c.value.capitalize()) for c in Category)
URGENCY_OPTIONS = tuple(Option(u.value, u.value.capitalize()) for u in Urgency)
MEANINGS = {
    Category.IDEA.value: "an early thought worth exploring, no commitment yet",
    Category.PROJECT.value: "new work of some size, with its own budget or team",
    Category.ENHANCEMENT.value: "a change to a system or service you already use",
    Category.SERVICE_REQUEST.value: "something standard to order: access, a report, a licence",
    Category.PROBLEM.value: "something broken or in the way today",
    Urgency.LOW.value: "nice to have; no date presses",
    Urgency.MEDIUM.value: "needed, and can wait for the next planning round",
    Urgency.HIGH.value: "costs the business if it waits for months",
    Urgency.CRITICAL.value: "the business is blocked or at risk now",
}
CONFIRM_OPTIONS = (
    Option("submit", "Submit", primary=True),
    Option("edit", "Edit a field"),
    Option("cancel", "Cancel", danger=True),
)
NO_DATE = Option("skip", "No particular date")
YES_NO = (Option("yes", "Yes", primary=True), Option("no", "No"))
YES_WORDS = frozenset({"y", "yep", "yeah", "yes please", "sure", "ok", "okay"})
NO_WORDS = frozenset({"n", "nope", "no thanks"})
DRAFT_OPTIONS = (Option("continue", "Continue", primary=True), Option("discard", "Discard", danger=True))
NO_COMMENT = Option("none", "No comment")
GREETINGS = frozenset({"hi", "hello", "hey", "hiya", "start", "good morning", "morning", "good afternoon", "yo"})
PAUSE = timedelta(minutes=30)
# The chat asks for what is still missing, in this order; an answer may carry the next ones.
ORDER = ("title", "details", "outcome", "category", "urgency", "desired_date")
CHOICE_STEPS = frozenset({"category", "urgency", "partner"})
FREE_TEXT = frozenset({"title", "details", "description", "outcome"})
OUTCOME_LABEL = re.compile(r"(?:^|[\s.;,])(?:business\s+)?(?:outcome|goal|benefit)\s*[:\-–—]\s*", re.IGNORECASE)
DESCRIPTION_LABEL = re.compile(r"^\s*description\s*[:\-–—]\s*", re.IGNORECASE)
SO_THAT = re.compile(r"[\s,;]+(?:so\s+that|in\s+order\s+to|so\s+we\s+can|so\s+they\s+can)\s+", re.IGNORECASE)
WANT = re.compile(
    r"^(?:(?:hi|hello|hey)[,!]?\s+)?(?:please\s+)?(?:i|we)\s+(?:really\s+)?(?:need|want|would\s+like|'d\s+like|"
    r"require)\s+(?:to\s+have\s+|to\s+get\s+)?(?:(?:a|an|the|some)\s+)?|^(?:can|could)\s+(?:we|i)\s+(?:get|have)\s+"
    r"(?:(?:a|an|the|some)\s+)?",
    re.IGNORECASE,
)
KEY_ONLY = re.compile(r"^(?:dr\s*-?\s*|#)(\d{1,9})$", re.IGNORECASE)
KEY_FIRST = re.compile(r"^(?:dr\s*-?\s*|#)?\d{1,9}\b", re.IGNORECASE)


def split_details(text: str) -> tuple[str, str | None]:
    """(description, outcome) from one answer that gives both ("… so that …", "Outcome: …");
    (text, None) when it gives only one."""
    labelled = OUTCOME_LABEL.search(text)
    if labelled is not None:
        description = DESCRIPTION_LABEL.sub("", text[: labelled.start()]).strip(" \n.;,")
        outcome = text[labelled.end() :].strip()
        return description, outcome or None
    goal = SO_THAT.search(text)
    if goal is not None and goal.start() > 0:
        outcome = text[goal.end() :].strip()
        return text[: goal.start()].strip(" ,;"), (outcome[:1].upper() + outcome[1:]) if outcome else None
    return text, None


def title_of(sentence: str) -> str:
    """A title from how people say what they need: "I need a CRM dashboard" -> "CRM dashboard"."""
    stripped = WANT.sub("", sentence.strip(), count=1).strip()
    if not stripped or stripped == sentence.strip():
        return sentence.strip()
    return stripped[:1].upper() + stripped[1:]


def command_in(turn: Turn, text: str, *, own: frozenset[str] = frozenset()) -> str | None:
    """The command ``text`` looks like (``my requests``, ``status DR-2``, a bare ``DR-2``, a close
    typo of a command), or None for an ordinary answer. ``own`` triggers are not commands here."""
    said = " ".join(text.casefold().split()).rstrip(".!?")
    if KEY_ONLY.fullmatch(said):
        return f"status {text.strip()}"
    catalog = turn.catalog
    if catalog is None:
        return None
    found = catalog.trigger_of(said)
    if found is not None and found[1] not in own:
        rest = said[len(found[1]) :].strip()
        if not rest or KEY_FIRST.match(rest):
            return text.strip()
    if len(said.split()) <= 3:
        words = [w for w, _ in catalog.triggers if w not in own and w not in GREETINGS]
        near = closest(said, words)
        if near is not None and near[1] >= USE_SCORE:
            return near[0]
    return None


@dataclass(slots=True)
class _Context:
    """What the intake rules need besides the answer; the partner list is read only when used."""

    store: Store
    own_partner_id: int | None
    today: date
    day_first: bool = True
    partners: Sequence[BusinessPartner] = ()
    loaded: bool = False

    async def ensure(self) -> _Context:
        if not self.loaded:
            self.partners, self.loaded = await self.store.partners.all(), True
        return self

    def partner_options(self) -> tuple[Option, ...]:
        own = [p for p in self.partners if p.id == self.own_partner_id]
        rest = [p for p in self.partners if p.id != self.own_partner_id]
        options = [Option(str(p.id), p.name + (" (yours)" if p.id == self.own_partner_id else "")) for p in own]
        options += [Option(str(p.id), p.name) for p in rest]
        return (*options, Option(NO_PARTNER, "Not sure"))

    def partner_name(self, partner_id: Any, *, yours: bool = False) -> str:
        found = next((p.name for p in self.partners if p.id == partner_id), None)
        if found is not None and yours and partner_id == self.own_partner_id:
            return f"{found} (yours)"
        return found or "Not sure (a BRM will assign it)"


def _choose(text: str, options: tuple[Option, ...], by_id: bool) -> Option | None:
    if by_id:
        return next((o for o in options if o.id == text), None)
    return pick(text, options)


def required(label: str) -> str:
    return f"The {label} is required, so it can't be skipped."


def validate(field: str, raw: str, ctx: _Context, *, by_id: bool = False) -> tuple[Any, str | None]:
    """The stored value of ``field`` read from ``raw``, or an error that says what to fix.

    ``by_id``: ``raw`` is an option id (a pressed button, a form's select), never a position.
    """
    text = raw.strip()
    skipped = text.casefold().rstrip(".!") in SKIP_WORDS
    match field:
        case "title":
            if skipped:
                return None, required("title") + " What do you need, in a few words?"
            return text, check_text("title", text, minimum=3, maximum=TITLE_MAX)
        case "description":
            if not text or skipped:
                return None, None
            return text, check_text("description", text, minimum=1, maximum=DESCRIPTION_MAX)
        case "outcome":
            if skipped:
                return None, required("business outcome") + " Say in a sentence what will be better."
            return text, check_text("business outcome", text, minimum=10, maximum=OUTCOME_MAX)
        case "category" | "urgency":
            options = CATEGORY_OPTIONS if field == "category" else URGENCY_OPTIONS
            option = _choose(text, options, by_id)
            if option is None and skipped and not by_id:
                return None, required(field) + f" Pick one of the {len(options)} options."
            return (option.id, None) if option else (None, not_an_option(text, options))
        case "partner":
            options = ctx.partner_options()
            option = _choose(text, options, by_id)
            if option is None:
                return None, not_an_option(text, options)
            return (None if option.id == NO_PARTNER else int(option.id)), None
        case "desired_date":
            if not text or skipped or text.casefold() in {NO_DATE.label.casefold(), "1", NO_DATE.id}:
                return None, None
            value, error = parse_date(text, today=ctx.today, day_first=ctx.day_first)
            return (value.isoformat() if value else None), error
    raise KeyError(field)


def _options_of(field: str, ctx: _Context) -> tuple[Option, ...]:
    return {"category": CATEGORY_OPTIONS, "urgency": URGENCY_OPTIONS}.get(field) or ctx.partner_options()


def split_choice(field: str, text: str, ctx: _Context) -> tuple[str, str]:
    """(the answer to ``field``, what follows it for the next questions): "project, high, end of
    March" answers the category and hands "high, end of March" on."""
    options = _options_of(field, ctx)
    if pick(text, options) is not None:
        return text, ""
    match = re.match(r"^(.+?)\s*[,;/]\s*(.+)$", text, re.DOTALL)
    if match is not None and pick(match.group(1), options) is not None:
        return match.group(1), match.group(2)
    words = text.split()
    for n in range(min(3, len(words) - 1), 0, -1):
        head = " ".join(words[:n])
        if pick(head, options) is not None:
            return head, " ".join(words[n:])
    return text, ""


def _meanings(options: tuple[Option, ...]) -> str:
    return "\n".join(f"• *{o.label}*: {MEANINGS[o.id]}" for o in options)


def already_submitted() -> Reply:
    """A form submitted again: nothing filed; adapters show the form as sent."""
    return Reply(blocks=(Text("That form was already submitted; I filed it once.", TextStyle.MUTED),),
                 ignored_action=True)


class IntakeFlow(FlowBase):
    name: ClassVar[str] = "intake"
    title: ClassVar[str] = "demand request"
    keeps_draft: ClassVar[bool] = True
    version: ClassVar[int] = 2
    commands: ClassVar[tuple[Command, ...]] = (
        Command(
            words=("new request", "request", "new", "demand", "new demand", "idea", "submit", "capture"),
            help="*new request* (or *request <title>*) to file a demand request",
            slash=("request", "new", "capture"),
            form=True,
            example="new request",
        ),
    )
    home: ClassVar[HomeButton | None] = HomeButton("New request", primary=True)
    form_id: ClassVar[str | None] = "intake"
    form_words: ClassVar[frozenset[str]] = frozenset({"form", "request form", "new request form", "open form"})

    def __init__(self) -> None:
        handlers: dict[str, StepHandler] = {name: self._step for name in (*FIELDS, *ORDER)}
        for name in ("edit_value", "edit_field", "confirm", "duplicate", "follow_note", "command", "draft"):
            handlers[name] = self._step
        self.steps: Mapping[str, StepHandler] = handlers
        self._own = frozenset(w for c in self.commands for w in c.words)

    # --- chat ---------------------------------------------------------------------------------

    async def start(self, turn: Turn, argument: str) -> Step:
        """Start a request; ``argument`` may be its title, or a sentence with a date in it
        ("I need a CRM dashboard for sales by March")."""
        intro = Reply.text("Let's capture your demand request. Type *cancel* at any time to stop.")
        ctx = await self._context(turn)
        # The partner is the person's own, or "Not sure" (the BRM team triages it): never a question,
        # always shown in the summary, where it can be changed.
        data: dict[str, Any] = {"partner": turn.person.partner_id}
        if argument:
            head, when = split_date(argument, today=ctx.today, day_first=ctx.day_first)
            if when is not None:
                data["desired_date"] = when.isoformat()
            title, error = validate("title", title_of(head), ctx)
            if error is None:
                data["title"] = title
                return await self._after_title(turn, data, ctx, (intro,))
            return Step((intro, warn(error), await self._ask(turn, "title", data, ctx)), "title", data)
        return Step((intro, await self._ask(turn, "title", data, ctx)), "title", data)

    async def reprompt(self, turn: Turn, state: FlowState) -> tuple[Reply, ...]:
        data = dict(state.data)
        ctx = await self._context(turn)
        if state.step in FIELDS or state.step in ORDER:
            return (await self._ask(turn, state.step, data, ctx),)
        if state.step == "edit_value":
            return (await self._ask(turn, data["editing"], data, ctx, "edit_value"),)
        if state.step == "edit_field":
            return (self._which_field(),)
        if state.step == "duplicate":
            return (await self._duplicate_question(turn, data),)
        if state.step == "follow_note":
            return (self._follow_question(data),)
        if state.step == "command":
            return (self._command_question(data),)
        if state.step == "draft":
            return (self._draft_question(data),)
        return await self._summary(data, ctx)

    async def _step(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        data: dict[str, Any] = dict(state.data)
        said = inbound.action.value if inbound.action else inbound.text
        ctx = await self._context(turn)
        typed = inbound.action is None
        if state.step == "partner" or data.get("editing") == "partner":
            await ctx.ensure()

        if state.step == "command":
            return await self._command_answer(turn, data, said, typed, ctx)
        if state.step == "draft":
            return await self._draft_answer(turn, data, said, typed, ctx)
        if state.step == "follow_note":
            return await self._follow_note(turn, data, said, typed)

        if typed:
            casefolded = " ".join(said.casefold().split()).rstrip(".!?")
            if casefolded in GREETINGS or (turn.idle >= PAUSE and not self._answers(state.step, said, ctx, data)):
                data["back"] = state.step
                return Step((self._draft_question(data),), "draft", data)
            if state.step in FREE_TEXT or (state.step == "edit_value" and data.get("editing") in FREE_TEXT) or (
                not self._answers(state.step, said, ctx, data)
            ):
                command = command_in(turn, said, own=self._own)
                if command is not None:
                    data["back"], data["pending"], data["command"] = state.step, said, command
                    return Step((self._command_question(data),), "command", data)
        return await self._answer(turn, state.step, data, said, ctx, by_id=not typed)

    def _answers(self, step: str, said: str, ctx: _Context, data: Mapping[str, Any]) -> bool:
        """Whether ``said`` is a fitting answer to a choice step (free text always fits)."""
        field = data.get("editing") if step == "edit_value" else step
        if field in ("category", "urgency", "partner"):
            return pick(split_choice(str(field), said, ctx)[0], _options_of(str(field), ctx)) is not None
        if step == "confirm":
            return pick(said, CONFIRM_OPTIONS) is not None
        if step == "edit_field":
            return pick(said, self._field_options()) is not None
        if step == "duplicate":
            return pick(said, self._duplicate_options(data)) is not None
        if field == "desired_date":
            return validate("desired_date", said, ctx)[1] is None
        return True

    async def _answer(
        self, turn: Turn, step: str, data: dict[str, Any], said: str, ctx: _Context, *, by_id: bool
    ) -> Step:
        """Read ``said`` as the answer to ``step`` (and what it carries for the next questions)."""
        if step in ORDER or step in FIELDS or step == "edit_value":
            return await self._fill(turn, step, data, said, ctx, by_id=by_id)

        if step == "edit_field":
            options = self._field_options()
            option = _choose(said, options, by_id)
            if option is None:
                return Step((warn(not_an_option(said, options)), self._which_field()), "edit_field", data)
            data["editing"] = option.id
            return Step((await self._ask(turn, option.id, data, ctx, "edit_value"),), "edit_value", data)

        if step == "duplicate":
            options = self._duplicate_options(data)
            option = _choose(said, options, by_id)
            if option is None:
                again = await self._duplicate_question(turn, data)
                return Step((warn(not_an_option(said, options)), again), "duplicate", data)
            if option.id == "cancel":
                return Step.end(Reply.text("Cancelled your demand request. Nothing was saved."))
            if option.id == "follow":
                return await self._follow(turn, data)
            if option.id == "edit":
                return Step((self._which_field(),), "edit_field", data)
            data["checked"] = data.get("partner") if data.get("partner") is not None else "all"
            data.pop("match", None)
            if data.pop("at", "title") == "title":
                return await self._next(turn, data, ctx)
            return await self._submit(turn, data, await ctx.ensure())

        option = _choose(said, CONFIRM_OPTIONS, by_id)
        if option is None:
            return Step((warn(not_an_option(said, CONFIRM_OPTIONS)), *await self._summary(data, ctx)), "confirm", data)
        if option.id == "cancel":
            return Step.end(Reply.text("Cancelled your demand request. Nothing was saved."))
        if option.id == "edit":
            return Step((self._which_field(),), "edit_field", data)
        return await self._submit(turn, data, await ctx.ensure())

    async def _fill(
        self, turn: Turn, step: str, data: dict[str, Any], said: str, ctx: _Context, *, by_id: bool
    ) -> Step:
        """Store the answer to a field step, then let what the answer carries fill the next ones."""
        editing = step == "edit_value"
        field = data["editing"] if editing else step
        rest = ""
        if field == "details":
            description, outcome = split_details(said.strip())
            value, error = validate("description", description, ctx)
            if error is None and outcome is not None:
                outcome_value, error = validate("outcome", outcome, ctx)
                if error is None:
                    data["outcome"] = outcome_value
            if error is not None:
                return Step((warn(error), await self._ask(turn, "details", data, ctx)), "details", data)
            data["description"] = value
            return await self._next(turn, data, ctx)
        if field in CHOICE_STEPS and not by_id:
            said, rest = split_choice(field, said, ctx)
        value, error = validate(field, said, ctx, by_id=by_id)
        if error is not None:
            return Step((warn(error), await self._ask(turn, field, data, ctx, step)), step, data)
        data[field] = value
        data.pop("editing", None)
        notes: list[Reply] = []
        if field == "title" and not editing:
            return await self._after_title(turn, data, ctx, ())
        while rest:
            following = self._missing(data)
            if following not in ("category", "urgency", "desired_date"):
                break
            chunk, rest = split_choice(following, rest, ctx) if following in CHOICE_STEPS else (rest, "")
            value, error = validate(following, chunk, ctx)
            if error is not None:
                notes.append(warn(error))
                break
            data[following] = value
        if editing:
            return Step((*notes, *await self._summary(data, ctx)), "confirm", data)
        return await self._next(turn, data, ctx, tuple(notes))

    def _missing(self, data: Mapping[str, Any]) -> str | None:
        for name in ORDER:
            if name == "details":
                if "description" not in data and "outcome" not in data:
                    return name
            elif name not in data:
                return name
        return None

    async def _next(self, turn: Turn, data: dict[str, Any], ctx: _Context, notes: tuple[Reply, ...] = ()) -> Step:
        following = self._missing(data)
        if following is None:
            return Step((*notes, *await self._summary(data, ctx)), "confirm", data)
        return Step((*notes, await self._ask(turn, following, data, ctx)), following, data)

    async def _after_title(self, turn: Turn, data: dict[str, Any], ctx: _Context, intro: tuple[Reply, ...]) -> Step:
        """The likely-duplicate check, right after the title: the person's partner, or all of them."""
        partner = data.get("partner")
        match = await self._duplicate(turn, str(data["title"]), partner)
        data["checked"] = partner if partner is not None else "all"
        if match is None:
            return await self._next(turn, data, ctx, intro)
        data["match"], data["at"] = match.id, "title"
        return Step((*intro, await self._duplicate_question(turn, data)), "duplicate", data)

    # --- a command, a greeting, a pause --------------------------------------------------------

    @staticmethod
    def _command_options(data: Mapping[str, Any]) -> tuple[Option, ...]:
        command, pending = str(data.get("command", "")), str(data.get("pending", ""))
        shown = pending if len(pending) <= 40 else pending[:40] + "…"
        return (Option("yes", f"Yes, {command}"[:75], primary=True), Option("no", f"No, “{shown}” is my answer"[:75]))

    def _command_question(self, data: Mapping[str, Any]) -> Reply:
        return question(
            "intake:command",
            f"Did you mean the command *{data.get('command', '')}*? Your request draft is kept either way.",
            self._command_options(data),
        )

    async def _command_answer(self, turn: Turn, data: dict[str, Any], said: str, typed: bool, ctx: _Context) -> Step:
        shown = self._command_options(data)
        option = (pick(said, shown) or pick(said, YES_NO)) if typed else next((o for o in shown if o.id == said), None)
        word = said.casefold().strip(" .!")
        if option is None and typed and word in YES_WORDS | NO_WORDS:
            option = YES_NO[0] if word in YES_WORDS else YES_NO[1]
        back, pending, command = data.pop("back"), data.pop("pending"), data.pop("command")
        if option is None:
            # Neither yes nor no: read it as a fresh answer to the question that was open.
            state = FlowState(self.name, back, data)
            return await self._step(turn, state, Inbound(key=turn.inbound.key, event_id=turn.inbound.event_id,
                                                         text=said, sender=turn.inbound.sender))
        if option.id == "no":
            return await self._answer(turn, back, data, pending, ctx, by_id=False)
        return await self._run_beside(turn, command, back, data)

    async def _run_beside(self, turn: Turn, command: str, back: str, data: dict[str, Any]) -> Step:
        """Run a one-shot command and come back to the draft; a command that asks something sets it aside."""
        assert turn.catalog is not None
        found = turn.catalog.trigger_of(command.casefold())
        if found is None:
            return Step((warn("I couldn't run that."), *await self.reprompt(turn, FlowState(self.name, back, data))),
                        back, data)
        flow_name, trigger = found
        turn.inbound = dataclasses.replace(turn.inbound, text=command, action=None)
        step = await turn.catalog.flow(flow_name).start(turn, command[len(trigger) :].strip())
        if step.next is None and step.handoff is None:
            again = await self.reprompt(turn, FlowState(self.name, back, data))
            note = Reply.text(f"Back to your request{self._named(data)}:", TextStyle.MUTED)
            return Step((*step.replies, note, *again), back, data)
        aside = Reply.text(f"I set aside your unfinished request{self._named(data)}.", TextStyle.MUTED)
        return Step((aside, *step.replies), step.next, step.data, step.handoff, step.flow or flow_name)

    @staticmethod
    def _named(data: Mapping[str, Any]) -> str:
        return f" “{data['title']}”" if data.get("title") else ""

    def _draft_question(self, data: Mapping[str, Any]) -> Reply:
        return question(
            "intake:draft", f"You have an unfinished request{self._named(data)}: continue or discard?", DRAFT_OPTIONS
        )

    async def _draft_answer(self, turn: Turn, data: dict[str, Any], said: str, typed: bool, ctx: _Context) -> Step:
        option = _choose(said, DRAFT_OPTIONS, not typed)
        if option is None and typed and said.casefold().strip(" .!") in YES_WORDS | {"go on", "resume"}:
            option = DRAFT_OPTIONS[0]
        if option is None:
            return Step((warn(not_an_option(said, DRAFT_OPTIONS)), self._draft_question(data)), "draft", data)
        back = data.pop("back")
        if option.id == "discard":
            return Step.hand_to("menu", "", Reply.text("Discarded your draft. Nothing was submitted."))
        return Step(await self.reprompt(turn, FlowState(self.name, back, data)), back, data)

    # --- a likely duplicate ---------------------------------------------------------------------

    def _duplicate_options(self, data: Mapping[str, Any]) -> tuple[Option, ...]:
        follow = (Option("follow", f"Follow DR-{data['match']}"),) if data.get("followable") else ()
        if data.get("at") == "title":
            return (Option("submit", "File mine anyway", primary=True), *follow,
                    Option("cancel", "Cancel", danger=True))
        return (Option("submit", "Submit anyway", primary=True), *follow, Option("edit", "Edit a field"),
                Option("cancel", "Cancel", danger=True))

    async def _duplicate_question(self, turn: Turn, data: dict[str, Any]) -> Reply:
        match = await turn.store.requests.get(int(data["match"]))
        shown = await self._similar(turn, match) if match is not None else None
        data["followable"] = shown is not None
        intro: list[Text | Facts] = []
        if shown is None:
            intro.append(Text("A request much like this one is already open for this business partner. "
                              "If it is the same need, its BRM will link them.", TextStyle.WARNING))
        else:
            assert match is not None
            intro += [Text(f"This looks like a request that is already open, {match.key}:", TextStyle.WARNING), shown,
                      Text(f"Follow {match.key} to hear about its changes and add your need to it as a comment.",
                           TextStyle.MUTED)]
        prompt = "File yours anyway?" if data.get("at") == "title" else "Submit yours anyway?"
        return Reply(blocks=(*intro, Choices("intake:duplicate", prompt, self._duplicate_options(data))))

    async def _follow(self, turn: Turn, data: dict[str, Any]) -> Step:
        request = await turn.store.requests.get(int(data["match"]))
        assert request is not None and request.id is not None and turn.person.id is not None
        await turn.store.workflow.watch(request_id=request.id, person_id=turn.person.id, now=turn.now)
        need = " — ".join(str(v) for v in (data.get("title"), data.get("description")) if v)
        kept = {"match": request.id, "need": need[:NOTE_MAX]}
        done = Reply.text(f"You now follow {request.key}: I'll tell you about each change to it. "
                          "Your draft is discarded; nothing new was filed.", TextStyle.SUCCESS)
        return Step((done, self._follow_question(kept)), "follow_note", kept)

    def _follow_question(self, data: Mapping[str, Any]) -> Reply:
        need = str(data.get("need", ""))
        return question(
            "intake:follow_note",
            f"Add your need to DR-{data['match']} as a comment? Type it, or pick one.",
            (Option("need", f"Add “{need}”"[:75], primary=True), NO_COMMENT),
        )

    async def _follow_note(self, turn: Turn, data: dict[str, Any], said: str, typed: bool) -> Step:
        key = f"DR-{data['match']}"
        chosen = said if not typed else {"1": "need", "2": "none"}.get(said.strip().rstrip("."), "")
        if chosen == "none" or (typed and said.casefold().strip(" .!") in SKIP_WORDS):
            return Step.end(Reply.text(f"Fine. Type *status {key}* any time to see it.", TextStyle.MUTED))
        option = chosen == "need"
        text = str(data.get("need", "")) if option else said.strip()
        if len(text) > NOTE_MAX:
            return Step((warn(f"That is {len(text):,} characters long; the limit is {NOTE_MAX:,}."),
                         self._follow_question(data)), "follow_note", data)
        request = await turn.store.requests.get(int(data["match"]))
        if request is None or request.id is None or not text:
            return Step.end(warn(f"{key} is no longer there; nothing was added."))
        note = await turn.store.workflow.add_note(
            request_id=request.id, by_person_id=turn.person.id, kind=NoteKind.COMMENT.value, text=text,  # type: ignore[arg-type]
            now=turn.now,
        )
        if request.brm_id is not None and request.brm_id != turn.person.id:
            await turn.notify(
                recipient_id=request.brm_id,
                kind=UPDATE_KIND,
                subject=request.key,
                period=f"note:{note.id}",
                reply=Reply.of(Text(f"{turn.person.name}, who follows {request.key} “{request.title}”, added a need",
                                    TextStyle.HEADING), Text(text)),
            )
        return Step.end(Reply.text(f"Added your need to {request.key} as a comment; its BRM sees it.",
                                   TextStyle.SUCCESS))

    # --- form ---------------------------------------------------------------------------------

    async def open_form(self, turn: Turn, prefill: Mapping[str, str]) -> Step:
        ctx = await (await self._context(turn)).ensure()
        context = {**_form_context(prefill), FORM_TOKEN: uuid.uuid4().hex}
        return Step.end(Reply.of(self._form(ctx, prefill, errors={}, context=context)))

    async def submit_form(self, turn: Turn, values: Mapping[str, str]) -> Step:
        token = values.get(FORM_TOKEN)
        token_id = f"form:{turn.person.id}:{token[:64]}" if token else None
        if token_id and await turn.store.events.seen(platform=turn.inbound.key.platform, event_id=token_id):
            # The same form sent again (a double click, an old card): it was filed once already.
            return Step.end(already_submitted())
        ctx = await (await self._context(turn)).ensure()
        data: dict[str, Any] = {}
        errors: dict[str, str] = {}
        for field in FIELDS:
            raw = values.get(field, "") or ""
            if field == "partner" and not raw:
                raw = NO_PARTNER
            value, error = validate(field, raw, ctx, by_id=True)
            if error is not None:
                errors[field] = error
            data[field] = value
        if errors:
            return Step.end(Reply.of(self._form(ctx, values, errors=errors, context=_form_context(values))))
        data["source_link"] = safe_link(values.get("source_link"))
        data["source_channel"] = safe_channel(values.get("source_channel"))
        partner = data.get("partner")
        duplicate = await self._duplicate(turn, data["title"], partner) if partner is not None else None
        data["checked"] = partner
        if duplicate is not None and values.get("duplicate_ok") != duplicate.key:
            context = {**_form_context(values), "duplicate_ok": duplicate.key}
            seen = await turn.store.requests.visible_one(turn.person, duplicate.id)  # type: ignore[arg-type]
            similar = (
                f"This looks like {seen.key} “{seen.title}” ({seen.status})."
                if seen
                else "A request much like this one is already open for this business partner."
            )
            error = f"{similar} Submit again to file yours anyway, or change the title."
            return Step.end(Reply.of(self._form(ctx, values, errors={"title": error}, context=context)))
        if token_id and not await turn.store.events.claim(
            platform=turn.inbound.key.platform, event_id=token_id, now=turn.now
        ):
            # The same form sent twice at once (a double click racing itself): file it once.
            return Step.end(already_submitted())
        return await self._submit(turn, data, ctx)

    def _form(
        self,
        ctx: _Context,
        values: Mapping[str, str],
        *,
        errors: Mapping[str, str],
        context: Mapping[str, str],
    ) -> Form:
        partner_initial = values.get("partner") or (str(ctx.own_partner_id) if ctx.own_partner_id else None)
        return Form(
            id=f"{self.name}:{FORM_SUBMIT}",
            title="New demand request",
            submit_label="Submit",
            errors=dict(errors),
            context=dict(context),
            fields=(
                Field(
                    "title",
                    "Title",
                    required=True,
                    max_length=TITLE_MAX,
                    initial=values.get("title") or None,
                    placeholder="A short name for what you need",
                ),
                Field(
                    "description",
                    "Description",
                    kind="multiline",
                    max_length=DESCRIPTION_MAX,
                    initial=values.get("description") or None,
                    placeholder="Context, who is affected",
                ),
                Field(
                    "outcome",
                    "Business outcome",
                    kind="multiline",
                    required=True,
                    max_length=OUTCOME_MAX,
                    initial=values.get("outcome") or None,
                    hint="What will be better for the business when this is done?",
                ),
                Field(
                    "category",
                    "Category",
                    kind="select",
                    required=True,
                    options=CATEGORY_OPTIONS,
                    initial=values.get("category") or None,
                ),
                Field(
                    "urgency",
                    "Urgency",
                    kind="select",
                    required=True,
                    options=URGENCY_OPTIONS,
                    initial=values.get("urgency") or "medium",
                ),
                Field(
                    "partner",
                    "Business partner",
                    kind="select",
                    options=ctx.partner_options(),
                    initial=partner_initial,
                ),
                Field("desired_date", "Desired date", kind="date", initial=values.get("desired_date") or None),
            ),
        )

    # --- shared -------------------------------------------------------------------------------

    async def _context(self, turn: Turn) -> _Context:
        sender = turn.inbound.sender
        return _Context(
            store=turn.store,
            own_partner_id=turn.person.partner_id,
            today=turn.now.astimezone(turn.tz).date(),
            day_first=day_first(sender.locale if sender is not None else None),
        )

    async def _ask(
        self, turn: Turn, field: str, data: Mapping[str, Any], ctx: _Context, step: str | None = None
    ) -> Reply:
        """The question for ``field``; its buttons answer ``step`` (``edit_value`` when editing)."""
        choice_id = f"{self.name}:{step or field}"
        match field:
            case "title":
                return Reply.text(f"What do you need? Give it a short title (up to {TITLE_MAX} characters).")
            case "details":
                return Reply.text(
                    "Describe it in a sentence or two, and say what will be better for the business when it is "
                    "done (the business outcome). Both in one answer works: “… so that …”, or “Outcome: …”."
                )
            case "description":
                return Reply.text(
                    "Describe it in a few sentences: the context and who is affected. (Type *skip* to leave it out.)"
                )
            case "outcome":
                return Reply.text(
                    "What will be better for the business when this is done? That is the business outcome."
                )
            case "category":
                return question(choice_id, "Which category fits best?", CATEGORY_OPTIONS, _meanings(CATEGORY_OPTIONS))
            case "urgency":
                hint = " You can add a date too, like *high, end of March*." if "desired_date" not in data else ""
                return question(choice_id, f"How urgent is it?{hint}", URGENCY_OPTIONS, _meanings(URGENCY_OPTIONS))
            case "partner":
                await ctx.ensure()
                options = ctx.partner_options()
                intro = (f"Your own business partner is {ctx.partner_name(ctx.own_partner_id)}.",)
                return question(
                    choice_id,
                    "Which business partner is this for?",
                    options,
                    *(intro if ctx.own_partner_id else ()),
                )
            case "desired_date":
                return question(
                    choice_id,
                    "By when do you need it? Type a date (2027-03-31, 31/03/2027, end of March, next Friday, "
                    "in 3 weeks, Q1 2027), or press the button.",
                    (NO_DATE,),
                )
        raise KeyError(field)

    @staticmethod
    def _field_options() -> tuple[Option, ...]:
        return tuple(Option(f, LABELS[f]) for f in FIELDS)

    def _which_field(self) -> Reply:
        return question("intake:edit_field", "Which field do you want to change?", self._field_options())

    @staticmethod
    def _facts(data: Mapping[str, Any], ctx: _Context, *, yours: bool = True) -> Facts:
        desired = data.get("desired_date")
        return Facts(
            items=(
                (LABELS["title"], data.get("title") or ""),
                (LABELS["description"], data.get("description") or "—"),
                (LABELS["outcome"], data.get("outcome") or ""),
                (LABELS["category"], str(data.get("category", "")).capitalize()),
                (LABELS["urgency"], str(data.get("urgency", "")).capitalize()),
                (LABELS["partner"], ctx.partner_name(data.get("partner"), yours=yours)),
                (LABELS["desired_date"], show_date(date.fromisoformat(desired)) if desired else "No particular date"),
            )
        )

    async def _summary(self, data: Mapping[str, Any], ctx: _Context) -> tuple[Reply, ...]:
        await ctx.ensure()
        return (
            Reply.of(Text("Here is your request:", TextStyle.HEADING), self._facts(data, ctx)),
            question("intake:confirm", "Submit it? (Edit a field changes anything, the business partner too.)",
                     CONFIRM_OPTIONS),
        )

    async def _duplicate(self, turn: Turn, title: str, partner_id: int | None) -> DemandRequest | None:
        """The open request most like ``title``: of the partner, or of every partner when unknown."""
        found = most_alike(title, dict(await turn.store.requests.open_titles(partner_id)))
        return await turn.store.requests.get(found) if found is not None else None

    async def _similar(self, turn: Turn, duplicate: DemandRequest) -> Facts | None:
        """The close match, shown (and offered to follow) to someone who may see it, or who belongs
        to its business partner (a colleague's request); None: others learn nothing about it."""
        seen = await turn.store.requests.visible_one(turn.person, duplicate.id)  # type: ignore[arg-type]
        colleague = duplicate.partner_id is not None and duplicate.partner_id == turn.person.partner_id
        if seen is None and not colleague:
            return None
        return Facts(
            items=(
                ("Title", duplicate.title),
                ("Status", duplicate.status.capitalize()),
                ("Submitted", turn.local(duplicate.created_at)),
            )
        )

    async def _submit(self, turn: Turn, data: dict[str, Any], ctx: _Context) -> Step:
        partner = data.get("partner")
        if data.get("checked") not in ("all", partner) and partner is not None:
            # The partner changed after the title's check: look again, among the new partner's requests.
            match = await self._duplicate(turn, str(data["title"]), partner)
            data["checked"] = partner
            if match is not None:
                data["match"], data["at"] = match.id, "submit"
                return Step((await self._duplicate_question(turn, data),), "duplicate", data)
        source = turn.inbound.source
        desired = data.get("desired_date")
        request = await turn.store.requests.create(
            NewRequest(
                title=data["title"],
                description=data.get("description"),
                outcome=data["outcome"],
                category=data["category"],
                urgency=data["urgency"],
                partner_id=data.get("partner"),
                requester_id=turn.person.id,  # type: ignore[arg-type]
                desired_date=date.fromisoformat(desired) if desired else None,
                source_platform=turn.inbound.key.platform,
                source_channel=data.get("source_channel")
                or safe_channel(source.channel if source else None)
                or turn.inbound.key.channel[:SOURCE_CHANNEL_MAX],
                source_link=data.get("source_link") or safe_link(source.link if source else None),
            ),
            now=turn.now,
        )
        facts = self._facts(data, ctx)
        brm = await turn.store.people.get(request.brm_id) if request.brm_id else None
        # The partner's BRM is told; with no partner or no BRM, the BRM team is (its channel, or
        # each BRM), so it reaches someone.
        notification = Reply.of(
            Text(f"New demand request {request.key} from {turn.person.name}", TextStyle.HEADING),
            self._facts(data, ctx, yours=False),  # "(yours)" is the requester's, not the BRM's
            *(() if brm is not None else (Text("No BRM owns it yet: the first to act takes it.", TextStyle.MUTED),)),
            triage_choices(request),
            Text(f"Type *status {request.key}* to see it.", TextStyle.MUTED),
        )
        if brm is None:
            await turn.notify_brm_team(kind="request_submitted", subject=request.key, reply=notification)
        elif brm.id != turn.person.id:
            await turn.notify(
                recipient_id=brm.id,  # type: ignore[arg-type]
                kind="request_submitted",
                subject=request.key,
                reply=notification,
            )
        partner = ctx.partner_name(request.partner_id)
        if brm is None:
            owner = "No BRM owns this business partner yet, so I'm asking the BRM team to triage it."
        elif brm.id == turn.person.id:
            owner = f"You are the BRM for {partner}, so it is yours to triage."
        else:
            owner = f"I'm letting {brm.name}, the BRM for {partner}, know."
        return Step.end(
            Reply.of(
                Text(f"Submitted as {request.key}. Thank you!", TextStyle.SUCCESS),
                facts,
                Text(f"{owner} Type *status {request.key}* any time to follow it."),
            )
        )


def safe_link(raw: str | None) -> str | None:
    """``raw`` if it is an ``https`` link to the chat platform itself (a message's permalink) that
    fits the column; else None, and the request is filed without a link.

    Form metadata travels through the client, so a link could be anything (``javascript:…``,
    a phishing page, a megabyte): only what the platform's own permalinks look like is kept.
    """
    if not raw or len(raw) > SOURCE_LINK_MAX or any(ch.isspace() or not ch.isprintable() for ch in raw):
        return None
    try:
        parts = urlsplit(raw)
        host = (parts.hostname or "").casefold()
    except ValueError:
        return None
    if parts.scheme != "https" or parts.username or parts.password or parts.port not in (None, 443):
        return None
    if host in PLATFORM_HOSTS or any(host.endswith("." + h) for h in PLATFORM_DOMAINS):
        return raw
    return None


def safe_channel(raw: str | None) -> str | None:
    """``raw`` if it looks like a Slack or Teams channel or conversation id that fits the column."""
    if not raw or len(raw) > SOURCE_CHANNEL_MAX or not CHANNEL_ID.fullmatch(raw):
        return None
    return raw


def _form_context(values: Mapping[str, str]) -> dict[str, str]:
    keep = ("source_link", "source_channel", "duplicate_ok", FORM_TOKEN)
    return {k: values[k] for k in keep if values.get(k)}
