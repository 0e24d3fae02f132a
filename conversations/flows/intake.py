"""Demand intake: a short conversation (or one form) that files a complete demand request.

The diagram is in ``docs/flows/intake.md``. Chat and form share one set of field rules,
so a request filed from a Slack modal or a Teams card is held to the same limits as one
typed in the terminal.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from types import MappingProxyType
from typing import Any, ClassVar
from urllib.parse import urlsplit

from rapidfuzz import fuzz, process, utils

from conversations.catalog import FORM_SUBMIT, Command, HomeButton
from conversations.engine import ActionHandler, FlowState, Step, StepHandler, Turn
from conversations.flows.common import SKIP_WORDS, check_text, not_an_option, parse_date, pick, question, warn
from conversations.flows.lifecycle import triage_choices
from conversations.messages import Facts, Field, Form, Inbound, Option, Reply, Text, TextStyle
from storage.models import BusinessPartner, Category, DemandRequest, Urgency
from storage.store import NewRequest, Store

TITLE_MAX = 200
DESCRIPTION_MAX = 4000
OUTCOME_MAX = 2000
DUPLICATE_SCORE = 85.0
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
CONFIRM_OPTIONS = (
    Option("submit", "Submit", primary=True),
    Option("edit", "Edit a field"),
    Option("cancel", "Cancel", danger=True),
)
DUPLICATE_OPTIONS = (
    Option("submit", "Submit anyway", primary=True),
    Option("edit", "Edit a field"),
    Option("cancel", "Cancel", danger=True),
)
NO_DATE = Option("skip", "No particular date")


@dataclass(slots=True)
class _Context:
    """What the intake rules need besides the answer; the partner list is read only when used."""

    store: Store
    own_partner_id: int | None
    today: date
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

    def partner_name(self, partner_id: Any) -> str:
        found = next((p.name for p in self.partners if p.id == partner_id), None)
        return found or "Not sure (a BRM will assign it)"


def _choose(text: str, options: tuple[Option, ...], by_id: bool) -> Option | None:
    if by_id:
        return next((o for o in options if o.id == text), None)
    return pick(text, options)


def validate(field: str, raw: str, ctx: _Context, *, by_id: bool = False) -> tuple[Any, str | None]:
    """The stored value of ``field`` read from ``raw``, or an error that says what to fix.

    ``by_id``: ``raw`` is an option id (a pressed button, a form's select), never a position.
    """
    text = raw.strip()
    match field:
        case "title":
            return text, check_text("title", text, minimum=3, maximum=TITLE_MAX)
        case "description":
            if not text or text.casefold() in SKIP_WORDS:
                return None, None
            return text, check_text("description", text, minimum=1, maximum=DESCRIPTION_MAX)
        case "outcome":
            return text, check_text("business outcome", text, minimum=10, maximum=OUTCOME_MAX)
        case "category" | "urgency":
            options = CATEGORY_OPTIONS if field == "category" else URGENCY_OPTIONS
            option = _choose(text, options, by_id)
            return (option.id, None) if option else (None, not_an_option(text, options))
        case "partner":
            options = ctx.partner_options()
            option = _choose(text, options, by_id)
            if option is None:
                return None, not_an_option(text, options)
            return (None if option.id == NO_PARTNER else int(option.id)), None
        case "desired_date":
            if not text or text.casefold() in SKIP_WORDS | {NO_DATE.label.casefold(), "1", NO_DATE.id}:
                return None, None
            value, error = parse_date(text, today=ctx.today)
            return (value.isoformat() if value else None), error
    raise KeyError(field)


def already_submitted() -> Reply:
    """A form submitted again: nothing filed; adapters show the form as sent."""
    return Reply(blocks=(Text("That form was already submitted; I filed it once.", TextStyle.MUTED),),
                 ignored_action=True)


class IntakeFlow:
    name: ClassVar[str] = "intake"
    title: ClassVar[str] = "demand request"
    keeps_draft: ClassVar[bool] = True
    version: ClassVar[int] = 1
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
    actions: Mapping[str, ActionHandler] = MappingProxyType({})

    def __init__(self) -> None:
        handlers: dict[str, StepHandler] = {name: self._step for name in FIELDS}
        for name in ("edit_value", "edit_field", "confirm", "duplicate"):
            handlers[name] = self._step
        self.steps: Mapping[str, StepHandler] = handlers

    # --- chat ---------------------------------------------------------------------------------

    async def start(self, turn: Turn, argument: str) -> Step:
        intro = Reply.text(
            "Let's capture your demand request. It takes a few questions; type *cancel* at any time to stop."
        )
        ctx = await self._context(turn)
        if argument:
            title, error = validate("title", argument, ctx)
            if error is None:
                data = {"title": title}
                return Step((intro, await self._ask(turn, "description", data, ctx)), "description", data)
            return Step((intro, warn(error), await self._ask(turn, "title", {}, ctx)), "title", {})
        return Step((intro, await self._ask(turn, "title", {}, ctx)), "title", {})

    async def reprompt(self, turn: Turn, state: FlowState) -> tuple[Reply, ...]:
        data = dict(state.data)
        ctx = await self._context(turn)
        if state.step in FIELDS:
            return (await self._ask(turn, state.step, data, ctx),)
        if state.step == "edit_value":
            return (await self._ask(turn, data["editing"], data, ctx, "edit_value"),)
        if state.step == "edit_field":
            return (self._which_field(),)
        if state.step == "duplicate":
            return (question("intake:duplicate", "Submit it anyway?", DUPLICATE_OPTIONS),)
        return await self._summary(data, ctx)

    async def _step(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        data: dict[str, Any] = dict(state.data)
        said = inbound.action.value if inbound.action else inbound.text
        ctx = await self._context(turn)

        if state.step in FIELDS or state.step == "edit_value":
            field = data["editing"] if state.step == "edit_value" else state.step
            if field == "partner":
                await ctx.ensure()
            value, error = validate(field, said, ctx, by_id=inbound.action is not None)
            if error is not None:
                return Step((warn(error), await self._ask(turn, field, data, ctx, state.step)), state.step, data)
            data[field] = value
            data.pop("editing", None)
            following = FIELDS[FIELDS.index(field) + 1] if field != FIELDS[-1] else None
            if state.step == "edit_value" or following is None:
                return Step(await self._summary(data, ctx), "confirm", data)
            return Step((await self._ask(turn, following, data, ctx),), following, data)

        if state.step == "edit_field":
            options = self._field_options()
            option = _choose(said, options, inbound.action is not None)
            if option is None:
                return Step((warn(not_an_option(said, options)), self._which_field()), "edit_field", data)
            data["editing"] = option.id
            return Step((await self._ask(turn, option.id, data, ctx, "edit_value"),), "edit_value", data)

        options = CONFIRM_OPTIONS if state.step == "confirm" else DUPLICATE_OPTIONS
        option = _choose(said, options, inbound.action is not None)
        if option is None:
            return Step((warn(not_an_option(said, options)), *await self.reprompt(turn, state)), state.step, data)
        if option.id == "cancel":
            return Step.end(Reply.text("Cancelled your demand request. Nothing was saved."))
        if option.id == "edit":
            return Step((self._which_field(),), "edit_field", data)
        return await self._submit(turn, data, await ctx.ensure(), allow_duplicate=state.step == "duplicate")

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
        duplicate = await self._duplicate(turn, data)
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
        return await self._submit(turn, data, ctx, allow_duplicate=True)

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
        return _Context(
            store=turn.store,
            own_partner_id=turn.person.partner_id,
            today=turn.now.astimezone(turn.tz).date(),
        )

    async def _ask(
        self, turn: Turn, field: str, data: Mapping[str, Any], ctx: _Context, step: str | None = None
    ) -> Reply:
        """The question for ``field``; its buttons answer ``step`` (``edit_value`` when editing)."""
        choice_id = f"{self.name}:{step or field}"
        match field:
            case "title":
                return Reply.text(f"What do you need? Give it a short title (up to {TITLE_MAX} characters).")
            case "description":
                return Reply.text(
                    "Describe it in a few sentences: the context and who is affected. (Type *skip* to leave it out.)"
                )
            case "outcome":
                return Reply.text(
                    "What will be better for the business when this is done? That is the business outcome."
                )
            case "category":
                return question(choice_id, "Which category fits best?", CATEGORY_OPTIONS)
            case "urgency":
                return question(choice_id, "How urgent is it?", URGENCY_OPTIONS)
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
    def _facts(data: Mapping[str, Any], ctx: _Context) -> Facts:
        desired = data.get("desired_date")
        return Facts(
            items=(
                (LABELS["title"], data.get("title") or ""),
                (LABELS["description"], data.get("description") or "—"),
                (LABELS["outcome"], data.get("outcome") or ""),
                (LABELS["category"], str(data.get("category", "")).capitalize()),
                (LABELS["urgency"], str(data.get("urgency", "")).capitalize()),
                (LABELS["partner"], ctx.partner_name(data.get("partner"))),
                (LABELS["desired_date"], desired or "No particular date"),
            )
        )

    async def _summary(self, data: Mapping[str, Any], ctx: _Context) -> tuple[Reply, ...]:
        await ctx.ensure()
        return (
            Reply.of(Text("Here is your request:", TextStyle.HEADING), self._facts(data, ctx)),
            question("intake:confirm", "Submit it?", CONFIRM_OPTIONS),
        )

    async def _duplicate(self, turn: Turn, data: Mapping[str, Any]) -> DemandRequest | None:
        partner_id = data.get("partner")
        if partner_id is None:
            return None
        titles = dict(await turn.store.requests.open_titles(partner_id))
        best = process.extractOne(
            data["title"],
            titles,
            scorer=fuzz.token_set_ratio,
            processor=utils.default_process,
            score_cutoff=DUPLICATE_SCORE,
        )
        return await turn.store.requests.get(best[2]) if best else None

    async def _similar(self, turn: Turn, duplicate: DemandRequest) -> Reply:
        """The close match, shown in full only to someone who may see it; others learn no more."""
        seen = await turn.store.requests.visible_one(turn.person, duplicate.id)  # type: ignore[arg-type]
        if seen is None:
            return Reply.text(
                "A request much like this one is already open for this business partner. "
                "If it is the same need, its BRM will link them.",
                TextStyle.WARNING,
            )
        return Reply.of(
            Text(f"This looks like a request that is already open, {seen.key}:", TextStyle.WARNING),
            Facts(
                items=(
                    ("Title", seen.title),
                    ("Status", seen.status.capitalize()),
                    ("Submitted", turn.local(seen.created_at)),
                )
            ),
        )

    async def _submit(self, turn: Turn, data: Mapping[str, Any], ctx: _Context, *, allow_duplicate: bool) -> Step:
        if not allow_duplicate:
            duplicate = await self._duplicate(turn, data)
            if duplicate is not None:
                return Step(
                    (
                        await self._similar(turn, duplicate),
                        question("intake:duplicate", "Submit yours anyway?", DUPLICATE_OPTIONS),
                    ),
                    "duplicate",
                    dict(data),
                )
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
            facts,
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
