"""The BRM workflow: a request moved through its lifecycle, in chat and from the BRM's notification.

Typed commands (``accept DR-13``, ``move DR-13 to shaping because …``, ``assign DR-13 to
bob@example.com``, ``reject DR-13 because …``, ``link DR-14 to DR-1``, ``ask``/``answer``/
``comment``, ``triage``, ``pipeline``) and the buttons on the new-request notification
(``work:triage``, the verb and the request id in the value) run the same rules:

* the lifecycle allows only the transitions in :data:`TRANSITIONS`; anything else is refused
  with the allowed next steps, and every change records who, when, from, to and the note;
* who may do what (:func:`rights`): requesters see and comment on their own requests; the
  partner's BRM, the assigned BRM, and any BRM for an unassigned request act on it; leaders see
  everything and may reassign; admins may do everything. A refused action changes nothing;
* the requester (and anyone following the request) is told about each change that matters
  through the outbox, once per change: the outbox key carries the change's or the note's id.

The diagram is in ``docs/flows/lifecycle.md``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from conversations.catalog import Command
from conversations.digest import CONNECTED_DAYS, CONNECTED_SCAN
from conversations.engine import ActionHandler, FlowBase, FlowState, Step, StepHandler, Turn
from conversations.flows.common import refuse, warn
from conversations.matching import connected
from conversations.messages import Choices, Facts, Inbound, Option, Reply, Text, TextStyle
from storage.digest import Scope
from storage.models import OPEN_STATUSES, DemandRequest, NoteKind, Person, Role, Status

FLOW = "work"
TRIAGE_ACTION = f"{FLOW}:triage"
ANSWER_ACTION = f"{FLOW}:answer"
UPDATE_KIND = "request_update"
NOTE_MAX = 2000
LIST_LIMIT = 20
OLDEST_PER_STATUS = 3
STAFF = frozenset({Role.BRM.value, Role.LEADER.value, Role.ADMIN.value})
ACTORS = frozenset({Role.BRM.value, Role.ADMIN.value})

TRANSITIONS: Mapping[Status, tuple[Status, ...]] = {
    Status.SUBMITTED: (Status.TRIAGED, Status.DEFERRED, Status.REJECTED),
    Status.TRIAGED: (Status.SHAPING, Status.DEFERRED, Status.REJECTED),
    Status.SHAPING: (Status.APPROVED, Status.DEFERRED, Status.REJECTED),
    Status.APPROVED: (Status.IN_DELIVERY, Status.DEFERRED),
    Status.DEFERRED: (Status.TRIAGED, Status.SHAPING, Status.REJECTED),
    Status.IN_DELIVERY: (Status.DELIVERED,),
    Status.DELIVERED: (Status.VALUE_REALIZED,),
    Status.REJECTED: (Status.TRIAGED,),
    Status.VALUE_REALIZED: (),
}
# The changes a requester hears about (a watcher hears about every change).
TOLD = frozenset({Status.TRIAGED, Status.APPROVED, Status.REJECTED, Status.DELIVERED})
TRIAGE_OPTIONS = (
    ("accept", "Accept"),
    ("ask", "Ask the requester"),
    ("assign", "Assign to another BRM"),
    ("link", "Link as duplicate"),
    ("reject", "Reject"),
)

KEY = r"(?:dr\s*-?\s*)?#?(\d{1,9})"
_MOVE = re.compile(rf"^{KEY}\s+to\s+(.+?)(?:\s+because\s+(.+))?$", re.IGNORECASE | re.DOTALL)
_ASSIGN = re.compile(rf"^{KEY}\s+to\s+(\S+)$", re.IGNORECASE)
_LINK = re.compile(rf"^{KEY}\s+(?:to|with|as\s+(?:a\s+)?duplicate\s+of|duplicate\s+of)\s+{KEY}$", re.IGNORECASE)
_KEY_THEN_TEXT = re.compile(rf"^{KEY}(?:\s*[:,]?\s+(?:because\s+)?(.*))?$", re.IGNORECASE | re.DOTALL)


def status_named(text: str) -> Status | None:
    """A status as people type it: ``in delivery``, ``in-delivery``, ``value realised``."""
    said = " ".join(text.casefold().replace("-", " ").replace("_", " ").split()).replace("realised", "realized")
    return next((s for s in Status if s.value == said), None)


def allowed_next(status: str) -> tuple[Status, ...]:
    return TRANSITIONS.get(Status(status), ())


def _next_steps(request: DemandRequest) -> str:
    options = allowed_next(request.status)
    if not options:
        return f"{request.key} is {request.status}: that is the end of its lifecycle."
    return f"From {request.status}, {request.key} can move to: " + ", ".join(s.value for s in options) + "."


@dataclass(frozen=True, slots=True)
class Rights:
    """What one person may do with one request."""

    see: bool
    act: bool  # change its status, ask, link, reject
    assign: bool
    comment: bool


async def rights(turn: Turn, person: Person, request: DemandRequest) -> Rights:
    if person.role == Role.ADMIN:
        return Rights(True, True, True, True)
    own = request.requester_id == person.id
    if person.role == Role.BRM:
        partners = await turn.store.partners.owned_by(person.id) if person.id is not None else []
        act = request.brm_id in (None, person.id) or (request.partner_id is not None and request.partner_id in partners)
        return Rights(act or own, act, act, act or own)
    if person.role == Role.LEADER:
        return Rights(True, False, True, True)
    return Rights(own, False, False, own)


def _key_of(text: str) -> int | None:
    match = re.fullmatch(KEY, text.strip(), re.IGNORECASE)
    return int(match.group(1)) if match else None


def _age(now: datetime, then: datetime) -> str:
    days = (now - then).days
    return "today" if days < 1 else ("1 day" if days == 1 else f"{days} days")


def triage_choices(request: DemandRequest) -> Choices:
    """The actions on a BRM's new-request notification: the verb and the request id in each value."""
    return Choices(
        id=TRIAGE_ACTION,
        prompt="What next?",
        options=tuple(
            Option(f"{verb}:{request.id}", label, primary=verb == "accept", danger=verb == "reject")
            for verb, label in TRIAGE_OPTIONS
        ),
    )


