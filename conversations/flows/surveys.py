"""Answering a pulse survey: one tap per question, typed answers too, stop and go on later.

The invitation (and the reminder) shows the first question with its options as buttons.
Those buttons are actions (``survey:answer``): the run, the question and the answer travel
in the value and are checked against the database and the person pressing, so they work
beside anything else the person is doing; an intake half-way stays where it was. After an
answer the next question follows; a free-text question is typed, so when nothing else is
going on the conversation moves into this flow's ``answer`` step, and otherwise the person
is told to type *survey* when they are ready. *survey* goes on with the first question not
answered yet, any time within the window.

A second answer to the same question asks first (``survey:replace``). After the window
closes, an answer gets a polite "this survey closed". An anonymous run's answers keep no
person id (see :mod:`storage.surveys`). A skipped optional question is stored as an answer
with no value, so it is not asked again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import ClassVar
from zoneinfo import ZoneInfo

from conversations.catalog import Command
from conversations.engine import MENU, ActionHandler, FlowBase, FlowState, Step, StepHandler, Turn
from conversations.flows.common import check_text, not_an_option, pick, warn
from conversations.messages import Choices, Inbound, Option, Reply, Text, TextStyle
from conversations.surveys import Question, SurveyDefinition
from storage.models import QuestionKind, SurveyAnswer, SurveyRun

FLOW = "survey"
ANSWER = "survey:answer"
REPLACE = "survey:replace"
SKIP = "skip"
ANSWER_LIMIT = 1000  # a free answer; it also travels in a "replace it?" button's value
SEP = "|"


@dataclass(frozen=True, slots=True)
class Given:
    """One answer as given: a number, an option, a text, or nothing (a skipped optional question)."""

    value: int | None = None
    choice: str | None = None
    text: str | None = None

    @property
    def skipped(self) -> bool:
        return self.value is None and self.choice is None and self.text is None

    def shown(self) -> str:
        if self.value is not None:
            return str(self.value)
        if self.choice is not None:
            return self.choice
        if self.text is not None:
            return f"“{self.text if len(self.text) <= 80 else self.text[:80] + '…'}”"
        return "no answer"

    def token(self, question: Question) -> str:
        """The answer as a button's value carries it."""
        if self.skipped:
            return SKIP
        if self.choice is not None:
            return str(question.options.index(self.choice) + 1)
        return str(self.value) if self.value is not None else self.text or ""


def _stored(answer: SurveyAnswer) -> Given:
    return Given(answer.value, answer.choice, answer.text)


def _from_token(question: Question, token: str) -> Given | None:
    """A button's value back into an answer; None when it does not fit the question."""
    if token == SKIP:
        return Given() if not question.required else None
    if question.kind == QuestionKind.TEXT:
        return Given(text=token[:ANSWER_LIMIT]) if token.strip() else None
    if not token.isdigit():
        return None
    number = int(token)
    if question.kind == QuestionKind.CHOICE:
        return Given(choice=question.options[number - 1]) if 1 <= number <= len(question.options) else None
    values = question.values
    return Given(value=number) if values is not None and number in values else None


def _typed(question: Question, text: str) -> tuple[Given | None, str | None]:
    """A typed answer: (answer, None) or (None, what to say)."""
    said = " ".join(text.split())
    if said.casefold().rstrip(".") == SKIP:
        if question.required:
            return None, "This question needs an answer; it is the only one I can't skip."
        return Given(), None
    if question.kind == QuestionKind.TEXT:
        error = check_text("answer", said, minimum=1, maximum=ANSWER_LIMIT)
        return (None, error) if error else (Given(text=text.strip()), None)
    if question.kind == QuestionKind.CHOICE:
        options = tuple(Option(str(n), label) for n, label in enumerate(question.options, 1))
        chosen = pick(said, options)
        if chosen is None:
            return None, not_an_option(said, options)
        return Given(choice=chosen.label), None
    values = question.values
    assert values is not None
    number = said.rstrip(".")
    if number.lstrip("-").isdigit() and int(number) in values:
        return Given(value=int(number)), None
    return None, f"Type a number from {values[0]} to {values[-1]}, or press a button."


