"""The buttons of a draft reminder: continue the intake where it was, or discard it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from conversations.engine import MENU, ActionHandler, Flow, FlowBase, FlowState, Step, StepHandler, Turn
from conversations.flows.common import warn
from conversations.messages import Inbound, Reply
from storage.store import SavedState, StateKey


class DraftsFlow(FlowBase):
    name: ClassVar[str] = "drafts"
    title: ClassVar[str] = "draft reminder"

    def __init__(self, intake: Flow) -> None:
        self._intake = intake
        self.steps: Mapping[str, StepHandler] = {}
        self.actions: Mapping[str, ActionHandler] = {"drafts:act": self._act}

    async def start(self, turn: Turn, argument: str) -> Step:
        return Step.end(Reply.text("Draft reminders come from me; their buttons continue or discard a draft."))

    async def _act(self, turn: Turn, inbound: Inbound) -> Step:
        assert inbound.action is not None
        parts = inbound.action.value.split("|")
        if len(parts) != 7 or not parts[6].isdigit():
            return Step.end(warn("That button is not one I know."))
        verb, platform, workspace, channel, user, thread, _version = parts
        mine = turn.inbound.key
        if (platform, workspace, user) != (mine.platform, mine.workspace, mine.user):
            return Step.end(warn("That draft is not yours."))
        key = StateKey(platform, workspace, channel, user, thread)
        saved = await turn.store.state.load(key)
        if saved is None or saved.flow != self._intake.name:
            return Step.end(Reply.text("That draft is no longer waiting: it was finished, changed or discarded."))
        if verb == "continue":
            if (channel, thread or None) != (mine.channel, mine.thread):
                return Step.end(Reply.text("Your draft waits in the conversation where you started it."))
            again = await self._intake.reprompt(turn, FlowState(saved.flow, saved.step or "", saved.data))
            return Step.end(Reply.text("Here is where you left off."), *again)
        if verb == "discard" and (channel, thread or None) == (mine.channel, mine.thread):
            # The draft is this conversation's active flow: ending it here lets the engine save once.
            return Step.hand_to(MENU, "", Reply.text("Discarded your draft. Nothing was submitted."))
        if verb == "discard":
            empty = SavedState(None, "", {}, saved.version + 1, turn.now, 1)
            await turn.store.state.save(key, empty, expected_version=saved.version)
            return Step.end(Reply.text("Discarded your draft. Nothing was submitted."))
        return Step.end(warn("That button is not one I know."))
