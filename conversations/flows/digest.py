"""The buttons of the weekly digest: open a request, or ask its BRM for an update.

The request id travels in the button's value and is checked against the database and the
presser: opening needs the presser to see the request, asking needs a leader or an admin (or
a BRM whose scope holds it). The ask goes to the BRM through the outbox, once per request and
asker a day (its outbox key), so a second press or a retry asks nothing twice.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from conversations.catalog import Command
from conversations.digest import ACTION, ASK_KIND, Week, ask_for_update, gather, render, scope_for
from conversations.engine import ActionHandler, FlowBase, Step, Turn
from conversations.flows.common import warn
from conversations.flows.requests import describe
from conversations.messages import Inbound, Reply, TextStyle
from storage.models import Role

ASKERS = frozenset({Role.LEADER.value, Role.ADMIN.value, Role.BRM.value})


class DigestFlow(FlowBase):
    name: ClassVar[str] = "digest"
    title: ClassVar[str] = "weekly digest"
    commands: ClassVar[tuple[Command, ...]] = (
        Command(
            words=("digest", "weekly digest"),
            help="*digest* to see last week's digest now (demand, pipeline, relationships, pulse), or "
                 "*digest 2026-W47* for another week",
            roles=ASKERS,
            slash=("digest",),
            example="digest",
        ),
    )

    def __init__(self) -> None:
        self.actions: Mapping[str, ActionHandler] = {ACTION: self._act}

    async def start(self, turn: Turn, argument: str) -> Step:
        """The digest the person would get for a week (the last complete one unless named):
        leaders and admins everyone's, a BRM their partners'."""
        scope = scope_for(turn.person)
        if scope is None:
            return Step.end(warn("The weekly digest is for leaders and BRMs. Type *help* to see what you can do."))
        try:
            week = Week.parse(argument) if argument.strip() else Week.last_complete(turn.now, turn.tz)
        except ValueError as exc:
            return Step.end(warn(f"{exc}. Try *digest* for last week, or *digest 2026-W47*."))
        if week.start(turn.tz) > turn.now:
            return Step.end(warn(f"{week} has not started yet. Try *digest* for last week."))
        everyone = turn.person.role in (Role.LEADER, Role.ADMIN)
        whose = "Everyone's demand" if everyone else f"{turn.person.name}'s partners"
        digest = await gather(turn.store, scope, week=week, tz=turn.tz, now=turn.now, whose=whose)
        return Step.end(render(digest, tz=turn.tz, now=turn.now))

    async def _act(self, turn: Turn, inbound: Inbound) -> Step:
        assert inbound.action is not None
        verb, _, raw_id = inbound.action.value.partition("|")
        if verb not in ("open", "ask") or not raw_id.isdigit():
            return Step.end(warn("That button is not one I know."))
        request = await turn.store.requests.visible_one(turn.person, int(raw_id))
        if request is None:
            return Step.end(warn(f"DR-{raw_id} is not a request you can see."))
        if verb == "open":
            details = await turn.store.requests.details(turn.person, int(raw_id))
            return Step.end(describe(details, turn.tz)) if details else Step.end(warn(f"DR-{raw_id} is gone."))
        if turn.person.role not in ASKERS:
            return Step.end(warn("Asking a BRM for an update is for leaders."))
        if request.brm_id is None:
            return Step.end(warn(f"{request.key} has no BRM yet: type *assign {request.key} to …* first."))
        brm = await turn.store.people.get(request.brm_id)
        if brm is None or brm.id == turn.person.id:
            return Step.end(warn(f"{request.key} is yours: type *status {request.key}* to see it."))
        period = f"{turn.now.astimezone(turn.tz).date().isoformat()} by {turn.person.id}"
        added = await turn.notify(recipient_id=brm.id or 0, kind=ASK_KIND, subject=request.key, period=period,
                                  reply=ask_for_update(asker=turn.person.name, request=request, now=turn.now))
        if not added:
            return Step.end(Reply.text(f"You asked {brm.name} about {request.key} today already."))
        return Step.end(Reply.text(f"Asked {brm.name} for an update on {request.key}.", TextStyle.SUCCESS))
