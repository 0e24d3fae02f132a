"""The conversation engine: one turn in, replies out, state saved once.

A turn runs inside one database transaction: the inbound event id is claimed (a platform
retry of it does nothing), the person is resolved, the active flow's step runs, and its
domain writes, queued notifications and the new conversation state are committed together.
Turns of one conversation are serialised by a per-key lock in this process and by a version
check on the state row across processes; a turn that loses the race is run again on the
fresh state.

Example::

    engine = Engine(db, flows=default_flows(), clock=lambda: datetime.now(UTC))
    replies = await engine.handle(Inbound(key=key, event_id="e1", text="new request"))
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import unicodedata
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import MappingProxyType
from typing import Any, ClassVar, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from conversations import codec
from conversations.catalog import FORM_OPEN, FORM_SUBMIT, GLOBAL_CANCEL, GLOBAL_HELP, Catalog, Command, HomeButton
from conversations.messages import ConversationKey, Inbound, Option, Reply, Sender, Text, TextStyle
from conversations.observe import NO_OBSERVER, TURN_DUPLICATE, TURN_ERROR, TURN_OK, Observer
from storage import store as q
from storage.db import Database
from storage.models import Person, Role
from storage.store import Store
from storage.tx import DATABASE_ERRORS, INTEGRITY_ERRORS, unique_conflict

log = logging.getLogger(__name__)

JSONValue = Any
STATE_TTL = timedelta(hours=24)
MAX_TURN_ATTEMPTS = 8
MAX_HANDOFFS = 3


@dataclass(frozen=True, slots=True)
class Step:
    """What a flow returns. ``next`` None ends the flow; flows never save state themselves."""

    replies: tuple[Reply, ...]
    next: str | None = None
    data: Mapping[str, JSONValue] = field(default_factory=dict)
    handoff: tuple[str, str] | None = None  # (flow, argument) to start next; ("", text) re-reads text
    flow: str | None = None  # the flow whose step ``next`` names, if not the flow that returned it

    @classmethod
    def end(cls, *replies: Reply) -> Step:
        return cls(replies=tuple(replies), next=None, data={})

    @classmethod
    def hand_to(cls, flow: str, argument: str = "", *replies: Reply) -> Step:
        """End this flow and start ``flow`` (or, with ``""``, read the text afresh)."""
        return cls(replies=tuple(replies), next=None, data={}, handoff=(flow, argument))


@dataclass(frozen=True, slots=True)
class FlowState:
    flow: str
    step: str
    data: Mapping[str, JSONValue]


@dataclass(slots=True)
class Turn:
    """Everything a flow may use for one turn. ``store`` is storage on the turn's transaction."""

    store: Store
    person: Person
    inbound: Inbound
    now: datetime
    tz: ZoneInfo
    catalog: Catalog | None = None
    queued: int = 0
    idle: timedelta = timedelta(0)  # how long the conversation was quiet before this message
    active_flow: str | None = None  # set for an action handler: the flow going on beside it, if any
    brm_channel: str | None = None

    @property
    def home_options(self) -> tuple[Option, ...]:
        """The flows this person can start from a menu."""
        return self.catalog.home_options(self.person.role) if self.catalog is not None else ()

    @property
    def text(self) -> str:
        return self.inbound.text

    async def notify(self, *, recipient_id: int, kind: str, subject: str, reply: Reply, period: str = "") -> bool:
        """Queue a message the bot starts, committed with this turn (or not at all)."""
        added = await self.store.outbox.enqueue(
            kind=kind,
            subject=subject,
            period=period,
            recipient_id=recipient_id,
            payload=codec.reply_to_json(reply),
            now=self.now,
        )
        self.queued += int(added)
        return added

    async def notify_brm_team(self, *, kind: str, subject: str, reply: Reply) -> int:
        """Tell the BRM team (a request nobody owns yet): once in their channel when one is
        configured (``BRM_BOT_BRM_CHANNEL``), else each BRM but the person of this turn.
        Returns how many messages were queued (0 for a repeat)."""
        if self.brm_channel is not None:
            added = await self.store.outbox.enqueue(
                kind=kind, subject=subject, channel=self.brm_channel, payload=codec.reply_to_json(reply), now=self.now
            )
            self.queued += int(added)
            return int(added)
        queued = 0
        for member in await self.store.directory.with_role(Role.BRM):
            if member.id is not None and member.id != self.person.id:
                queued += await self.notify(recipient_id=member.id, kind=kind, subject=subject, reply=reply)
        return queued

    def local(self, moment: datetime) -> str:
        """A time shown in the reader's own time zone, the one way times are written to people."""
        from conversations.flows.common import show_time

        return show_time(moment, self.tz)