async def tell_requester(
    turn: Turn, request: DemandRequest, *, period: str, reply: Reply, everyone: bool = True
) -> None:
    """Queue ``reply`` for the requester (and, with ``everyone``, the request's watchers), once per
    ``period`` (a change's or a note's id), never to the person who caused it."""
    assert request.id is not None
    recipients = [request.requester_id]
    if everyone:
        recipients += await turn.store.workflow.watchers(request.id)
    for recipient in dict.fromkeys(recipients):
        if recipient != turn.person.id:
            await turn.notify(recipient_id=recipient, kind=UPDATE_KIND, subject=request.key, period=period, reply=reply)


async def move(turn: Turn, request: DemandRequest, to: Status, note: str | None) -> Reply:
    """Change the status if the lifecycle allows it; tell those who care. The reply to the actor."""
    if to not in allowed_next(request.status):
        if to.value == request.status:
            return warn(f"{request.key} is already {request.status}. {_next_steps(request)}")
        return warn(f"{request.key} can't move from {request.status} to {to.value}. {_next_steps(request)}")
    before = request.status
    if request.brm_id is None and turn.person.role == Role.BRM:
        await turn.store.workflow.assign(request, brm_id=turn.person.id, now=turn.now)
    change = await turn.store.requests.change_status(
        request, to=to, by_person_id=turn.person.id, now=turn.now, note=note or None
    )
    watchers = await turn.store.workflow.watchers(request.id) if request.id is not None else []
    update = Reply.of(
        Text(f"{request.key} “{request.title}” is now {to.value}", TextStyle.HEADING),
        Text(f"{turn.person.name} moved it from {before} to {to.value}." + (f" Reason: {note}" if note else "")),
        Text(f"Type *status {request.key}* to see it."),
    )
    period = f"change:{change.id}"
    if to in TOLD:
        await tell_requester(turn, request, period=period, reply=update)
    else:
        for watcher in watchers:
            if watcher != turn.person.id:
                await turn.notify(recipient_id=watcher, kind=UPDATE_KIND, subject=request.key, period=period,
                                  reply=update)
    told = " The requester has been told." if to in TOLD and request.requester_id != turn.person.id else ""
    return Reply.text(f"{request.key} moved from {before} to {to.value}.{told}", TextStyle.SUCCESS)


async def _connected_demand(turn: Turn, mine: set[int | None]) -> list[str]:
    """Look-alike open requests of different partners (the intake's duplicate rule, across
    partners) that include at least one of the pipeline's own requests."""
    recent = await turn.store.digest.recent_open(Scope(), at=turn.now, days=CONNECTED_DAYS, limit=CONNECTED_SCAN)
    groups = [o for o in connected(recent) if mine.intersection(o.request_ids)]
    shown = [f"• {o.sentence()}" for o in groups[:OLDEST_PER_STATUS]]
    return shown + ([f"… and {len(groups) - len(shown)} more"] if len(groups) > len(shown) else [])


