"""A BRM's relationships: *relationships*, *touchpoint*, *maturity*, and the nudge buttons.

``relationships`` lists the BRM's partners with a health line each; ``touchpoint`` logs a
contact typed in one line ("met Finance today about the ERP roadmap") or through a form;
``maturity Finance trusted advisor`` sets a partner's stage, recorded with who and when.
The nudge message's buttons (log a touchpoint, open a request, snooze) are actions: the item
travels in the value and is checked against the presser's own relationships.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from typing import ClassVar

from conversations.catalog import QUOTED_LINK, QUOTED_PLACE, QUOTED_TEXT, Command, HomeButton, MessageShortcut
from conversations.engine import ActionHandler, FlowBase, FlowState, Step, StepHandler, Turn
from conversations.flows.common import warn
from conversations.flows.intake import safe_link
from conversations.flows.requests import describe
from conversations.health import judge
from conversations.messages import Choices, Field, Form, Inbound, Option, Reply, Text, TextStyle
from storage.models import BusinessPartner, Maturity, Role, TouchpointKind

BRM_ROLES = frozenset({Role.BRM.value, Role.LEADER.value, Role.ADMIN.value})
KINDS = tuple(k.value for k in TouchpointKind)
KIND_WORDS = {"met": "meeting", "meeting": "meeting", "call": "call", "called": "call", "phoned": "call",
              "workshop": "workshop", "review": "review", "reviewed": "review", "informal": "informal",
              "chat": "informal", "coffee": "informal", "lunch": "informal"}
NOTE_LIMIT = 1000
SNOOZE_WEEKS = {"snooze1": 1, "snooze2": 2}
ISO_DATE = re.compile(r"\b(\d{4}-\d{2}-\d{2})\b")


LOG_AS_TOUCHPOINT = MessageShortcut(
    id="log_touchpoint",
    label="Log as touchpoint",
    description="Log this message as a touchpoint with one of your business partners, with a link to it",
    roles=BRM_ROLES,
)


def _not_brm(turn: Turn) -> Step | None:
    if turn.person.role not in BRM_ROLES:
        return Step.end(warn("Relationships and touchpoints are for BRMs. Type *help* to see what you can do."))
    return None


async def _my_partners(turn: Turn) -> list[BusinessPartner]:
    assert turn.person.id is not None
    if turn.person.role == Role.BRM:
        return [v.partner for v in await turn.store.relationships.of_brm(turn.person.id)]
    return await turn.store.partners.all()


def _find_partner(text: str, partners: list[BusinessPartner]) -> tuple[BusinessPartner | None, str]:
    """The partner named at the start of ``text`` (longest name first) and what follows it."""
    folded = text.casefold()
    for partner in sorted(partners, key=lambda p: -len(p.name)):
        name = partner.name.casefold()
        for candidate in (name, name.split(" ")[0]):
            if folded == candidate or folded.startswith(candidate + " "):
                return partner, text[len(candidate):].strip()
    return None, text


def guess_partner(partners: list[BusinessPartner], *places: str) -> BusinessPartner | None:
    """The partner a quoted message is most likely about: the first of ``places`` (the message,
    then its channel's name) that names one of ``partners`` as a word; else the only partner."""
    for place in places:
        words = set(re.findall(r"\w+", place.casefold()))
        folded = " ".join(re.findall(r"\w+", place.casefold()))
        for partner in sorted(partners, key=lambda p: -len(p.name)):
            name = " ".join(re.findall(r"\w+", partner.name.casefold()))
            if name and (name in words or f" {name} " in f" {folded} "):
                return partner
    return partners[0] if len(partners) == 1 else None


def _date_in(words: str, today: date) -> tuple[date | None, str, str | None]:
    """(the date named, the rest, an error) from "today", "yesterday" or an ISO date; today if none."""
    folded = words.casefold()
    for word, delta in (("today", 0), ("yesterday", 1)):
        if re.search(rf"\b{word}\b", folded):
            return today - timedelta(days=delta), re.sub(rf"\b{word}\b", "", words, flags=re.I).strip(), None
    match = ISO_DATE.search(words)
    if match:
        try:
            when = date.fromisoformat(match.group(1))
        except ValueError:
            return None, words, f"{match.group(1)} is not a date."
        if when > today:
            return None, words, f"{when.isoformat()} is in the future: log touchpoints that happened."
        return when, (words[: match.start()] + words[match.end():]).replace(" on ", " ").strip(), None
    return today, words, None


def parse_touchpoint(
    text: str, partners: list[BusinessPartner], today: date
) -> tuple[dict[str, object] | None, str | None]:
    """``met Finance today about the ERP roadmap`` → kind, partner, date and note; or an error."""
    words = text.strip()
    first = words.split(" ", 1)[0].casefold() if words else ""
    kind = "meeting"
    if first in KIND_WORDS:
        kind, words = KIND_WORDS[first], words[len(first):].strip()
    words = re.sub(r"^(with|a|an)\s+", "", words, flags=re.I)
    partner, rest = _find_partner(words, partners)
    if partner is None:
        names = ", ".join(p.name for p in partners) or "none yet"
        return None, f"Which partner? Start with one of yours ({names}), like *met Finance today about the roadmap*."
    when, rest, error = _date_in(rest, today)
    if error is not None:
        return None, error
    note = re.sub(r"^(about|re|on|regarding)\b[:\s]*", "", rest.strip(" -:,"), flags=re.I).strip() or None
    if note and len(note) > NOTE_LIMIT:
        return None, f"That note is too long: keep it under {NOTE_LIMIT} characters."
    return {"partner_id": partner.id, "partner": partner.name, "kind": kind, "on": when, "note": note}, None


class RelationshipsFlow(FlowBase):
    name: ClassVar[str] = "relationships"
    title: ClassVar[str] = "relationship list"
    commands: ClassVar[tuple[Command, ...]] = (
        Command(
            words=("relationships", "my relationships", "partners", "my partners"),
            help="*relationships* to see your business partners and how each relationship is doing",
            roles=BRM_ROLES,
            slash=("relationships", "partners"),
            example="relationships",
        ),
    )
    home: ClassVar[HomeButton | None] = HomeButton("Relationships", roles=BRM_ROLES)

    def __init__(self) -> None:
        self.steps: Mapping[str, StepHandler] = {}

    async def start(self, turn: Turn, argument: str) -> Step:
        refused = _not_brm(turn)
        if refused is not None:
            return refused
        assert turn.person.id is not None
        store = turn.store.relationships
        views = await (store.of_brm(turn.person.id) if turn.person.role == Role.BRM else store.all())
        if not views:
            return Step.end(Reply.text("You have no business partner relationships yet."))
        lines = []
        pulse = await turn.store.survey_results.satisfaction(now=turn.now)
        for view in views:
            health = judge(view.relationship, await store.open_requests(view.partner.id or 0), now=turn.now,
                           pulse=pulse.get(view.partner.id or 0))
            owner = "" if turn.person.role == Role.BRM else f" ({view.brm.name})"
            lines.append(f"• *{view.partner.name}*{owner} · {view.partner.maturity} — {health.line()}")
        blocks: list[Text] = [Text("Your relationships", TextStyle.HEADING), Text("\n".join(lines))]
        if turn.person.role != Role.BRM:
            snoozes = await store.all_snoozed(now=turn.now)
            if snoozes:
                shown = [f"• {s.item} until {turn.local(s.until)}" + (f" ({s.reason})" if s.reason else "")
                         for s in snoozes]
                blocks.append(Text("Snoozed by their BRM\n" + "\n".join(shown), TextStyle.MUTED))
        blocks.append(Text("Type *touchpoint* to log one, *maturity <partner> <stage>* to set a stage.",
                           TextStyle.MUTED))
        return Step.end(Reply(blocks=tuple(blocks)))


class TouchpointFlow(FlowBase):
    name: ClassVar[str] = "touchpoint"
    title: ClassVar[str] = "touchpoint"
    commands: ClassVar[tuple[Command, ...]] = (
        Command(
            words=("touchpoint", "log touchpoint", "log a touchpoint", "met", "called"),
            help="*touchpoint* (or *met Finance today about the ERP roadmap*) to log a contact with a partner",
            roles=BRM_ROLES,
            slash=("touchpoint",),
            example="met Finance today about the ERP roadmap",
            shortcut=LOG_AS_TOUCHPOINT,
        ),
    )
    home: ClassVar[HomeButton | None] = HomeButton("Log a touchpoint", roles=BRM_ROLES)
    form_id: ClassVar[str | None] = "touchpoint"
    form_words: ClassVar[frozenset[str]] = frozenset({"touchpoint form"})

    def __init__(self) -> None:
        self.steps: Mapping[str, StepHandler] = {}
        self.actions: Mapping[str, ActionHandler] = {}

    async def start(self, turn: Turn, argument: str) -> Step:
        refused = _not_brm(turn)
        if refused is not None:
            return refused
        trigger = turn.text.strip().split(" ", 1)[0].casefold()
        if trigger in ("met", "called"):
            argument = f"{trigger} {argument}"
        if not argument:
            return await self.open_form(turn, {})
        partners = await _my_partners(turn)
        parsed, error = parse_touchpoint(argument, partners, turn.now.astimezone(turn.tz).date())
        if error is not None or parsed is None:
            return Step.end(warn(error or "I couldn't read that touchpoint."))
        return await self._record(turn, parsed)

    async def _record(self, turn: Turn, parsed: Mapping[str, object]) -> Step:
        assert turn.person.id is not None
        on = parsed["on"]
        assert isinstance(on, date)
        at = datetime.combine(on, clock_time(12), tzinfo=turn.tz).astimezone(turn.now.tzinfo)
        note = parsed.get("note")
        await turn.store.relationships.log_touchpoint(
            partner_id=int(str(parsed["partner_id"])), brm_id=turn.person.id, kind=str(parsed["kind"]),
            happened_on=on, at=min(at, turn.now), now=turn.now, note=str(note) if note else None,
            link=str(parsed["link"]) if parsed.get("link") else None,
        )
        when = "today" if on == turn.now.astimezone(turn.tz).date() else on.strftime("%d %b %Y")
        shown = str(note) if note and len(str(note)) <= 120 else f"{str(note)[:119].rstrip()}…" if note else ""
        about = f" about {shown}" if shown else ""
        linked = " It links to the message." if parsed.get("link") else ""
        return Step.end(Reply.text(f"Logged a {parsed['kind']} with {parsed['partner']} {when}{about}.{linked}"))

    async def open_form(self, turn: Turn, prefill: Mapping[str, str]) -> Step:
        """The form, empty or prefilled; from "Log as touchpoint" on a message, with its text as
        the note, its link kept, and the partner it names (or its channel names) chosen."""
        if QUOTED_TEXT in prefill or QUOTED_LINK in prefill:
            if turn.person.role not in BRM_ROLES:
                return Step.end(warn("“Log as touchpoint” is for BRMs: it records a contact with a business "
                                     "partner. Type *help* to see what you can do."))
            quoted = prefill.get(QUOTED_TEXT, "").strip()
            partner = guess_partner(await _my_partners(turn), quoted, prefill.get(QUOTED_PLACE, ""))
            note = quoted if len(quoted) <= NOTE_LIMIT else quoted[: NOTE_LIMIT - 1].rstrip() + "…"
            link = safe_link(prefill.get(QUOTED_LINK))
            prefill = {"note": note, **({"partner": str(partner.id)} if partner else {}),
                       **({"link": link} if link else {})}
        refused = _not_brm(turn)
        if refused is not None:
            return refused
        return Step.end(Reply.of(await self._form(turn, prefill, {})))

    async def _form(self, turn: Turn, values: Mapping[str, str], errors: Mapping[str, str]) -> Form:
        partners = await _my_partners(turn)
        today = turn.now.astimezone(turn.tz).date().isoformat()
        return Form(
            id="touchpoint:submit",
            title="Log a touchpoint",
            fields=(
                Field("partner", "Business partner", "select", True,
                      tuple(Option(str(p.id), p.name) for p in partners), values.get("partner")),
                Field("kind", "Kind", "select", True, tuple(Option(k, k.capitalize()) for k in KINDS),
                      values.get("kind") or "meeting"),
                Field("date", "Date", "date", True, initial=values.get("date") or today),
                Field("note", "Note", "multiline", False, initial=values.get("note"), max_length=NOTE_LIMIT),
            ),
            submit_label="Log it",
            errors=errors,
            context={"link": values["link"]} if values.get("link") else {},
        )

    async def submit_form(self, turn: Turn, values: Mapping[str, str]) -> Step:
        refused = _not_brm(turn)
        if refused is not None:
            return refused
        partners = {str(p.id): p for p in await _my_partners(turn)}
        errors: dict[str, str] = {}
        partner = partners.get(values.get("partner", ""))
        if partner is None:
            errors["partner"] = "Pick one of your business partners."
        kind = (values.get("kind") or "").casefold()
        if kind not in KINDS:
            errors["kind"] = "Pick meeting, call, workshop, review or informal."
        today = turn.now.astimezone(turn.tz).date()
        on: date | None = today
        if values.get("date"):
            try:
                on = date.fromisoformat(values["date"])
            except ValueError:
                errors["date"], on = "Use a date like 2026-11-23.", None
            if on is not None and on > today:
                errors["date"] = "That date is in the future: log touchpoints that happened."
        note = (values.get("note") or "").strip()
        if len(note) > NOTE_LIMIT:
            errors["note"] = f"Keep the note under {NOTE_LIMIT} characters."
        if errors or partner is None:
            return Step.end(Reply.of(await self._form(turn, values, errors)))
        return await self._record(turn, {"partner_id": partner.id, "partner": partner.name, "kind": kind, "on": on,
                                         "note": note or None, "link": safe_link(values.get("link"))})


class MaturityFlow(FlowBase):
    name: ClassVar[str] = "maturity"
    title: ClassVar[str] = "maturity stage"
    commands: ClassVar[tuple[Command, ...]] = (
        Command(
            words=("maturity",),
            help="*maturity Finance trusted advisor* to set a partner's stage "
                 "(ad hoc, order taker, trusted advisor, strategic partner)",
            roles=BRM_ROLES,
            slash=("maturity",),
            example="maturity Finance trusted advisor",
        ),
    )

    def __init__(self) -> None:
        self.steps: Mapping[str, StepHandler] = {}

    async def start(self, turn: Turn, argument: str) -> Step:
        refused = _not_brm(turn)
        if refused is not None:
            return refused
        partner, rest = _find_partner(argument, await _my_partners(turn))
        stages = ", ".join(m.value for m in Maturity)
        if partner is None:
            return Step.end(warn(f"Which partner? Type like *maturity Finance trusted advisor* (stages: {stages})."))
        stage = " ".join(rest.casefold().replace("-", " ").split())
        if stage not in {m.value for m in Maturity}:
            return Step.end(warn(f"“{rest[:40]}” is not a stage. Stages: {stages}."))
        if stage == partner.maturity:
            return Step.end(Reply.text(f"{partner.name} is already at *{stage}*."))
        assert turn.person.id is not None
        before = partner.maturity
        await turn.store.relationships.set_maturity(partner, stage=stage, by_person_id=turn.person.id, now=turn.now)
        return Step.end(Reply.text(f"{partner.name}: {before} → *{stage}* (set by {turn.person.name}, "
                                   f"{turn.local(turn.now)})."))


class NudgeFlow(FlowBase):
    """The buttons of the nudge message: log a touchpoint, open a request, snooze (1 or 2 weeks)."""

    name: ClassVar[str] = "nudge"
    title: ClassVar[str] = "snooze"

    def __init__(self, touchpoint: TouchpointFlow) -> None:
        self._touchpoint = touchpoint
        self.steps: Mapping[str, StepHandler] = {"reason": self._reason}
        self.actions: Mapping[str, ActionHandler] = {"nudge:act": self._act}

    async def start(self, turn: Turn, argument: str) -> Step:
        return Step.end(Reply.text("Nudges come from me on weekday mornings; their buttons act on them."))

    async def _act(self, turn: Turn, inbound: Inbound) -> Step:
        assert inbound.action is not None and turn.person.id is not None
        verb, _, item = inbound.action.value.partition("|")
        kind, _, raw_id = item.partition(":")
        subject = int(raw_id) if raw_id.isdigit() else None
        mine = {v.partner.id: v.partner for v in await turn.store.relationships.of_brm(turn.person.id)}
        if subject is None or kind not in ("partner", "request"):
            return Step.end(warn("That button is not one I know."))
        if kind == "partner" and subject not in mine:
            return Step.end(warn("That partner is not one of your relationships any more."))
        if kind == "request":
            request = await turn.store.requests.visible_one(turn.person, subject)
            if request is None or request.partner_id not in mine:
                return Step.end(warn(f"DR-{subject} is not among your partners' requests."))
        if verb == "touchpoint" and kind == "partner":
            return await self._touchpoint.open_form(turn, {"partner": str(subject)})
        if verb == "open" and kind == "request":
            details = await turn.store.requests.details(turn.person, subject)
            return Step.end(describe(details, turn.tz)) if details else Step.end(warn(f"DR-{subject} is gone."))
        if verb in SNOOZE_WEEKS:
            until = turn.now + timedelta(weeks=SNOOZE_WEEKS[verb])
            snooze = await turn.store.relationships.snooze(brm_id=turn.person.id, item=item, until=until,
                                                           now=turn.now)
            return Step(
                (Reply.text(f"Snoozed until {turn.local(until)}. Leaders still see it. "
                            "Why? Type a short reason, or *skip*."),),
                next="reason",
                data={"snooze": snooze.id},
            )
        return Step.end(warn("That button is not one I know."))

    async def _reason(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        text = inbound.text.strip()
        if not text or text.casefold() == "skip":
            return Step.end(Reply.text("OK, no reason recorded."))
        if len(text) > 300:
            return Step(( warn("Keep the reason under 300 characters, or type *skip*."),), "reason", state.data)
        await turn.store.relationships.set_snooze_reason(snooze_id=int(state.data["snooze"]), reason=text,
                                                         brm_id=turn.person.id or 0)
        return Step.end(Reply.text("Noted the reason with the snooze."))

    async def reprompt(self, turn: Turn, state: FlowState) -> tuple[Reply, ...]:
        return (Reply.text("Why did you snooze it? Type a short reason, or *skip*."),)


def nudge_choices(item: str, *, request_key: str | None, reason: str) -> Choices:
    """The buttons under one item of a nudge message."""
    first = (Option(f"open|{item}", f"Open {request_key}") if request_key
             else Option(f"touchpoint|{item}", "Log a touchpoint", primary=True))
    return Choices(
        id="nudge:act",
        prompt=reason,
        options=(first, Option(f"snooze1|{item}", "Snooze 1 week"), Option(f"snooze2|{item}", "Snooze 2 weeks")),
    )
