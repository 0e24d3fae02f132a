"""Value realization: did a delivered request bring what its requester expected?

The ``value-checks`` job asks the requester a while after delivery ("Did <title> deliver what
you expected: <business outcome>?") with yes, partly and no (:func:`value_question`). The
answer is an action (``value:answer``, the verb and the request id in the value) checked
against the database and the presser: only the requester answers, once. Yes moves the request
to value realized (a status change with who and when); partly or no tells its BRM and shows in
the leaders' digest. Either way an optional comment is asked next and kept with the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from conversations.engine import ActionHandler, FlowBase, FlowState, Step, StepHandler, Turn
from conversations.flows.common import warn
from conversations.messages import Choices, Inbound, Option, Reply, Text, TextStyle
from storage.models import DemandRequest, Status, ValueAnswer

ACTION = "value:answer"
KIND = "value-check"
FEEDBACK_KIND = "value-feedback"
COMMENT_MAX = 1000
OPTIONS = (("yes", "Yes"), ("partly", "Partly"), ("no", "No"))


def value_question(request: DemandRequest, *, reminder: bool = False) -> Reply:
    """The question the requester gets (and, unanswered, once more as a reminder)."""
    intro = "A reminder, in case it got lost: " if reminder else ""
    return Reply.of(
        Text(f"{intro}Did {request.key} “{request.title}” deliver what you expected: {request.outcome}?"),
        Choices(id=ACTION, prompt="Your answer tells its BRM whether the work paid off.",
                options=tuple(Option(f"{verb}|{request.id}", label, primary=verb == "yes") for verb, label in OPTIONS)),
    )


class ValueFlow(FlowBase):
    name: ClassVar[str] = "value"
    title: ClassVar[str] = "value check"

    def __init__(self) -> None:
        self.steps: Mapping[str, StepHandler] = {"comment": self._comment}
        self.actions: Mapping[str, ActionHandler] = {ACTION: self._answer}

    async def start(self, turn: Turn, argument: str) -> Step:
        return Step.end(Reply.text("I ask about delivered requests after a while; answer with the buttons."))

    async def _answer(self, turn: Turn, inbound: Inbound) -> Step:
        assert inbound.action is not None
        verb, _, raw_id = inbound.action.value.partition("|")
        if verb not in dict(OPTIONS) or not raw_id.isdigit():
            return Step.end(warn("That button is not one I know."))
        request = await turn.store.requests.get(int(raw_id))
        check = await turn.store.values.get(int(raw_id))
        if request is None or check is None or request.requester_id != turn.person.id:
            return Step.end(warn("That question is not about one of your requests."))
        answer = ValueAnswer(verb)
        if check.answer is not None or not await turn.store.values.answer(request_id=int(raw_id), answer=answer,
                                                                          now=turn.now):
            return Step.end(Reply.text(f"You answered about {request.key} already ({check.answer or 'just now'}). "
                                       "Thank you!"))
        if answer == ValueAnswer.YES and request.status == Status.DELIVERED.value:
            await turn.store.requests.change_status(request, to=Status.VALUE_REALIZED, by_person_id=turn.person.id,
                                                    now=turn.now, note="value confirmed by the requester")
        await self._tell_brm(turn, request, answer, period="answer")
        done = (f"Great: {request.key} is now value realized." if answer == ValueAnswer.YES
                else f"Thanks for saying so: {request.key}'s BRM will follow up.")
        return Step((Reply.text(done, TextStyle.SUCCESS),
                     Reply.text("Anything to add? Type a short comment, or *skip*.")),
                    next="comment", data={"request": request.id, "answer": answer.value})

    async def _comment(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        text = inbound.text.strip()
        if not text or text.casefold() in ("skip", "no", "nothing"):
            return Step.end(Reply.text("OK, no comment. Thank you!"))
        if len(text) > COMMENT_MAX:
            return Step((warn(f"Keep it under {COMMENT_MAX} characters, or type *skip*."),), "comment", state.data)
        request_id = int(state.data["request"])
        await turn.store.values.comment(request_id=request_id, text=text)
        request = await turn.store.requests.get(request_id)
        if request is not None:
            await self._tell_brm(turn, request, ValueAnswer(str(state.data["answer"])), period="comment", comment=text)
        return Step.end(Reply.text("Kept your comment with your answer. Thank you!", TextStyle.SUCCESS))

    @staticmethod
    async def _tell_brm(turn: Turn, request: DemandRequest, answer: ValueAnswer, *, period: str,
                        comment: str | None = None) -> None:
        if request.brm_id is None or request.brm_id == turn.person.id:
            return
        said = {"yes": "delivered what they expected", "partly": "delivered only partly what they expected",
                "no": "did not deliver what they expected"}[answer.value]
        lines = [Text(f"{turn.person.name} says {request.key} “{request.title}” {said}",
                      TextStyle.SUCCESS if answer == ValueAnswer.YES else TextStyle.WARNING),
                 Text(f"The promised outcome: {request.outcome}")]
        if comment:
            lines.append(Text(f"Their comment: “{comment}”"))
        await turn.notify(recipient_id=request.brm_id, kind=FEEDBACK_KIND, subject=request.key, period=period,
                          reply=Reply(blocks=tuple(lines)))

    async def reprompt(self, turn: Turn, state: FlowState) -> tuple[Reply, ...]:
        return (Reply.text("Anything to add about the value delivered? Type a short comment, or *skip*."),)