class WorkflowFlow(FlowBase):
    """Typed lifecycle commands, the triage queue, the pipeline, and the notification's buttons."""

    name: ClassVar[str] = FLOW
    title: ClassVar[str] = "request update"
    commands: ClassVar[tuple[Command, ...]] = (
        Command(
            words=("triage",),
            help="*triage* to list requests that wait for a BRM",
            roles=STAFF,
            slash=("triage",),
            example="triage",
        ),
        Command(
            words=("pipeline",),
            help="*pipeline* for counts by status and the oldest items",
            roles=STAFF,
            slash=("pipeline",),
            example="pipeline",
        ),
        Command(words=("accept",), help="*accept DR-13* to take a request into triage", roles=ACTORS,
                example="accept DR-13"),
        Command(words=("move",), help="*move DR-13 to shaping because …* to change its status", roles=ACTORS,
                example="move DR-13 to shaping because the sponsor agreed"),
        Command(words=("assign",), help="*assign DR-13 to bob@example.com* to hand it to another BRM",
                roles=frozenset({"brm", "leader", "admin"}), example="assign DR-13 to bob@example.com"),
        Command(words=("reject",), help="*reject DR-13 because …* (a reason is required)", roles=ACTORS,
                example="reject DR-13 because it is covered by the ERP upgrade"),
        Command(words=("link",), help="*link DR-14 to DR-1* to close a duplicate", roles=ACTORS,
                example="link DR-14 to DR-1"),
        Command(words=("ask",), help="*ask DR-13 …* to ask the requester a question", roles=ACTORS,
                example="ask DR-13 who else uses the report?"),
        Command(words=("answer",), help="*answer DR-13 …* to answer a BRM's question",
                example="answer DR-13 the whole finance team"),
        Command(words=("comment",), help="*comment DR-13 …* to add a note to a request",
                example="comment DR-13 the deadline moved to May"),
    )

    def __init__(self) -> None:
        self.steps: Mapping[str, StepHandler] = {
            "ask": self._typed_note,
            "answer": self._typed_note,
            "reject_reason": self._reject_reason,
            "assign_to": self._assign_to,
            "link_to": self._link_to,
        }
        self.actions: Mapping[str, ActionHandler] = {TRIAGE_ACTION: self._triage_pressed, ANSWER_ACTION: self._answer}

    # --- typed commands ---------------------------------------------------------------------------

    async def start(self, turn: Turn, argument: str) -> Step:
        verb = turn.text.split(maxsplit=1)[0].casefold() if turn.text else ""
        rest = turn.text.split(maxsplit=1)[1].strip() if len(turn.text.split(maxsplit=1)) > 1 else ""
        if verb == "triage":
            return Step.end(await self._triage_list(turn))
        if verb == "pipeline":
            return Step.end(await self._pipeline(turn))
        usage = next((c.help for c in self.commands if c.words[0] == verb), "")
        if verb == "move":
            match = _MOVE.match(rest)
            if match is None:
                return Step.end(warn(f"Type it like this: {usage}"))
            to = status_named(match.group(2))
            if to is None:
                return Step.end(
                    warn(f"“{match.group(2)}” is not a status. The statuses: {', '.join(s.value for s in Status)}.")
                )
            return Step.end(await self._act(turn, int(match.group(1)), to.value, match.group(3)))
        if verb == "assign":
            match = _ASSIGN.match(rest)
            if match is None:
                return Step.end(warn(f"Type it like this: {usage}"))
            return Step.end(await self._act(turn, int(match.group(1)), "assign", match.group(2)))
        if verb == "link":
            match = _LINK.match(rest)
            if match is None:
                return Step.end(warn(f"Type it like this: {usage}"))
            return Step.end(await self._act(turn, int(match.group(1)), "link", match.group(2)))
        match = _KEY_THEN_TEXT.match(rest)
        if match is None:
            return Step.end(warn(f"Type it like this: {usage}"))
        request_id, text = int(match.group(1)), (match.group(2) or "").strip()
        if verb == "accept":
            return Step.end(await self._act(turn, request_id, Status.TRIAGED.value, text or None))
        if verb == "reject":
            if not text:
                return Step.end(warn(f"A rejection needs a reason the requester can read: {usage}"))
            return Step.end(await self._act(turn, request_id, Status.REJECTED.value, text))
        if not text:
            return Step.end(warn(f"Say what to add: {usage}"))
        kind = {"ask": NoteKind.QUESTION, "answer": NoteKind.ANSWER}.get(verb, NoteKind.COMMENT)
        return Step.end(await self._note(turn, request_id, kind, text))

    async def reprompt(self, turn: Turn, state: FlowState) -> tuple[Reply, ...]:
        key = f"DR-{state.data.get('request')}"
        match state.step:
            case "ask":
                return (Reply.text(f"What do you want to ask about {key}? The requester will get your question."),)
            case "answer":
                return (Reply.text(f"Type your answer about {key}; the BRM will get it."),)
            case "reject_reason":
                return (Reply.text(f"Why is {key} rejected? The requester will read your reason."),)
            case "assign_to":
                return (await self._brm_question(turn, key),)
            case _:
                return (Reply.text(f"Which request is {key} a duplicate of? Type its key, like DR-1."),)

    # --- one rule for typed commands and buttons -------------------------------------------------

    async def _load(self, turn: Turn, request_id: int, need: str) -> tuple[DemandRequest | None, Reply | None]:
        """The request if the person may ``need`` (see, act, assign, comment) on it, else a refusal."""
        request = await turn.store.requests.get(request_id)
        right = await rights(turn, turn.person, request) if request is not None else None
        if request is None or right is None or (not right.see and not (need == "assign" and right.assign)):
            return None, refuse(f"I couldn't find DR-{request_id} among the requests you can see.")
        if not getattr(right, need):
            what = {
                "act": "change it",
                "assign": "reassign it",
                "comment": "comment on it",
            }[need]
            who = "its business partner's BRM, an admin" + (", or a leader" if need == "assign" else "")
            return None, refuse(f"You can see {request.key} but not {what}: that is for {who}. Nothing changed.")
        return request, None

    async def _act(self, turn: Turn, request_id: int, what: str, argument: str | None) -> Reply:
        request, refusal = await self._load(turn, request_id, "assign" if what == "assign" else "act")
        if request is None:
            assert refusal is not None
            return refusal
        if what == "assign":
            return await self._assign(turn, request, argument or "")
        if what == "link":
            return await self._link(turn, request, argument or "")
        return await move(turn, request, Status(what), argument)

    async def _assign(self, turn: Turn, request: DemandRequest, who: str) -> Reply:
        brm = await turn.store.people.by_email(who) if "@" in who else None
        if brm is None and who.isdigit():
            brm = await turn.store.people.get(int(who))
        if brm is None or brm.role not in ACTORS:
            return warn(f"{who} is not a BRM I know. Nothing changed.")
        if brm.id == request.brm_id:
            return warn(f"{request.key} is already with {brm.name}.")
        await turn.store.workflow.assign(request, brm_id=brm.id, now=turn.now)
        change = await turn.store.requests.change_status(
            request, to=Status(request.status), by_person_id=turn.person.id, now=turn.now,
            note=f"assigned to {brm.name}",
        )
        assert brm.id is not None
        if brm.id != turn.person.id:
            await turn.notify(
                recipient_id=brm.id,
                kind="request_assigned",
                subject=request.key,
                period=f"change:{change.id}",
                reply=Reply.of(
                    Text(f"{turn.person.name} assigned {request.key} “{request.title}” to you", TextStyle.HEADING),
                    triage_choices(request) if request.status == Status.SUBMITTED else Text(
                        f"Type *status {request.key}* to see it."
                    ),
                ),
            )
        return Reply.text(f"{request.key} is now with {brm.name}; they have been told.", TextStyle.SUCCESS)

    async def _link(self, turn: Turn, request: DemandRequest, other_key: str) -> Reply:
        other_id = _key_of(other_key)
        other = await turn.store.requests.get(other_id) if other_id is not None else None
        if other is None or other_id == request.id:
            return warn(f"“{other_key}” is not another request I know. Nothing changed.")
        if Status.REJECTED not in allowed_next(request.status):
            return warn(f"{request.key} is {request.status}, too far along to close as a duplicate.")
        assert other.id is not None
        await turn.store.workflow.link_duplicate(request, of_id=other.id)
        await turn.store.workflow.watch(request_id=other.id, person_id=request.requester_id, now=turn.now)
        done = await move(turn, request, Status.REJECTED, f"duplicate of {other.key}")
        return Reply.of(*done.blocks, Text(f"Its requester now follows {other.key}.", TextStyle.MUTED))

    async def _note(self, turn: Turn, request_id: int, kind: NoteKind, text: str) -> Reply:
        if len(text) > NOTE_MAX:
            return warn(f"That is {len(text):,} characters long; the limit is {NOTE_MAX:,}. Please shorten it.")
        request, refusal = await self._load(turn, request_id, "act" if kind == NoteKind.QUESTION else "comment")
        if request is None:
            assert refusal is not None
            return refusal
        assert request.id is not None
        note = await turn.store.workflow.add_note(
            request_id=request.id, by_person_id=turn.person.id, kind=kind.value, text=text, now=turn.now  # type: ignore[arg-type]
        )
        period = f"note:{note.id}"
        if kind == NoteKind.QUESTION:
            if request.brm_id is None and turn.person.role == Role.BRM:
                await turn.store.workflow.assign(request, brm_id=turn.person.id, now=turn.now)
            await tell_requester(
                turn,
                request,
                period=period,
                everyone=False,
                reply=Reply.of(
                    Text(f"{turn.person.name} has a question about {request.key} “{request.title}”", TextStyle.HEADING),
                    Text(text),
                    Choices(id=ANSWER_ACTION, prompt="Press Answer, or type *answer "
                            f"{request.key} …*", options=(Option(str(request.id), "Answer", primary=True),)),
                ),
            )
            return Reply.text(f"I asked the requester of {request.key}; their answer will come to you.",
                              TextStyle.SUCCESS)
        # An answer or a comment goes to the other side: the BRM who asked (or owns it), or the requester.
        if turn.person.id == request.requester_id:
            notes = await turn.store.workflow.notes(request.id)
            asker = next((n.by_person_id for n in reversed(notes) if n.kind == NoteKind.QUESTION), None)
            to = asker or request.brm_id
            if to is not None and to != turn.person.id:
                word = "answered" if kind == NoteKind.ANSWER else "commented on"
                await turn.notify(
                    recipient_id=to,
                    kind=UPDATE_KIND,
                    subject=request.key,
                    period=period,
                    reply=Reply.of(
                        Text(f"{turn.person.name} {word} {request.key} “{request.title}”", TextStyle.HEADING),
                        Text(text),
                    ),
                )
                return Reply.text(f"Thanks, I passed that on and kept it on {request.key}.", TextStyle.SUCCESS)
        else:
            await tell_requester(
                turn, request, period=period, everyone=False,
                reply=Reply.of(Text(f"{turn.person.name} commented on {request.key}", TextStyle.HEADING), Text(text)),
            )
        return Reply.text(f"Kept your note on {request.key}.", TextStyle.SUCCESS)

    # --- the notification's buttons -------------------------------------------------------------

    async def _triage_pressed(self, turn: Turn, inbound: Inbound) -> Step:
        assert inbound.action is not None
        verb, _, raw_id = inbound.action.value.partition(":")
        if verb not in dict(TRIAGE_OPTIONS) or not raw_id.isdigit():
            return Step.end(warn("That button is not one I know."))
        request_id = int(raw_id)
        request, refusal = await self._load(turn, request_id, "assign" if verb == "assign" else "act")
        if request is None:
            assert refusal is not None
            return Step.end(refusal)
        data: dict[str, Any] = {"request": request_id}
        if verb == "accept":
            return Step.end(await move(turn, request, Status.TRIAGED, None))
        if verb != "assign" and request.status not in (s.value for s in OPEN_STATUSES):
            return Step.end(warn(f"{request.key} is {request.status} already. {_next_steps(request)}"))
        step = {"ask": "ask", "assign": "assign_to", "link": "link_to", "reject": "reject_reason"}[verb]
        return Step(await self.reprompt(turn, FlowState(FLOW, step, data)), step, data, flow=FLOW)

    async def _answer(self, turn: Turn, inbound: Inbound) -> Step:
        assert inbound.action is not None
        value = inbound.action.value
        request = await turn.store.requests.get(int(value)) if value.isdigit() else None
        if request is None or request.requester_id != turn.person.id:
            return Step.end(warn("That question is not about one of your requests."))
        data: dict[str, Any] = {"request": request.id}
        return Step(await self.reprompt(turn, FlowState(FLOW, "answer", data)), "answer", data, flow=FLOW)

    # --- steps after a button --------------------------------------------------------------------

    async def _typed_note(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        text = inbound.text.strip()
        if not text:
            return Step(await self.reprompt(turn, state), state.step, state.data)
        kind = NoteKind.QUESTION if state.step == "ask" else NoteKind.ANSWER
        return Step.end(await self._note(turn, int(state.data["request"]), kind, text))

    async def _reject_reason(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        reason = inbound.text.strip()
        if len(reason) < 3 or reason.casefold() in ("skip", "none", "-"):
            return Step((warn("A rejection needs a reason the requester can read."), *await self.reprompt(turn, state)),
                        state.step, state.data)
        return Step.end(await self._act(turn, int(state.data["request"]), Status.REJECTED.value, reason))

    async def _assign_to(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        who = inbound.action.value if inbound.action is not None else inbound.text.strip()
        if inbound.action is None:
            options = (await self._brm_question(turn, "")).blocks[-1]
            assert isinstance(options, Choices)
            said = who.casefold()
            found = [o for i, o in enumerate(options.options, 1) if said in (str(i), o.label.casefold())]
            who = found[0].id if found else who
        return Step.end(await self._act(turn, int(state.data["request"]), "assign", who))

    async def _link_to(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        if _key_of(inbound.text) is None:
            return Step((warn("Keys look like DR-1."), *await self.reprompt(turn, state)), state.step, state.data)
        return Step.end(await self._act(turn, int(state.data["request"]), "link", inbound.text))

    async def _brm_question(self, turn: Turn, key: str) -> Reply:
        brms = [p for p in await turn.store.directory.with_role(Role.BRM) if p.id != turn.person.id]
        options = tuple(Option(str(p.id), f"{p.name} ({p.email})" if p.email else p.name) for p in brms)
        return Reply.of(Choices(id=f"{FLOW}:assign_to", prompt=f"Who should take {key}? Or type an email.",
                                options=options))

    # --- lists -------------------------------------------------------------------------------------

    async def _triage_list(self, turn: Turn) -> Reply:
        if turn.person.role not in STAFF:
            return warn("The triage queue is for BRMs and leaders. Type *my requests* for yours.")
        waiting = await turn.store.workflow.unassigned(limit=LIST_LIMIT)
        if not waiting:
            return Reply.text("Nothing waits for triage: every open request has a business partner and a BRM.")
        lines = []
        for r in waiting:
            missing = "no business partner" if r.partner_id is None else "no BRM"
            lines.append(f"• {r.key} · {r.title} — {r.status}, {missing}, waiting {_age(turn.now, r.created_at)}")
        return Reply.of(
            Text(f"Waiting for triage ({len(waiting)})", TextStyle.HEADING),
            Text("\n".join(lines)),
            Text("Type *accept DR-…* to take one, or *assign DR-… to name@…*.", TextStyle.MUTED),
        )

    async def _pipeline(self, turn: Turn) -> Reply:
        if turn.person.role not in STAFF:
            return warn("The pipeline is for BRMs and leaders. Type *my requests* for yours.")
        requests = await turn.store.workflow.pipeline(turn.person)
        if not requests:
            return Reply.text("Your pipeline is empty: no requests of your business partners yet.")
        by_status: dict[str, list[DemandRequest]] = {}
        for r in requests:
            by_status.setdefault(r.status, []).append(r)
        counts = tuple((s.value.capitalize(), str(len(by_status.get(s.value, [])))) for s in Status)
        lines = []
        for s in Status:
            if s in OPEN_STATUSES and by_status.get(s.value):
                oldest = sorted(by_status[s.value], key=lambda r: r.updated_at)[:OLDEST_PER_STATUS]
                shown = "; ".join(f"{r.key} {r.title} ({_age(turn.now, r.updated_at)})" for r in oldest)
                lines.append(f"• {s.value.capitalize()}: {shown}")
        whose = "your business partners" if turn.person.role == Role.BRM else "everyone"
        blocks: list[Text | Facts] = [Text(f"Pipeline of {whose}", TextStyle.HEADING), Facts(items=counts)]
        if lines:
            blocks.append(Text("Oldest open items, by time in their status:\n" + "\n".join(lines)))
        connected_lines = await _connected_demand(turn, {r.id for r in requests})
        if connected_lines:
            blocks.append(Text("Connected demand (look-alike requests from different partners):\n"
                               + "\n".join(connected_lines)))
        return Reply(blocks=tuple(blocks))
