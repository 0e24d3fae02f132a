"""Reading requests: *my requests*, *status DR-42*, and the overview (App Home)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import ClassVar
from zoneinfo import ZoneInfo

from conversations.catalog import Command, HomeButton
from conversations.engine import MENU, FlowBase, FlowState, Step, StepHandler, Turn
from conversations.flows.common import pick, question, show_date, show_time, warn
from conversations.flows.menu import menu_question
from conversations.messages import Choices, Facts, Inbound, Option, Reply, Text, TextStyle
from storage.models import DemandRequest, OutboxStatus, Person, Role
from storage.store import RequestDetails, SavedState, StateKey, Store

KEY_PATTERN = re.compile(r"^\s*(?:dr\s*-?\s*)?#?(\d{1,9})\s*$", re.IGNORECASE)
LIST_LIMIT = 20


def parse_key(text: str) -> int | None:
    """The id in ``DR-42``, ``dr42``, ``#42`` or ``42``; None for anything else."""
    match = KEY_PATTERN.match(text)
    return int(match.group(1)) if match else None


def _line(request: DemandRequest, tz: ZoneInfo) -> str:
    when = show_date(request.updated_at.astimezone(tz).date())
    return f"{request.key} · {request.title} — {request.status.capitalize()} (updated {when})"


def request_list(title: str, requests: Sequence[DemandRequest], tz: ZoneInfo) -> Reply:
    lines = [_line(r, tz) for r in requests]
    return Reply.of(Text(title, TextStyle.HEADING), Text("\n".join(f"• {line}" for line in lines)))


class MyRequestsFlow(FlowBase):
    name: ClassVar[str] = "mine"
    title: ClassVar[str] = "request list"
    commands: ClassVar[tuple[Command, ...]] = (
        Command(
            words=("my requests", "mine", "list", "my demand", "requests"),
            help="*my requests* to list yours with their status",
            slash=("mine", "my", "list"),
            example="my requests",
        ),
    )
    home: ClassVar[HomeButton | None] = HomeButton("My requests")

    def __init__(self) -> None:
        self.steps: Mapping[str, StepHandler] = {}

    async def start(self, turn: Turn, argument: str) -> Step:
        mine = await turn.store.requests.visible(turn.person, mine_only=True, limit=LIST_LIMIT)
        replies: list[Reply] = []
        if mine:
            heading = f"Your requests ({LIST_LIMIT} most recent)" if len(mine) == LIST_LIMIT else "Your requests"
            replies.append(request_list(heading, mine, turn.tz))
        if turn.person.role == Role.BRM:
            partners_open = [
                r
                for r in await turn.store.requests.visible(turn.person, only_open=True, limit=LIST_LIMIT)
                if r.requester_id != turn.person.id
            ]
            if partners_open:
                replies.append(request_list("Open demand of your business partners", partners_open, turn.tz))
        if not replies:
            return Step(
                (Reply.text("You have no demand requests yet."), menu_question(turn.home_options, "Want to file one?")),
                next="pick",
                flow=MENU,
            )
        replies.append(Reply.text("Type *status DR-…* with a key for the details.", TextStyle.MUTED))
        return Step.end(*replies)