StepHandler = Callable[["Turn", "FlowState", Inbound], Awaitable["Step"]]
ActionHandler = Callable[["Turn", Inbound], Awaitable["Step"]]


class Flow(Protocol):
    """A small state machine that declares itself. See ``docs/flows/`` for the diagrams.

    ``commands`` start it (typed words, ``/brm`` verbs, a help line per role), ``home`` puts a
    button on the home screen, ``form_id`` says it also takes all its input from a form
    (``<name>:open`` / ``<name>:submit``), ``steps`` maps each step name to its handler, and
    ``actions`` maps action ids to handlers that work without a conversation (buttons on
    messages the bot sent first). ``version`` changes when saved steps stop meaning the same.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    keeps_draft: ClassVar[bool]  # True: leaving it loses typed work, so expiry and cancel say so
    version: ClassVar[int]
    commands: ClassVar[tuple[Command, ...]]
    home: ClassVar[HomeButton | None]
    form_id: ClassVar[str | None]
    form_words: ClassVar[frozenset[str]]

    @property
    def steps(self) -> Mapping[str, StepHandler]: ...

    @property
    def actions(self) -> Mapping[str, ActionHandler]: ...

    async def start(self, turn: Turn, argument: str) -> Step: ...

    async def reprompt(self, turn: Turn, state: FlowState) -> tuple[Reply, ...]: ...


class FlowBase:
    """What most flows declare alike, so a flow declares only what is its own: it keeps no
    draft, is at version 1, has no commands, home button, form, steps or actions, and has
    nothing to ask again after an interruption. A flow subclasses it and overrides the rest.
    """

    keeps_draft: ClassVar[bool] = False
    version: ClassVar[int] = 1
    commands: ClassVar[tuple[Command, ...]] = ()
    home: ClassVar[HomeButton | None] = None
    form_id: ClassVar[str | None] = None
    form_words: ClassVar[frozenset[str]] = frozenset()
    steps: Mapping[str, StepHandler] = MappingProxyType({})
    actions: Mapping[str, ActionHandler] = MappingProxyType({})

    async def reprompt(self, turn: Turn, state: FlowState) -> tuple[Reply, ...]:
        return ()


class FormFlow(Flow, Protocol):
    """A flow that can also take all its input at once from a form (a modal, a card)."""

    async def open_form(self, turn: Turn, prefill: Mapping[str, str]) -> Step: ...

    async def submit_form(self, turn: Turn, values: Mapping[str, str]) -> Step: ...


MENU = "menu"


BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def clean_text(raw: str) -> str:
    """NFC-normalised, stripped text without control characters (newlines and tabs kept).

    Bidi overrides go (they can make text read differently from what is stored); zero-width
    joiners stay, since emoji sequences and Persian or Hindi spelling need them.
    """
    text = unicodedata.normalize("NFC", raw)
    return "".join(
        ch for ch in text if ch in "\n\t" or (unicodedata.category(ch) not in ("Cc", "Cs") and ch not in BIDI_CONTROLS)
    ).strip()


class Engine:
    """Runs flows for neutral inbound messages. One per process, shared by all adapters."""

    def __init__(
        self,
        db: Database,
        flows: Sequence[Flow],
        *,
        clock: Callable[[], datetime],
        default_timezone: str = "UTC",
        on_queued: Callable[[], None] | None = None,
        state_ttl: timedelta = STATE_TTL,
        state_cache_size: int = 10_000,
        person_cache_seconds: float = 30.0,
        observer: Observer = NO_OBSERVER,
        brm_channel: str | None = None,
    ) -> None:
        """``brm_channel`` is where requests nobody owns are announced to the BRM team, an address
        the delivery worker reads (``slack:C0123ABCD``); None announces them to each BRM."""
        names = [f.name for f in flows]
        if len(set(names)) != len(names):
            raise ValueError(f"two flows share a name: {sorted(names)}")
        self.db = db
        self.flows: dict[str, Flow] = {f.name: f for f in flows}
        self.catalog = Catalog(list(flows))
        if MENU not in self.flows:
            raise ValueError(f"the flows need a {MENU!r} flow: it answers help and anything unrecognised")
        self._actions: dict[str, tuple[str, ActionHandler]] = {}
        for flow in flows:
            for action_id, handler in flow.actions.items():
                if action_id in self._actions:
                    first = self._actions[action_id][0]
                    raise ValueError(f"action {action_id!r} is claimed by both {first} and {flow.name}")
                self._actions[action_id] = (flow.name, handler)
        self._clock = clock
        self._default_tz = _zone(default_timezone)
        self._default_tz_name = default_timezone
        self._on_queued = on_queued
        self._ttl = state_ttl
        self._locks: dict[ConversationKey, _KeyLock] = {}
        self._states: OrderedDict[q.StateKey, q.SavedState] = OrderedDict()
        self._state_cache_size = state_cache_size
        self._people: dict[tuple[str, str, str], tuple[Person, float]] = {}
        self._person_ttl = person_cache_seconds
        self.observer = observer
        self.brm_channel = brm_channel

    # --- public ------------------------------------------------------------------------------

    async def handle(self, inbound: Inbound, *, afresh: bool = False) -> list[Reply]:
        """Run one turn. Returns the replies to show; [] for a repeated event id.

        ``afresh`` sets aside whatever flow was active first (Slack's ``/brm`` starts anew each time).
        """
        inbound = _cleaned(inbound)
        started = time.perf_counter()
        platform = inbound.key.platform
        try:
            replies, duplicate = await self._handle(inbound, afresh)
        except Exception as exc:
            seconds = time.perf_counter() - started
            if isinstance(exc, DATABASE_ERRORS):
                self.observer.database_error("turn")
            self.observer.turn(platform, outcome=TURN_ERROR, seconds=seconds)
            log.debug("turn failed (%s)", type(exc).__name__, extra=log_context(inbound, seconds))
            raise
        seconds = time.perf_counter() - started
        outcome = TURN_DUPLICATE if duplicate else TURN_OK
        self.observer.turn(platform, outcome=outcome, seconds=seconds)
        log.debug("turn %s: %d replies", outcome, len(replies), extra=log_context(inbound, seconds))
        return replies

    async def _handle(self, inbound: Inbound, afresh: bool) -> tuple[list[Reply], bool]:
        """The turn, run again when it lost a race; (replies, whether the event was a repeat)."""
        async with self._lock(inbound.key):
            last: BaseException | None = None
            for attempt in range(MAX_TURN_ATTEMPTS):
                try:
                    replies, queued, duplicate = await self._turn(inbound, afresh)
                except RACES as exc:
                    if not _is_race(exc):
                        raise
                    last = exc
                    log.debug("turn raced (%s), attempt %d", type(exc).__name__, attempt + 1,
                              extra=log_context(inbound))
                    self._states.pop(_state_key(inbound.key), None)
                    self._people.pop((inbound.key.platform, inbound.key.workspace, inbound.key.user), None)
                    await asyncio.sleep(0.005 * (attempt + 1))
                    continue
                if queued and self._on_queued is not None:
                    self._on_queued()
                return replies, duplicate
        raise RuntimeError("conversation state kept changing under this turn") from last

    async def home(
        self, key: ConversationKey, sender: Sender | None = None, *, event_id: str | None = None
    ) -> Reply | None:
        """The person's overview (App Home, a personal tab): no conversation state is touched.

        With ``event_id`` the platform event is claimed first: None when it was seen before.
        """
        from conversations.flows.requests import overview

        last: BaseException | None = None
        for attempt in range(MAX_TURN_ATTEMPTS):
            try:
                async with self.db.transaction() as store:
                    if event_id is not None and not await store.events.claim(
                        platform=key.platform, event_id=event_id, now=self._clock()
                    ):
                        return None
                    person = await self._person(store, key, sender)
                    tz = _zone(person.time_zone, self._default_tz)
                    drafts = [f.name for f in self.flows.values() if f.keeps_draft]
                    draft = None
                    for flow_name in drafts:
                        draft = draft or await store.state.draft_of(
                            platform=key.platform, workspace=key.workspace, user_id=key.user, flow=flow_name,
                            after=self._clock() - self._ttl,
                        )
                    return await overview(store, person, tz, self.catalog.home_options(person.role), draft)
            except RACES as exc:
                if not _is_race(exc):
                    raise
                last = exc
                await asyncio.sleep(0.005 * (attempt + 1))
        raise RuntimeError("could not resolve the person for the overview") from last

    async def welcome(self, key: ConversationKey, *, event_id: str, personal: bool) -> str | None:
        """The greeting after the app is installed, once per install event (None for a repeat)."""
        async with self.db.transaction() as store:
            if not await store.events.claim(platform=key.platform, event_id=event_id, now=self._clock()):
                return None
        return self.catalog.welcome(personal=personal)

    def knows_action(self, action_id: str) -> bool:
        """Whether a pressed button belongs to this version (a flow's step, form, menu or action)."""
        flow_name, _, rest = action_id.partition(":")
        return action_id in self._actions or (flow_name in self.flows and bool(rest))

    async def known(self, *, platform: str, workspace: str, user_id: str) -> bool:
        """Whether this platform user is already linked to a person (adapters skip profile look-ups)."""
        async with self.db.transaction() as store:
            person = await store.people.by_identity(platform=platform, workspace=workspace, user_id=user_id)
            return person is not None

    async def needs_profile(self, *, platform: str, workspace: str, user_id: str) -> bool:
        """Whether an adapter should look this platform user's profile up before the turn.

        True for someone not linked yet, and for someone linked without an email (their first
        look-up failed, or gave none): with an email, the next turn completes them, or merges
        them with the person already known by that email.
        """
        async with self.db.transaction() as store:
            person = await store.people.by_identity(platform=platform, workspace=workspace, user_id=user_id)
            return person is None or not person.email

    # --- one turn ------------------------------------------------------------------------------

    async def _turn(self, inbound: Inbound, afresh: bool = False) -> tuple[list[Reply], int, bool]:
        now = self._clock()
        skey = _state_key(inbound.key)
        try:
            async with self.db.transaction() as store:
                person = await self._person(store, inbound.key, inbound.sender)
                turn = Turn(store, person, inbound, now, _zone(person.time_zone, self._default_tz), self.catalog,
                            brm_channel=self.brm_channel)
                remembered = self._states.get(skey)
                saved = remembered or await store.state.load(skey)
                if saved is not None and saved.flow:
                    turn.idle = max(now - saved.updated_at, timedelta(0))
                before = (saved.flow, saved.step or "", saved.data) if saved and saved.flow else None
                state = FlowState(*before) if before else None

                replies: list[Reply] = []
                if state and saved and now - saved.updated_at > self._ttl:
                    flow = self.flows.get(state.flow)
                    if flow is not None and flow.keeps_draft:
                        replies.append(
                            Reply.text(
                                f"Your unfinished {flow.title} expired after 24 hours of silence, so I discarded "
                                "the draft. Nothing was submitted.",
                                TextStyle.WARNING,
                            )
                        )
                    state = None
                if state is not None and saved is not None:
                    flow = self.flows.get(state.flow)
                    if flow is None or saved.schema != flow.version or state.step not in flow.steps:
                        title = flow.title if flow is not None else "conversation"
                        replies.append(
                            Reply.text(
                                f"I was updated since your last message and can't continue your unfinished {title} "
                                "where it was, so I started over. Nothing was submitted.",
                                TextStyle.WARNING,
                            )
                        )
                        state = None
                if afresh and state is not None:
                    if self.flows[state.flow].keeps_draft:
                        title = self.flows[state.flow].title
                        replies.append(Reply.text(f"I set aside your unfinished {title}.", TextStyle.MUTED))
                    state = None

                step, owner = await self._route(turn, state, inbound)
                replies.extend(step.replies)
                after = (owner, step.next, dict(step.data)) if owner and step.next else None
                # Save when something changed, on every turn of an active flow (its silence clock), and
                # whenever the state came from memory: the version check proves nobody changed it since.
                written: q.SavedState | None = None
                version = saved.version if saved else None
                if after != before or after is not None or remembered is not None:
                    schema = self.flows[after[0]].version if after is not None else 1
                    flow_name, step_name, data = after or (None, "", {})
                    written = q.SavedState(
                        flow_name, step_name, data, version=(version or 0) + 1, updated_at=now, schema=schema
                    )
                # The event id is claimed last, with the state: a retried event rolls back what it wrote.
                if not await store.state.finish_turn(
                    skey, event_id=inbound.event_id, now=now, state=written, expected_version=version
                ):
                    raise _Duplicate
        except _Duplicate:
            log.info("duplicate event %s ignored", inbound.event_id, extra=log_context(inbound))
            return [], 0, True
        if written is not None:
            self._remember(skey, written)
        self._remember_person(inbound.key, person)
        return replies, turn.queued, False

    def _remember(self, skey: q.StateKey, saved: q.SavedState) -> None:
        """Keep the state this process last wrote; the version check catches anyone else's write."""
        self._states[skey] = saved
        self._states.move_to_end(skey)
        while len(self._states) > self._state_cache_size:
            self._states.popitem(last=False)

    async def _route(self, turn: Turn, state: FlowState | None, inbound: Inbound) -> tuple[Step, str | None]:
        step, owner = await self._route_once(turn, state, inbound)
        for _ in range(MAX_HANDOFFS):
            if step.handoff is None:
                break
            target, argument = step.handoff
            if target:
                then, owner = await self.flows[target].start(turn, argument), target
            else:
                if argument and argument != inbound.text:
                    # Read as if this had been typed (a typo corrected, a command confirmed).
                    inbound = dataclasses.replace(inbound, text=argument, action=None)
                    turn.inbound = inbound
                then, owner = await self._route_once(turn, None, inbound)
            step = Step(replies=step.replies + then.replies, next=then.next, data=then.data, flow=then.flow,
                        handoff=then.handoff)
        if step.handoff is not None:
            raise ValueError(f"flows kept handing over: {step.handoff!r}")
        if step.flow is not None:
            if step.flow not in self.flows:
                raise ValueError(f"a step names the unknown flow {step.flow!r}")
            owner = step.flow
        return step, owner

    async def _route_once(self, turn: Turn, state: FlowState | None, inbound: Inbound) -> tuple[Step, str | None]:
        """Pick what runs: a form, a global command, the active step, a trigger, or the menu.

        Returns the step and the flow that owns ``step.next`` (None when nothing goes on).
        """
        action = inbound.action
        if action is not None and inbound.form is not None:
            return await self._form(turn, state, action.id, inbound.form)

        words = inbound.text.casefold()
        command = words.rstrip(".!")
        if action is None and command in GLOBAL_CANCEL:
            flow = self.flows.get(state.flow) if state is not None else None
            if flow is None or not flow.keeps_draft:
                return Step.end(Reply.text("There is nothing to cancel. Type *help* to see what I can do.")), None
            return Step.end(Reply.text(f"Cancelled your {flow.title}. Nothing was saved.")), None
        if action is None and command in GLOBAL_HELP:
            if state is not None and state.flow in self.flows and state.flow != MENU:
                help_text = Reply.text(self.catalog.help_text(turn.person.role))
                flow = self.flows[state.flow]
                if flow.keeps_draft:
                    title = state.data.get("title")
                    named = f" “{title}”" if isinstance(title, str) and title else ""
                    draft = (f"You have an unfinished {flow.title}{named}: answer below to continue, "
                             "or *cancel* to discard it.")
                    help_text = Reply.of(*help_text.blocks, Text(draft, TextStyle.MUTED))
                return await self._keep(turn, state, help_text)
            return await self.flows[MENU].start(turn, ""), MENU

        if action is not None and action.id in self._actions:
            return await self._act(turn, state, inbound)

        if action is not None and action.id == f"{MENU}:pick":
            # The menu's buttons (also on App Home) always work; they replace an unfinished flow.
            step = await self._step(turn, FlowState(MENU, "pick", {}), inbound)
            if state is not None and state.flow not in (MENU, (step.handoff or ("",))[0]):
                title = self.flows[state.flow].title if state.flow in self.flows else "conversation"
                note = Reply.text(f"I set aside your unfinished {title}.", TextStyle.MUTED)
                step = Step(replies=(note, *step.replies), next=step.next, data=step.data, handoff=step.handoff)
            return step, MENU

        if state is not None and state.flow in self.flows:
            if action is not None and not _action_fits(action.id, state):
                note = Reply(
                    blocks=(Text("That button belongs to an earlier question, so I ignored it.", TextStyle.MUTED),),
                    ignored_action=True,
                )
                return await self._keep(turn, state, note)
            if action is None and not inbound.text:
                return await self._keep(turn, state, Reply.text("I got an empty message.", TextStyle.MUTED))
            return await self._step(turn, state, inbound), state.flow

        if action is not None:
            flow_name, _, rest = action.id.partition(":")
            if rest == "start" and flow_name in self.flows:
                return await self.flows[flow_name].start(turn, ""), flow_name
            note = Reply(
                blocks=(Text("That button belongs to a conversation that has already ended.", TextStyle.MUTED),),
                ignored_action=True,
            )
            return Step.hand_to(MENU, "", note), None

        if not inbound.text:
            return await self.flows[MENU].start(turn, ""), MENU
        found = self.catalog.trigger_of(words)
        if found is not None:
            flow_name, trigger = found
            argument = inbound.text[len(trigger) :].strip()
            return await self.flows[flow_name].start(turn, argument), flow_name
        return await self.flows[MENU].start(turn, inbound.text), MENU

    async def _step(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        handler = self.flows[state.flow].steps.get(state.step)
        if handler is None:
            raise ValueError(f"{state.flow} has no step {state.step!r}")  # saved states are checked on load
        return await handler(turn, state, inbound)

    async def _act(self, turn: Turn, state: FlowState | None, inbound: Inbound) -> tuple[Step, str | None]:
        """A button on a message the bot sent first: its handler runs beside whatever flow is active.

        The handler checks the subject in the action's value against the database and the person
        pressing. If it starts something (``next``), that replaces the active flow; otherwise the
        active flow stays exactly where it was.
        """
        assert inbound.action is not None
        owner, handler = self._actions[inbound.action.id]
        turn.active_flow = state.flow if state is not None and state.flow in self.flows else None
        step = await handler(turn, inbound)
        if step.next is not None or step.handoff is not None:
            if state is not None and state.flow in self.flows and self.flows[state.flow].keeps_draft:
                note = Reply.text(f"I set aside your unfinished {self.flows[state.flow].title}.", TextStyle.MUTED)
                step = Step((note, *step.replies), step.next, step.data, step.handoff, step.flow)
            return step, (step.flow or owner)
        if state is not None and state.flow in self.flows:
            return Step(step.replies, state.step, state.data, flow=state.flow), state.flow
        return Step.end(*step.replies), None

    async def _form(
        self, turn: Turn, state: FlowState | None, action_id: str, values: Mapping[str, str]
    ) -> tuple[Step, str | None]:
        flow_name, _, what = action_id.partition(":")
        flow = self.flows.get(flow_name)
        if flow is None or not hasattr(flow, "submit_form") or what not in (FORM_OPEN, FORM_SUBMIT):
            return Step.end(Reply.text("That form is not one I know.", TextStyle.WARNING)), None
        form_flow: FormFlow = flow  # type: ignore[assignment]
        step = await (form_flow.open_form(turn, values) if what == FORM_OPEN else form_flow.submit_form(turn, values))
        if state is not None:
            # A form stands beside the chat: whatever the chat was doing goes on as it was.
            return Step(replies=step.replies, next=state.step, data=state.data), state.flow
        return step, flow_name

    async def _keep(self, turn: Turn, state: FlowState, note: Reply) -> tuple[Step, str]:
        """Answer ``note``, ask the active question again and leave the state as it was."""
        again = await self.flows[state.flow].reprompt(turn, state)
        return Step(replies=(note, *again), next=state.step, data=state.data), state.flow

    async def _person(self, store: Store, key: ConversationKey, sender: Sender | None) -> Person:
        """The person writing: cached for a short while, else looked up, else created."""
        ident = (key.platform, key.workspace, key.user)
        cached = self._people.get(ident)
        if cached is not None and cached[1] > time.monotonic() and (cached[0].email or not (sender and sender.email)):
            return cached[0]
        person = await store.people.by_identity(platform=key.platform, workspace=key.workspace, user_id=key.user)
        if person is None:
            return await self._first_contact(store, key, sender)
        if not person.email and sender is not None and sender.email:
            return await self._complete(store, person, sender)
        return person

    def _remember_person(self, key: ConversationKey, person: Person) -> None:
        """Called after commit only, so a rolled-back first contact is never remembered.

        A cached person keeps their first expiry, so a role change is seen within the TTL.
        """
        ident = (key.platform, key.workspace, key.user)
        cached = self._people.get(ident)
        if cached is not None and cached[0] is person:
            return
        self._people[ident] = (person, time.monotonic() + self._person_ttl)
        if len(self._people) > self._state_cache_size:
            self._people.pop(next(iter(self._people)))

    async def _first_contact(self, store: Store, key: ConversationKey, sender: Sender | None) -> Person:
        email = (sender.email or "").strip().lower() if sender else ""
        directory_id = sender.directory_id if sender else None
        person: Person | None = None
        if directory_id:
            person = await store.people.by_directory_id(directory_id)
        if person is None and email:
            person = await store.people.by_email(email)
        if person is not None:
            # Someone known who had no way to be reached until now: what waited for them goes out.
            await store.outbox.reachable_again(recipient_id=person.id, now=self._clock())  # type: ignore[arg-type]
        else:
            tz = sender.time_zone if sender and sender.time_zone and _valid_zone(sender.time_zone) else None
            person = await store.people.add(
                name=(sender.name if sender and sender.name else key.user)[:200],
                email=email or None,
                role=Role.REQUESTER,
                time_zone=tz or self._default_tz_name,
                now=self._clock(),
            )
        linked = await store.people.link(
            person_id=person.id,  # type: ignore[arg-type]
            platform=key.platform,
            workspace=key.workspace,
            user_id=key.user,
            directory_id=directory_id,
            now=self._clock(),
        )
        if not linked:
            # Another turn linked this account first: start again and use the person it chose.
            raise q.StaleState(key)
        return person

    async def _complete(self, store: Store, person: Person, sender: Sender) -> Person:
        """A person first linked without an email, now that their email is known.

        If nobody has that email, it becomes theirs (with their real name). If someone does (an
        imported BRM, say), this person was a stand-in for them: their identities, requests and
        queued messages move to that person, in this turn's transaction, and the stand-in goes.
        """
        assert person.id is not None and sender.email
        email = sender.email.strip().lower()
        known = await store.people.by_email(email)
        if known is None:
            name = (sender.name or person.name)[:200]
            await store.people.set_email(person_id=person.id, email=email, name=name)
            return await store.people.get(person.id) or person
        assert known.id is not None
        if known.id != person.id:
            await store.people.merge(from_id=person.id, into_id=known.id)
            await store.outbox.reachable_again(recipient_id=known.id, now=self._clock())
            log.info("a person first seen without an email was merged with the one known by it")
        return known

    @asynccontextmanager
    async def _lock(self, key: ConversationKey) -> AsyncIterator[None]:
        """Serialise turns of one conversation in this process; idle keys are forgotten."""
        entry = self._locks.setdefault(key, _KeyLock(asyncio.Lock()))
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[key]


def log_context(inbound: Inbound, seconds: float | None = None) -> dict[str, object]:
    """The ``extra=`` of a turn's log lines (``bot/logs.py`` writes the key only as a hash)."""
    context: dict[str, object] = {
        "platform": inbound.key.platform,
        "event_id": inbound.event_id,
        "conversation_key": inbound.key,
    }
    if seconds is not None:
        context["duration_ms"] = round(seconds * 1000, 2)
    return context


class _Duplicate(Exception):
    """The turn's event id was processed before: what the turn wrote is rolled back."""


@dataclass(slots=True)
class _KeyLock:
    lock: asyncio.Lock
    users: int = 0


def _is_race(exc: BaseException) -> bool:
    """A lost race another attempt settles: a version conflict, two first contacts, a claimed id."""
    return isinstance(exc, q.StaleState) or unique_conflict(exc) in RACE_TABLES


RACES: tuple[type[BaseException], ...] = (q.StaleState, *INTEGRITY_ERRORS)
RACE_TABLES = frozenset({"processed_event", "identity", "conversation_state", "person"})


def _action_fits(action_id: str, state: FlowState) -> bool:
    flow_name, _, step = action_id.partition(":")
    return flow_name == state.flow and step == state.step


def _state_key(key: ConversationKey) -> q.StateKey:
    return q.StateKey(key.platform, key.workspace, key.channel, key.user, key.thread or "")


def _cleaned(inbound: Inbound) -> Inbound:
    text = clean_text(inbound.text)
    form = {k: clean_text(v) for k, v in inbound.form.items()} if inbound.form is not None else None
    if text == inbound.text and form == inbound.form:
        return inbound
    return Inbound(
        key=inbound.key,
        event_id=inbound.event_id,
        text=text,
        action=inbound.action,
        form=form,
        sender=inbound.sender,
        source=inbound.source,
    )


def _valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def _zone(name: str, default: ZoneInfo | None = None) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        if default is None:
            raise
        return default
