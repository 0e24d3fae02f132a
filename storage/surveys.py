"""Pulse surveys: definitions, runs, invitations, who has answered, and the answers.

Anonymity lives in the shape of the writes: an anonymous run's answers carry no person id,
only the run, the partner and a ``response_id`` (random, one per person and run). The link
from a person to their ``response_id`` sits in ``survey_respondent`` only while the run is
open (to stop reminders and let a person continue or change an answer), and
:meth:`Surveys.close_due` deletes it when the run closes.

Example::

    async with db.transaction() as store:
        run = await store.surveys.start_run(survey_id=1, period="2026-12-07", definition=d,
                                            opens_at=now, closes_at=now + timedelta(days=5))
        await store.surveys.invite(run_id=run.id, person_id=4, partner_id=1, now=now)
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, cast

import sqlalchemy as sa
from sqlmodel import SQLModel

from storage.models import (
    BusinessPartner,
    Person,
    Survey,
    SurveyAnswer,
    SurveyInvitation,
    SurveyRespondent,
    SurveyRun,
)
from storage.tx import Statement, Tx, as_model, insert_ignoring


def _table(model: type[SQLModel]) -> sa.Table:
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]


SURVEY = _table(Survey)
RUN = _table(SurveyRun)
INVITATION = _table(SurveyInvitation)
RESPONDENT = _table(SurveyRespondent)
ANSWER = _table(SurveyAnswer)
PERSON = _table(Person)
PARTNER = _table(BusinessPartner)
P = sa.bindparam

Applied = Literal["created", "changed", "unchanged"]

_SURVEY_BY_NAME = Statement(sa.select(SURVEY).where(SURVEY.c.name == P("name")))
_SURVEYS = Statement(sa.select(SURVEY).order_by(SURVEY.c.name))
_ACTIVE_SURVEYS = Statement(sa.select(SURVEY).where(SURVEY.c.active).order_by(SURVEY.c.id))
_ADD_SURVEY = Statement(
    sa.insert(SURVEY).returning(SURVEY.c.id),
    keys=("name", "title", "definition", "fingerprint", "active", "created_at", "updated_at"),
)
_CHANGE_SURVEY = Statement(
    sa.update(SURVEY)
    .where(SURVEY.c.id == P("sid"))
    .values(
        title=P("new_title", type_=SURVEY.c.title.type),
        definition=P("new_definition", type_=SURVEY.c.definition.type),
        fingerprint=P("new_fingerprint", type_=SURVEY.c.fingerprint.type),
        active=True,
        updated_at=P("now", type_=SURVEY.c.updated_at.type),
    )
)
_ADD_RUN = Statement(
    insert_ignoring(RUN), keys=("survey_id", "period", "definition", "opens_at", "closes_at", "closed_at")
)
_RUN_OF_PERIOD = Statement(sa.select(RUN).where(RUN.c.survey_id == P("sid"), RUN.c.period == P("period")))
_RUN = Statement(sa.select(RUN).where(RUN.c.id == P("rid")))
_INVITE = Statement(insert_ignoring(INVITATION), keys=("run_id", "person_id", "partner_id", "invited_at"))
_INVITED_IDS = Statement(sa.select(INVITATION.c.person_id).where(INVITATION.c.run_id == P("rid")))
_INVITATION = Statement(
    sa.select(INVITATION).where(INVITATION.c.run_id == P("rid"), INVITATION.c.person_id == P("pid"))
)
_ANSWERED = sa.exists().where(
    RESPONDENT.c.run_id == INVITATION.c.run_id, RESPONDENT.c.person_id == INVITATION.c.person_id
)
_OPEN = sa.and_(RUN.c.closed_at.is_(None), RUN.c.closes_at > P("now", type_=RUN.c.closes_at.type))
_UNANSWERED = Statement(
    sa.select(INVITATION, RUN.c.definition)
    .join(RUN, RUN.c.id == INVITATION.c.run_id)
    .where(INVITATION.c.person_id == P("pid"), INVITATION.c.reminded_at.is_(None), _OPEN, ~_ANSWERED)
    .order_by(INVITATION.c.id)
)
_TO_REMIND = Statement(
    sa.select(PERSON)
    .where(
        PERSON.c.id.in_(
            sa.select(INVITATION.c.person_id).where(
                INVITATION.c.run_id == P("rid"),
                INVITATION.c.invited_at <= P("before", type_=INVITATION.c.invited_at.type),
                INVITATION.c.reminded_at.is_(None),
                ~_ANSWERED,
            )
        )
    )
    .order_by(PERSON.c.id)
)
_REMINDED = Statement(
    sa.update(INVITATION)
    .where(INVITATION.c.run_id == P("rid"), INVITATION.c.person_id == P("pid"), INVITATION.c.reminded_at.is_(None))
    .values(reminded_at=P("now", type_=INVITATION.c.reminded_at.type))
)
_OPEN_RUNS_OF = Statement(
    sa.select(RUN)
    .join(INVITATION, INVITATION.c.run_id == RUN.c.id)
    .where(INVITATION.c.person_id == P("pid"), _OPEN)
    .order_by(RUN.c.opens_at, RUN.c.id)
)
_RESPONDENT = Statement(
    sa.select(RESPONDENT).where(RESPONDENT.c.run_id == P("rid"), RESPONDENT.c.person_id == P("pid"))
)
_ADD_RESPONDENT = Statement(insert_ignoring(RESPONDENT), keys=("run_id", "person_id", "response_id", "answered_at"))
_ANSWERS = Statement(
    sa.select(ANSWER).where(ANSWER.c.run_id == P("rid"), ANSWER.c.response_id == P("resp")).order_by(ANSWER.c.id)
)
_ADD_ANSWER = Statement(
    insert_ignoring(ANSWER),
    keys=("run_id", "partner_id", "question_id", "kind", "response_id", "person_id", "value", "choice", "text"),
)
_REPLACE_ANSWER = Statement(
    sa.update(ANSWER)
    .where(ANSWER.c.run_id == P("rid"), ANSWER.c.response_id == P("resp"), ANSWER.c.question_id == P("qid"))
    .values(
        value=P("new_value", type_=ANSWER.c.value.type),
        choice=P("new_choice", type_=ANSWER.c.choice.type),
        text=P("new_text", type_=ANSWER.c.text.type),
    )
)
_DUE_TO_CLOSE = Statement(
    sa.select(RUN.c.id)
    .where(RUN.c.closed_at.is_(None), RUN.c.closes_at <= P("now", type_=RUN.c.closes_at.type))
    .order_by(RUN.c.id)
)
_CLOSE_RUN = Statement(
    sa.update(RUN)
    .where(RUN.c.id == P("rid"), RUN.c.closed_at.is_(None))
    .values(closed_at=P("now", type_=RUN.c.closed_at.type))
)
_FORGET_RESPONDENTS = Statement(sa.delete(RESPONDENT).where(RESPONDENT.c.run_id == P("rid")))
_EXECUTIVE_OF = Statement(
    sa.select(PARTNER.c.id).where(PARTNER.c.executive_id == P("pid")).order_by(PARTNER.c.id)
)
_EXECUTIVES = Statement(
    sa.select(PERSON).where(PERSON.c.id.in_(sa.select(PARTNER.c.executive_id))).order_by(PERSON.c.id)
)
_CONTACTS = Statement(
    sa.select(PERSON).where(PERSON.c.partner_id.is_not(None), PERSON.c.role == "requester").order_by(PERSON.c.id)
)
_RUN_COUNTS = Statement(
    sa.select(RUN.c.survey_id, sa.func.count(RUN.c.id)).group_by(RUN.c.survey_id)
)
_OPEN_RUNS = Statement(sa.select(RUN).where(_OPEN).order_by(RUN.c.survey_id, RUN.c.opens_at))
_RESPONSES = Statement(
    sa.select(sa.func.count(sa.distinct(ANSWER.c.response_id))).where(ANSWER.c.run_id == P("rid"))
)
_INVITED = Statement(sa.select(sa.func.count()).select_from(INVITATION).where(INVITATION.c.run_id == P("rid")))
_INVITATION_NAMES = [c.name for c in INVITATION.c]


@dataclass(frozen=True, slots=True)
class Reminder:
    """An invitation still unanswered, with the definition of its run."""

    invitation: SurveyInvitation
    definition: dict[str, Any]


@dataclass(frozen=True, slots=True)
class OpenRun:
    """A run open now, for ``surveys list``: how many were invited and how many answered."""

    run: SurveyRun
    invited: int
    responses: int


class Surveys:
    """Survey definitions, runs and answers on one transaction."""

    __slots__ = ("tx",)

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    # --- definitions ------------------------------------------------------------------------

    async def by_name(self, name: str) -> Survey | None:
        return await self.tx.model(Survey, _SURVEY_BY_NAME, name=name)

    async def all(self) -> list[Survey]:
        return await self.tx.models(Survey, _SURVEYS)

    async def active(self) -> list[Survey]:
        return await self.tx.models(Survey, _ACTIVE_SURVEYS)

    async def apply(
        self, *, name: str, title: str, definition: dict[str, Any], fingerprint: str, now: datetime
    ) -> Applied:
        """Store a definition: new, changed (future runs use it; runs so far keep theirs) or unchanged."""
        known = await self.by_name(name)
        if known is None:
            await self.tx.scalar(_ADD_SURVEY, name=name, title=title, definition=definition, fingerprint=fingerprint,
                                 active=True, created_at=now, updated_at=now)
            return "created"
        if known.fingerprint == fingerprint and known.active:
            return "unchanged"
        await self.tx.count(_CHANGE_SURVEY, sid=known.id, new_title=title, new_definition=definition,
                            new_fingerprint=fingerprint, now=now)
        return "changed"

    # --- runs ---------------------------------------------------------------------------------

    async def start_run(
        self, *, survey_id: int, period: str, definition: dict[str, Any], opens_at: datetime, closes_at: datetime
    ) -> SurveyRun:
        """The run of ``period``, started now with this definition unless another process started it."""
        await self.tx.count(_ADD_RUN, survey_id=survey_id, period=period, definition=definition, opens_at=opens_at,
                            closes_at=closes_at, closed_at=None)
        run = await self.tx.model(SurveyRun, _RUN_OF_PERIOD, sid=survey_id, period=period)
        assert run is not None
        return run

    async def run_of(self, *, survey_id: int, period: str) -> SurveyRun | None:
        return await self.tx.model(SurveyRun, _RUN_OF_PERIOD, sid=survey_id, period=period)

    async def run(self, run_id: int) -> SurveyRun | None:
        return await self.tx.model(SurveyRun, _RUN, rid=run_id)

    async def run_counts(self) -> dict[int, int]:
        """Per survey id: how many runs it has had."""
        return {int(sid): int(n) for sid, n in await self.tx.rows(_RUN_COUNTS)}

    async def runs_open(self, *, now: datetime) -> list[SurveyRun]:
        """Every run open at ``now``."""
        return await self.tx.models(SurveyRun, _OPEN_RUNS, now=now)

    async def open_runs(self, *, now: datetime) -> list[OpenRun]:
        """Every run open at ``now``, with its invited and response counts (counted in SQL)."""
        out = []
        for run in await self.tx.models(SurveyRun, _OPEN_RUNS, now=now):
            invited = int(await self.tx.scalar(_INVITED, rid=run.id))
            responses = int(await self.tx.scalar(_RESPONSES, rid=run.id))
            out.append(OpenRun(run, invited, responses))
        return out

    async def open_runs_of(self, *, person_id: int, now: datetime) -> list[SurveyRun]:
        """The runs this person was invited to that are open at ``now``, oldest first."""
        return await self.tx.models(SurveyRun, _OPEN_RUNS_OF, pid=person_id, now=now)

    async def close_due(self, *, now: datetime) -> int:
        """Close the runs whose window has ended; who answered them is forgotten. How many closed."""
        closed = 0
        for run_id in await self.tx.scalars(_DUE_TO_CLOSE, now=now):
            if await self.tx.count(_CLOSE_RUN, rid=run_id, now=now):
                await self.tx.count(_FORGET_RESPONDENTS, rid=run_id)
                closed += 1
        return closed

    # --- invitations and reminders ------------------------------------------------------------

    async def invite(self, *, run_id: int, person_id: int, partner_id: int | None, now: datetime) -> bool:
        """Record the invitation; False when this person was invited to the run already."""
        return bool(await self.tx.count(_INVITE, run_id=run_id, person_id=person_id, partner_id=partner_id,
                                        invited_at=now))

    async def invited(self, run_id: int) -> set[int]:
        """The ids of everyone invited to a run."""
        return {int(i) for i in await self.tx.scalars(_INVITED_IDS, rid=run_id)}

    async def invitation(self, *, run_id: int, person_id: int) -> SurveyInvitation | None:
        return await self.tx.model(SurveyInvitation, _INVITATION, rid=run_id, pid=person_id)

    async def unanswered(self, *, person_id: int, now: datetime) -> list[Reminder]:
        """This person's invitations to open runs, not reminded yet, with nothing answered."""
        rows = await self.tx.rows(_UNANSWERED, pid=person_id, now=now)
        n = len(_INVITATION_NAMES)
        return [Reminder(as_model(SurveyInvitation, _INVITATION_NAMES, row[:n]), row[n]) for row in rows]

    async def to_remind(self, *, run_id: int, invited_before: datetime) -> list[Person]:
        """Everyone invited to the run before ``invited_before`` who has answered nothing and was
        not reminded yet."""
        return await self.tx.models(Person, _TO_REMIND, rid=run_id, before=invited_before)

    async def reminded(self, *, run_id: int, person_id: int, now: datetime) -> bool:
        return bool(await self.tx.count(_REMINDED, rid=run_id, pid=person_id, now=now))

    # --- audiences ----------------------------------------------------------------------------

    async def executive_of(self, person_id: int) -> list[int]:
        """The partners this person is the executive of."""
        return [int(i) for i in await self.tx.scalars(_EXECUTIVE_OF, pid=person_id)]

    async def executives(self) -> list[Person]:
        return await self.tx.models(Person, _EXECUTIVES)

    async def contacts(self) -> list[Person]:
        return await self.tx.models(Person, _CONTACTS)

    # --- answers ------------------------------------------------------------------------------

    async def respondent(self, *, run_id: int, person_id: int) -> SurveyRespondent | None:
        return await self.tx.model(SurveyRespondent, _RESPONDENT, rid=run_id, pid=person_id)

    async def respond(self, *, run_id: int, person_id: int, now: datetime) -> str:
        """This person's response id for the run: a random one made at their first answer."""
        await self.tx.count(_ADD_RESPONDENT, run_id=run_id, person_id=person_id, response_id=uuid.uuid4().hex,
                            answered_at=now)
        found = await self.respondent(run_id=run_id, person_id=person_id)
        assert found is not None
        return found.response_id

    async def answers(self, *, run_id: int, response_id: str) -> list[SurveyAnswer]:
        return await self.tx.models(SurveyAnswer, _ANSWERS, rid=run_id, resp=response_id)

    async def answer(
        self,
        *,
        run_id: int,
        response_id: str,
        question_id: str,
        kind: str,
        partner_id: int | None,
        person_id: int | None,
        value: int | None = None,
        choice: str | None = None,
        text: str | None = None,
    ) -> bool:
        """Record an answer; False (nothing written) when this question was answered already.

        ``person_id`` is None for an anonymous run: the caller decides, the row keeps no one.
        """
        return bool(await self.tx.count(
            _ADD_ANSWER, run_id=run_id, partner_id=partner_id, question_id=question_id, kind=kind,
            response_id=response_id, person_id=person_id, value=value, choice=choice, text=text,
        ))

    async def replace(
        self,
        *,
        run_id: int,
        response_id: str,
        question_id: str,
        value: int | None = None,
        choice: str | None = None,
        text: str | None = None,
    ) -> bool:
        """Put a new answer in place of the first one to the same question."""
        return bool(await self.tx.count(_REPLACE_ANSWER, rid=run_id, resp=response_id, qid=question_id,
                                        new_value=value, new_choice=choice, new_text=text))