class StatusFlow(FlowBase):
    name: ClassVar[str] = "status"
    title: ClassVar[str] = "status check"
    commands: ClassVar[tuple[Command, ...]] = (
        Command(
            words=("status", "show", "track"),
            help="*status DR-42* to see one request and its history",
            slash=("status", "show", "track"),
            example="status DR-42",
        ),
    )
    home: ClassVar[HomeButton | None] = HomeButton("Check a status")

    def __init__(self) -> None:
        self.steps: Mapping[str, StepHandler] = {"key": self._key}

    async def start(self, turn: Turn, argument: str) -> Step:
        if not argument:
            return Step(await self.reprompt(turn, FlowState(self.name, "key", {})), "key", {})
        return await self._show(turn, argument)

    async def _key(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        if inbound.action is not None:
            return await self._show(turn, inbound.action.value, retry=True)
        option = pick(inbound.text, await self._recent(turn))
        return await self._show(turn, option.id if option else inbound.text, retry=True)

    async def reprompt(self, turn: Turn, state: FlowState) -> tuple[Reply, ...]:
        options = await self._recent(turn)
        if not options:
            return (Reply.text("Which request? Type its key, like DR-42."),)
        return (question("status:key", "Which request? Type its key (like DR-42) or pick one.", options),)

    async def _recent(self, turn: Turn) -> tuple[Option, ...]:
        recent = await turn.store.requests.visible(turn.person, limit=5)
        return tuple(Option(r.key, f"{r.key} {r.title}"[:75]) for r in recent)

    async def _show(self, turn: Turn, said: str, *, retry: bool = False) -> Step:
        request_id = parse_key(said)
        shown = said if len(said) <= 40 else said[:40] + "…"
        if request_id is None:
            error = f"“{shown}” is not a request key. Keys look like DR-42."
            if retry:
                return Step((warn(error), *await self.reprompt(turn, FlowState(self.name, "key", {}))), "key", {})
            return Step.end(warn(error))
        details = await turn.store.requests.details(turn.person, request_id)
        if details is None:
            return Step.end(warn(f"I couldn't find DR-{request_id} among the requests you can see."))
        notice = await brm_notice(turn, details.request)
        return Step.end(describe(details, turn.tz, notice=notice))


NOTIFIED = "request_submitted"  # the outbox kind of the BRM's notification (conversations/flows/intake.py)


async def brm_notice(turn: Turn, request: DemandRequest) -> str | None:
    """How the BRM's notification of a new request went: delivered, on its way, or not reaching them."""
    if request.brm_id is None or request.brm_id == request.requester_id:
        return None
    message = await turn.store.outbox.find(kind=NOTIFIED, subject=request.key, recipient_id=request.brm_id)
    if message is None:
        return None
    match message.status:
        case OutboxStatus.SENT:
            return "Delivered" + (f" {turn.local(message.sent_at)}" if message.sent_at else "")
        case OutboxStatus.UNREACHABLE:
            return ("Not delivered yet: the bot cannot reach the BRM in chat. It goes out when they next "
                    "write to the bot or install the app.")
        case OutboxStatus.FAILED:
            return "Could not be delivered. Contact the BRM directly."
    return "Pending: on its way"


def _change(before: str | None, after: str, note: str | None) -> str:
    """One history line: the move, and a note only when it says more than the status does."""
    said = (note or "").strip()
    if said.casefold().rstrip(".") in (after.casefold(), (before or "").casefold()):
        said = ""
    if before == after:
        return said[:1].upper() + said[1:] if said else f"{after.capitalize()} (no change)"
    move = f"{(before or 'new').capitalize()} → {after.capitalize()}"
    return f"{move} ({said})" if said else move


def describe(details: RequestDetails, tz: ZoneInfo, *, notice: str | None = None) -> Reply:
    request, history = details.request, details.history
    facts = Facts(
        title=f"{request.key} · {request.title}",
        items=(
            ("Status", request.status.capitalize()),
            ("Business outcome", request.outcome),
            ("Category", request.category.capitalize()),
            ("Urgency", request.urgency.capitalize()),
            ("Business partner", details.partner or "Not assigned yet"),
            ("BRM", details.brm or "Not assigned yet"),
            ("Requested by", details.requester or "?"),
            (
                "Desired date",
                show_date(request.desired_date) if request.desired_date else "No particular date",
            ),
            ("Submitted", show_time(request.created_at, tz)),
            *((("BRM notified", notice),) if notice else ()),
        ),
    )
    lines = [f"{show_time(c.at, tz)}: {_change(c.from_status, c.to_status, c.note)}" for c in history[-5:]]
    blocks: list[Text | Facts] = [facts]
    if request.description:
        blocks.insert(0, Text(f"{request.key} · {request.title}", TextStyle.HEADING))
        blocks[1] = Facts(items=(("Description", request.description), *facts.items))
    blocks.append(Text("History\n" + "\n".join(lines), TextStyle.MUTED))
    return Reply(blocks=tuple(blocks))


def draft_notice(key: StateKey, saved: SavedState) -> tuple[Text, Choices]:
    """"You have an unfinished request 'X': continue or discard?", with the draft reminder's buttons."""
    title = saved.data.get("title")
    named = f" “{title}”" if isinstance(title, str) and title else ""
    value = "|".join((key.platform, key.workspace, key.channel, key.user_id, key.thread, str(saved.version)))
    return (
        Text(f"You have an unfinished request{named}: continue or discard?", TextStyle.WARNING),
        Choices(id="drafts:act", prompt="Continue it where you left off, or discard it.",
                options=(Option(f"continue|{value}", "Continue", primary=True),
                         Option(f"discard|{value}", "Discard", danger=True))),
    )


async def overview(
    store: Store,
    person: Person,
    tz: ZoneInfo,
    options: tuple[Option, ...],
    draft: tuple[StateKey, SavedState] | None = None,
) -> Reply:
    """What a person sees first: an unfinished draft, their requests, and a BRM's or leader's open demand."""
    blocks: list[Text | Facts | Choices] = [Text(f"Hello {person.name}", TextStyle.HEADING)]
    if draft is not None:
        blocks.extend(draft_notice(*draft))
    mine = await store.requests.visible(person, mine_only=True, limit=10)
    if mine:
        blocks.append(Text("Your requests", TextStyle.HEADING))
        blocks.append(Text("\n".join(f"• {_line(r, tz)}" for r in mine)))
    else:
        blocks.append(Text("You have no demand requests yet. Send me *new request* to file one."))
    if person.role in (Role.BRM, Role.LEADER, Role.ADMIN):
        open_demand = [
            r
            for r in await store.requests.visible(person, only_open=True, limit=25)
            if r.requester_id != person.id
        ]
        heading = "Open demand of your business partners" if person.role == Role.BRM else "Open demand"
        blocks.append(Text(heading, TextStyle.HEADING))
        blocks.append(
            Text("\n".join(f"• {_line(r, tz)}" for r in open_demand) if open_demand else "Nothing open right now.")
        )
    blocks.append(Choices(id="menu:pick", prompt="What would you like to do?", options=options))
    return Reply(blocks=tuple(blocks))