def _hint(question: Question) -> str:
    match question.kind:
        case QuestionKind.RATING:
            hint = "1 = very dissatisfied, 5 = very satisfied"
        case QuestionKind.NPS:
            hint = "0 = not at all likely, 10 = extremely likely"
        case QuestionKind.CHOICE:
            hint = "Press one, or type its number or name"
        case _:
            hint = "Type your answer"
    return hint + (", or *skip*." if not question.required else ".")


def question_reply(run_id: int, definition: SurveyDefinition, question: Question, *intro: Text) -> Reply:
    """One question of a run: buttons for ratings, NPS and choices; a free one is typed."""
    number = definition.questions.index(question) + 1
    prompt = f"*{number}/{len(definition.questions)}* {question.text}"
    blocks: list[Text | Choices] = list(intro)
    if question.kind == QuestionKind.TEXT:
        blocks += [Text(prompt), Text(_hint(question), TextStyle.MUTED)]
        return Reply(blocks=tuple(blocks))
    base = f"{run_id}{SEP}{question.id}{SEP}"
    if question.kind == QuestionKind.CHOICE:
        options = [Option(base + str(n), label) for n, label in enumerate(question.options, 1)]
    else:
        assert question.values is not None
        options = [Option(base + str(v), str(v)) for v in question.values]
    if not question.required:
        options.append(Option(base + SKIP, "Skip"))
    blocks += [Choices(id=ANSWER, prompt=prompt, options=tuple(options)), Text(_hint(question), TextStyle.MUTED)]
    return Reply(blocks=tuple(blocks))


def _anonymity(definition: SurveyDefinition) -> str:
    if definition.anonymous:
        return (f"Anonymous: your answers are stored without your name, and results show only for groups of "
                f"{definition.min_group} or more.")
    return "Not anonymous: your answers are stored with your name."


def invitation(run: SurveyRun, tz: ZoneInfo, *, reminder: bool = False) -> Reply:
    """The message that invites a person to a run (or reminds them), with question 1 to tap."""
    assert run.id is not None
    definition = SurveyDefinition.from_json(run.definition)
    closes = run.closes_at.astimezone(tz).strftime("%a %d %b %H:%M %Z")
    count = len(definition.questions)
    lead = (f"A reminder: *{definition.title}* is open until {closes}. It takes a minute."
            if reminder else f"*{definition.title}*: {count} quick question{'s' if count != 1 else ''}, "
            f"open until {closes}.")
    intro = (Text(lead), Text(_anonymity(definition), TextStyle.MUTED))
    return question_reply(run.id, definition, definition.questions[0], *intro)


def _closed(run: SurveyRun, now: datetime) -> bool:
    return run.closed_at is not None or now >= run.closes_at


class SurveyFlow(FlowBase):
    """``survey``: go on with an open survey; its buttons answer, beside whatever else goes on."""

    name: ClassVar[str] = FLOW
    title: ClassVar[str] = "survey"
    keeps_draft: ClassVar[bool] = False  # every answer is saved as it is given
    commands: ClassVar[tuple[Command, ...]] = (
        Command(
            words=("survey", "my survey", "answer survey"),
            help="*survey* to answer (or go on with) a survey you were invited to",
            example="survey",
        ),
    )

    def __init__(self) -> None:
        self.steps: Mapping[str, StepHandler] = {"answer": self._answer, "replace": self._replace_typed}
        self.actions: Mapping[str, ActionHandler] = {ANSWER: self._pressed, REPLACE: self._replace_pressed}

    # --- starting and going on ----------------------------------------------------------------

    async def start(self, turn: Turn, argument: str) -> Step:
        assert turn.person.id is not None
        runs = await turn.store.surveys.open_runs_of(person_id=turn.person.id, now=turn.now)
        if not runs:
            return Step.end(Reply.text("You have no open survey right now. Thank you for asking!"))
        for run in runs:
            definition = SurveyDefinition.from_json(run.definition)
            answered = await self._answered(turn, run)
            pending = [q for q in definition.questions if q.id not in answered]
            if pending:
                assert run.id is not None
                intro = Text(f"Going on with *{definition.title}*." if answered else f"*{definition.title}*.")
                return self._ask(run.id, definition, pending[0], intro)
        titles = ", ".join(SurveyDefinition.from_json(r.definition).title for r in runs)
        return Step.end(Reply.text(f"You have answered everything in {titles}. Thank you! To change an answer, "
                                   "press another option on that question's message."))

    async def reprompt(self, turn: Turn, state: FlowState) -> tuple[Reply, ...]:
        run = await turn.store.surveys.run(int(state.data["run"]))
        if run is None or run.id is None:
            return ()
        definition = SurveyDefinition.from_json(run.definition)
        question = definition.question(str(state.data["question"]))
        return (question_reply(run.id, definition, question),) if question is not None else ()

    def _ask(self, run_id: int, definition: SurveyDefinition, question: Question, *intro: Text) -> Step:
        return Step((question_reply(run_id, definition, question, *intro),), "answer",
                    {"run": run_id, "question": question.id}, flow=FLOW)

    async def _answered(self, turn: Turn, run: SurveyRun) -> dict[str, SurveyAnswer]:
        assert run.id is not None and turn.person.id is not None
        respondent = await turn.store.surveys.respondent(run_id=run.id, person_id=turn.person.id)
        if respondent is None:
            return {}
        return {a.question_id: a for a in await turn.store.surveys.answers(run_id=run.id,
                                                                          response_id=respondent.response_id)}

    # --- one answer ---------------------------------------------------------------------------

    async def _subject(self, turn: Turn, raw_run: object, question_id: str) -> tuple[SurveyRun, Question] | Step:
        """The run and question an answer is for, checked against the database and the person."""
        assert turn.person.id is not None
        run_id = int(str(raw_run)) if str(raw_run).isdigit() else None
        run = await turn.store.surveys.run(run_id) if run_id is not None else None
        if run is None or run.id is None or await turn.store.surveys.invitation(
            run_id=run.id, person_id=turn.person.id
        ) is None:
            return Step.end(warn("That survey is not one you were invited to."))
        definition = SurveyDefinition.from_json(run.definition)
        if _closed(run, turn.now):
            closed = run.closed_at or run.closes_at
            return Step.end(Reply.text(f"Thank you, but *{definition.title}* closed on "
                                       f"{turn.local(closed)}, so I can't record answers any more. "
                                       "Watch for the next one!"))
        question = definition.question(question_id)
        if question is None:
            return Step.end(warn("That question is not in this survey."))
        return run, question

    async def _record(self, turn: Turn, run: SurveyRun, question: Question, given: Given, *, replace: bool,
                      beside: bool) -> Step:
        """Store an answer (or ask before replacing one), then ask the next question."""
        assert run.id is not None and turn.person.id is not None
        definition = SurveyDefinition.from_json(run.definition)
        answered = await self._answered(turn, run)
        first = answered.get(question.id)
        surveys = turn.store.surveys
        if first is not None and _stored(first) != given and not given.skipped:
            if not replace:
                ask = Reply.of(
                    Choices(
                        id=REPLACE,
                        prompt=f"You already answered “{question.text}” with {_stored(first).shown()}. "
                               f"Replace it with {given.shown()}?",
                        options=(
                            Option(SEP.join(("yes", str(run.id), question.id, given.token(question))), "Replace",
                                   primary=True),
                            Option(SEP.join(("no", str(run.id), question.id)), "Keep the first"),
                        ),
                    )
                )
                if beside:
                    return Step.end(ask)
                data = {"run": run.id, "question": question.id, "pending": given.token(question)}
                return Step((ask,), "replace", data, flow=FLOW)
            await surveys.replace(run_id=run.id, response_id=first.response_id, question_id=question.id,
                                  value=given.value, choice=given.choice, text=given.text)
            ack = f"Changed: {given.shown()}."
        elif first is not None:
            ack = "Already noted." if not given.skipped or _stored(first).skipped else "Kept your answer."
        else:
            response_id = await surveys.respond(run_id=run.id, person_id=turn.person.id, now=turn.now)
            invited = await surveys.invitation(run_id=run.id, person_id=turn.person.id)
            await surveys.answer(
                run_id=run.id, response_id=response_id, question_id=question.id, kind=question.kind.value,
                partner_id=invited.partner_id if invited is not None else turn.person.partner_id,
                person_id=None if definition.anonymous else turn.person.id,
                value=given.value, choice=given.choice, text=given.text,
            )
            ack = "Skipped." if given.skipped else f"Noted: {given.shown()}."
        return self._next(turn, run.id, definition, set(answered) | {question.id}, ack, beside=beside)

    def _next(self, turn: Turn, run_id: int, definition: SurveyDefinition, answered: set[str], ack: str, *,
              beside: bool) -> Step:
        pending = [q for q in definition.questions if q.id not in answered]
        if not pending:
            return Step.end(Reply.text(f"{ack} That was the last question of *{definition.title}*. Thank you!",
                                       TextStyle.SUCCESS))
        question = pending[0]
        if beside and turn.active_flow not in (None, FLOW, MENU):
            # Something else is going on: answer here, and leave the conversation where it was.
            later = "" if question.kind != QuestionKind.TEXT else \
                " When you have finished what you were doing, type *survey* to answer it."
            return Step.end(question_reply(run_id, definition, question, Text(ack + later)))
        return self._ask(run_id, definition, question, Text(ack))

    # --- buttons ------------------------------------------------------------------------------

    async def _pressed(self, turn: Turn, inbound: Inbound) -> Step:
        assert inbound.action is not None
        raw_run, _, rest = inbound.action.value.partition(SEP)
        question_id, _, token = rest.partition(SEP)
        found = await self._subject(turn, raw_run, question_id)
        if isinstance(found, Step):
            return found
        run, question = found
        given = _from_token(question, token)
        if given is None:
            return Step.end(warn("That button is not one I know."))
        return await self._record(turn, run, question, given, replace=False, beside=True)

    async def _replace_pressed(self, turn: Turn, inbound: Inbound) -> Step:
        assert inbound.action is not None
        verb, raw_run, question_id, *rest = [*inbound.action.value.split(SEP, 3), ""][:4]
        found = await self._subject(turn, raw_run, question_id)
        if isinstance(found, Step):
            return found
        run, question = found
        return await self._settle(turn, run, question, SEP.join(rest) if verb == "yes" else None, beside=True)

    async def _settle(self, turn: Turn, run: SurveyRun, question: Question, token: str | None, *,
                      beside: bool) -> Step:
        """Replace (``token``) or keep the first answer; then the next question."""
        if token is None:
            assert run.id is not None
            answered = set(await self._answered(turn, run)) | {question.id}
            return self._next(turn, run.id, SurveyDefinition.from_json(run.definition), answered,
                              "Kept your first answer.", beside=beside)
        given = _from_token(question, token)
        if given is None:
            return Step.end(warn("That button is not one I know."))
        return await self._record(turn, run, question, given, replace=True, beside=beside)

    # --- typed --------------------------------------------------------------------------------

    async def _answer(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        found = await self._subject(turn, state.data.get("run"), str(state.data.get("question")))
        if isinstance(found, Step):
            return found
        run, question = found
        given, error = _typed(question, inbound.text)
        said = inbound.text.casefold()
        command = turn.catalog.trigger_of(said) if turn.catalog is not None else None
        if command is not None and command[0] == FLOW and said == command[1]:
            return await self.start(turn, "")
        if command is not None and (given is None or (question.kind == QuestionKind.TEXT and said == command[1])):
            note = Reply.text("I kept your survey answers; type *survey* to go on later.", TextStyle.MUTED)
            return Step.hand_to("", "", note)
        if given is None:
            return Step((warn(error or "I couldn't read that answer."),), "answer", state.data)
        return await self._record(turn, run, question, given, replace=False, beside=False)

    async def _replace_typed(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        found = await self._subject(turn, state.data.get("run"), str(state.data.get("question")))
        if isinstance(found, Step):
            return found
        run, question = found
        said = inbound.text.casefold().strip(" .!")
        if said in ("yes", "y", "replace", "replace it"):
            return await self._settle(turn, run, question, str(state.data.get("pending", "")), beside=False)
        if said in ("no", "n", "keep", "keep the first", "keep it"):
            return await self._settle(turn, run, question, None, beside=False)
        return Step((warn("Replace your first answer? Type *yes* or *no*, or press a button."),), "replace",
                    state.data)
