"""Pulse survey results, computed in the database, every figure under the ``min_group`` rule.

The database does the counting: a handful of ``GROUP BY`` statements give, per run and per
business partner, how many were invited, how many answered (distinct responses), the count,
sum, promoters and detractors of each question, and the count of each choice. Python only
adds up those grouped rows (a few per partner) into the overall group and applies the rule.

The rule: a group (a partner, a question of a partner, the whole run) with fewer answers than
the run's ``min_group`` (never below 3) shows no figures. A group is also kept hidden when the
groups hidden beside it hold between 1 and ``min_group - 1`` answers together: otherwise the
overall figure minus the shown ones would give the small group away (secondary suppression,
smallest shown groups first). Hidden figures are never returned: callers (chat, the CLI,
exports) cannot show what they do not have. Free answers come only from shown groups, at most
``texts`` per group, without names when the survey is anonymous.

Example::

    survey = await store.survey_results.survey("partner-pulse")
    run = (await store.survey_results.runs(survey.id))[-1]
    results = await store.survey_results.results(survey, run)
    results.overall.answered, results.partner(3).figure("satisfaction").average
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar, cast

import sqlalchemy as sa
from sqlmodel import SQLModel

from storage.models import (
    BusinessPartner,
    Person,
    QuestionKind,
    Survey,
    SurveyAnswer,
    SurveyFollowUp,
    SurveyInvitation,
    SurveyRun,
)
from storage.tx import Statement, Tx, insert_ignoring

MIN_GROUP_FLOOR = 3
TREND_RUNS = 6
SATISFACTION = "satisfaction"

def table(model: type[SQLModel]) -> sa.Table:
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]


SURVEY = table(Survey)
RUN = table(SurveyRun)
INVITATION = table(SurveyInvitation)
ANSWER = table(SurveyAnswer)
FOLLOW_UP = table(SurveyFollowUp)
PARTNER = table(BusinessPartner)
PERSON = table(Person)

P = sa.bindparam
K = TypeVar("K", bound=Hashable)


def min_group_of(definition: Mapping[str, Any]) -> int:
    """The run's threshold: its ``min_group``, never below 3 (a bad value counts as 3)."""
    raw = definition.get("min_group", MIN_GROUP_FLOOR)
    try:
        return max(MIN_GROUP_FLOOR, int(raw))
    except (TypeError, ValueError):
        return MIN_GROUP_FLOOR


def disclosed(counts: Mapping[K, int], *, min_group: int) -> frozenset[K]:
    """The groups whose figures may show.

    Each shown group has at least ``min_group`` answers, and the groups hidden together hold
    none or at least ``min_group`` answers, so the overall figure minus the shown groups never
    gives away a small group: when they hold fewer, the smallest shown groups are hidden too.
    """
    shown = {key for key, n in counts.items() if n >= min_group}
    hidden = sum(n for key, n in counts.items() if key not in shown)
    queue = sorted(shown, key=lambda key: (counts[key], str(key)))
    while 0 < hidden < min_group and queue:
        smallest = queue.pop(0)
        shown.discard(smallest)
        hidden += counts[smallest]
    return frozenset(shown)


# --- what callers get ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Question:
    """A question as the run's definition has it."""

    id: str
    kind: str
    text: str
    options: tuple[str, ...] = ()

    @property
    def measured(self) -> bool:
        """Whether it has one number (an average or an NPS) that can change from run to run."""
        return self.kind in (QuestionKind.RATING, QuestionKind.NPS)


@dataclass(frozen=True, slots=True)
class Figure:
    """One question's figures for one group. ``answers`` None: fewer than the threshold, nothing shows."""

    question: Question
    answers: int | None
    average: float | None = None  # rating: 1-5
    nps: int | None = None  # % promoters (9-10) minus % detractors (0-6)
    distribution: tuple[tuple[str, int], ...] = ()  # choice: each option and its count
    previous: float | None = None  # the same measure in the previous run, when it showed there
    trend: tuple[float | None, ...] = ()  # the measure over the last runs, oldest first, this run last
    texts: tuple[str, ...] = ()  # free answers (anonymous: without names)

    @property
    def hidden(self) -> bool:
        return self.answers is None

    @property
    def value(self) -> float | None:
        """The question's one number: the average of a rating, the NPS."""
        if self.question.kind == QuestionKind.RATING:
            return self.average
        if self.question.kind == QuestionKind.NPS:
            return None if self.nps is None else float(self.nps)
        return None

    @property
    def change(self) -> float | None:
        if self.value is None or self.previous is None:
            return None
        return round(self.value - self.previous, 1)


@dataclass(frozen=True, slots=True)
class Group:
    """A partner's results (``partner_id`` None with ``overall``: the whole run)."""

    partner_id: int | None
    name: str
    invited: int
    answered: int | None  # None: fewer answers than the threshold
    figures: tuple[Figure, ...] = ()
    previous_rate: float | None = None
    overall: bool = False
    followed_up_at: datetime | None = None

    @property
    def hidden(self) -> bool:
        return self.answered is None

    @property
    def rate(self) -> float | None:
        """Answered / invited, 0-1; None when hidden or nobody was invited."""
        if self.answered is None or not self.invited:
            return None
        return self.answered / self.invited

    def figure(self, question_id: str) -> Figure | None:
        return next((f for f in self.figures if f.question.id == question_id), None)


@dataclass(frozen=True, slots=True)
class RunResults:
    """One run's results: the whole run and each partner, under the run's threshold."""

    survey_name: str
    title: str
    period: str
    opens_at: datetime
    closes_at: datetime
    closed: bool
    anonymous: bool
    min_group: int
    questions: tuple[Question, ...]
    overall: Group
    partners: tuple[Group, ...]
    previous_period: str | None = None
    trend_periods: tuple[str, ...] = ()

    @property
    def hidden_note(self) -> str:
        return f"fewer than {self.min_group} answers"

    def partner(self, partner_id: int | None) -> Group | None:
        return next((g for g in self.partners if g.partner_id == partner_id), None)

    @property
    def satisfaction_question(self) -> Question | None:
        return satisfaction_question(self.questions)


@dataclass(frozen=True, slots=True)
class Satisfaction:
    """A partner's average satisfaction in the latest closed run and the run before (None: not shown)."""

    current: float | None
    previous: float | None
    title: str = ""
    period: str = ""


def questions_of(definition: Mapping[str, Any]) -> tuple[Question, ...]:
    out: list[Question] = []
    for raw in definition.get("questions") or ():
        if not isinstance(raw, Mapping) or "id" not in raw:
            continue
        options = tuple(str(o) for o in raw.get("options") or ())
        out.append(Question(str(raw["id"]), str(raw.get("type", "")), str(raw.get("text", "")), options))
    return tuple(out)


def satisfaction_question(questions: Sequence[Question]) -> Question | None:
    """The question health watches: the rating with id ``satisfaction``, else the first rating."""
    ratings = [q for q in questions if q.kind == QuestionKind.RATING]
    return next((q for q in ratings if q.id == SATISFACTION), ratings[0] if ratings else None)


# --- statements --------------------------------------------------------------------------------------

_SURVEY_BY_NAME = Statement(sa.select(SURVEY).where(SURVEY.c.name == P("name")))
_SURVEY = Statement(sa.select(SURVEY).where(SURVEY.c.id == P("sid")))
_SURVEYS = Statement(sa.select(SURVEY).order_by(SURVEY.c.name))
_RUNS_OF = Statement(sa.select(RUN).where(RUN.c.survey_id == P("sid")).order_by(RUN.c.opens_at, RUN.c.id))
_NOW = P("now", type_=RUN.c.opens_at.type)
_LATEST_OPENED = Statement(
    sa.select(RUN).where(RUN.c.opens_at <= _NOW).order_by(RUN.c.opens_at.desc(), RUN.c.id.desc()).limit(1)
)
_IS_CLOSED = sa.or_(RUN.c.closed_at.is_not(None), RUN.c.closes_at <= _NOW)
_CLOSED = Statement(sa.select(RUN).where(_IS_CLOSED).order_by(RUN.c.closes_at.desc(), RUN.c.id.desc()))
_LATEST_CLOSED_OF_PARTNER = Statement(
    sa.select(RUN)
    .where(
        _IS_CLOSED,
        RUN.c.id.in_(sa.select(INVITATION.c.run_id).where(INVITATION.c.partner_id == P("partner_id"))),
    )
    .order_by(RUN.c.closes_at.desc(), RUN.c.id.desc())
    .limit(1)
)

# The run and the runs before it (``depth`` in all, TREND_RUNS for a trend): what a trend needs.
_WINDOW = (
    sa.select(RUN.c.id)
    .where(RUN.c.survey_id == P("sid"), RUN.c.opens_at <= P("opens", type_=RUN.c.opens_at.type))
    .order_by(RUN.c.opens_at.desc(), RUN.c.id.desc())
    .limit(P("depth"))
)
_INVITED = Statement(
    sa.select(INVITATION.c.run_id, INVITATION.c.partner_id, sa.func.count())
    .where(INVITATION.c.run_id.in_(_WINDOW))
    .group_by(INVITATION.c.run_id, INVITATION.c.partner_id)
)
# Responses per (run, partner): distinct response ids, grouped twice rather than COUNT(DISTINCT),
# which PostgreSQL computes by sorting every answer (a hash of the responses is several times faster).
_RESPONSES = (
    sa.select(ANSWER.c.run_id, ANSWER.c.partner_id)
    .where(ANSWER.c.run_id.in_(_WINDOW))
    .group_by(ANSWER.c.run_id, ANSWER.c.partner_id, ANSWER.c.response_id)
    .subquery()
)
_ANSWERED = Statement(
    sa.select(_RESPONSES.c.run_id, _RESPONSES.c.partner_id, sa.func.count())
    .group_by(_RESPONSES.c.run_id, _RESPONSES.c.partner_id)
)
_PROMOTER = sa.case((ANSWER.c.value >= 9, 1), else_=0)
_DETRACTOR = sa.case((ANSWER.c.value <= 6, 1), else_=0)
_FIGURES = Statement(
    sa.select(
        ANSWER.c.run_id,
        ANSWER.c.partner_id,
        ANSWER.c.question_id,
        ANSWER.c.kind,
        sa.func.count(),
        sa.func.count(ANSWER.c.value),
        sa.func.coalesce(sa.func.sum(ANSWER.c.value), 0),
        sa.func.coalesce(sa.func.sum(_PROMOTER), 0),
        sa.func.coalesce(sa.func.sum(_DETRACTOR), 0),
    )
    .where(ANSWER.c.run_id.in_(_WINDOW))
    .group_by(ANSWER.c.run_id, ANSWER.c.partner_id, ANSWER.c.question_id, ANSWER.c.kind)
)


def _choices_of(run_id: int, question_ids: Sequence[str]) -> sa.Select[Any]:
    """Each choice's count per partner (built per call: the question ids let the index on
    (run, question, partner) skip the other questions' answers)."""
    return (
        sa.select(ANSWER.c.partner_id, ANSWER.c.question_id, ANSWER.c.choice, sa.func.count())
        .where(ANSWER.c.run_id == run_id, ANSWER.c.question_id.in_(question_ids),
               ANSWER.c.kind == QuestionKind.CHOICE.value, ANSWER.c.choice.is_not(None))
        .group_by(ANSWER.c.partner_id, ANSWER.c.question_id, ANSWER.c.choice)
    )


def _texts_of(run_id: int, question_ids: Sequence[str], limit: int) -> sa.Select[Any]:
    """At most ``limit`` free answers per (partner, question): a stable sample, since response
    ids are random; shown sorted by text, so their order says nothing about who answered when."""
    ranked = (
        sa.select(
            ANSWER.c.partner_id,
            ANSWER.c.question_id,
            ANSWER.c.text,
            PERSON.c.name,
            sa.func.row_number()
            .over(partition_by=(ANSWER.c.partner_id, ANSWER.c.question_id), order_by=ANSWER.c.response_id)
            .label("n"),
        )
        .select_from(ANSWER.outerjoin(PERSON, PERSON.c.id == ANSWER.c.person_id))
        .where(ANSWER.c.run_id == run_id, ANSWER.c.question_id.in_(question_ids),
               ANSWER.c.kind == QuestionKind.TEXT.value, ANSWER.c.text.is_not(None))
        .subquery()
    )
    return (
        sa.select(ranked.c.partner_id, ranked.c.question_id, ranked.c.text, ranked.c.name)
        .where(ranked.c.n <= limit)
        .order_by(ranked.c.partner_id, ranked.c.question_id, ranked.c.text)
    )


_PARTNER_NAMES = Statement(sa.select(PARTNER.c.id, PARTNER.c.name))
_FOLLOW_UPS = Statement(sa.select(FOLLOW_UP).where(FOLLOW_UP.c.run_id == P("rid")).order_by(FOLLOW_UP.c.id))
_FOLLOW_UP = Statement(
    sa.select(FOLLOW_UP).where(FOLLOW_UP.c.run_id == P("rid"), FOLLOW_UP.c.partner_id == P("pid"))
)
_ADD_FOLLOW_UP = Statement(
    insert_ignoring(FOLLOW_UP), keys=("run_id", "partner_id", "by_person_id", "text", "created_at")
)
_INVITED_PEOPLE = Statement(
    sa.select(INVITATION.c.person_id)
    .where(INVITATION.c.run_id == P("rid"), INVITATION.c.partner_id == P("pid"))
    .order_by(INVITATION.c.person_id)
)

NO_PARTNER = "No business partner"


@dataclass
class _Cells:
    """Grouped counts of one run, keyed by partner (None: people with no partner)."""

    invited: dict[int | None, int] = field(default_factory=dict)
    answered: dict[int | None, int] = field(default_factory=dict)
    # (partner, question) -> [answers, values, sum, promoters, detractors], for the question's kind only
    figures: dict[tuple[int | None, str], list[int]] = field(default_factory=dict)


def _measure(kind: str, sums: Sequence[int]) -> tuple[float | None, int | None]:
    """(average, NPS) of one cell's sums."""
    _, values, total, promoters, detractors = sums
    if not values:
        return None, None
    if kind == QuestionKind.RATING:
        return round(total / values, 1), None
    if kind == QuestionKind.NPS:
        return None, round(100 * (promoters - detractors) / values)
    return None, None


def _measured_value(kind: str, sums: Sequence[int]) -> float | None:
    average, nps = _measure(kind, sums)
    return average if kind == QuestionKind.RATING else (None if nps is None else float(nps))


class _Visible:
    """Which groups of one run show: partner groups, and (partner, question) cells per question."""

    def __init__(self, cells: _Cells, questions: Sequence[Question], min_group: int) -> None:
        self.min_group = min_group
        total = sum(cells.answered.values())
        self.overall = total >= min_group
        self.partners = disclosed(cells.answered, min_group=min_group) if self.overall else frozenset()
        self.cells: dict[str, frozenset[int | None]] = {}
        self.question_overall: dict[str, bool] = {}
        for question in questions:
            counts = {pid: sums[0] for (pid, qid), sums in cells.figures.items() if qid == question.id}
            shown_total = sum(counts.values()) >= min_group
            self.question_overall[question.id] = shown_total
            shown = disclosed(counts, min_group=min_group) if shown_total else frozenset()
            self.cells[question.id] = frozenset(pid for pid in shown if pid in self.partners)


class SurveyResults:
    """Results of pulse survey runs, and the "you said, we did" follow-ups to partners."""

    __slots__ = ("tx",)

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    # --- surveys and runs ------------------------------------------------------------------------

    async def survey(self, name: str) -> Survey | None:
        return await self.tx.model(Survey, _SURVEY_BY_NAME, name=name.strip().casefold())

    async def surveys(self) -> list[Survey]:
        return await self.tx.models(Survey, _SURVEYS)

    async def runs(self, survey_id: int) -> list[SurveyRun]:
        """A survey's runs, oldest first."""
        return await self.tx.models(SurveyRun, _RUNS_OF, sid=survey_id)

    async def latest(self, *, now: datetime) -> tuple[Survey, SurveyRun] | None:
        """The newest run opened by ``now``, of any survey, with its survey (what ``pulse`` shows)."""
        run = await self.tx.model(SurveyRun, _LATEST_OPENED, now=now)
        if run is None:
            return None
        survey = await self.tx.model(Survey, _SURVEY, sid=run.survey_id)
        return (survey, run) if survey is not None else None

    async def closed_run_of_partner(self, *, partner_id: int, now: datetime) -> tuple[Survey, SurveyRun] | None:
        """The latest closed run that invited people of the partner (what a follow-up answers)."""
        run = await self.tx.model(SurveyRun, _LATEST_CLOSED_OF_PARTNER, partner_id=partner_id, now=now)
        if run is None:
            return None
        survey = await self.tx.model(Survey, _SURVEY, sid=run.survey_id)
        return (survey, run) if survey is not None else None

    # --- results -----------------------------------------------------------------------------------

    async def results(
        self, survey: Survey, run: SurveyRun, *, now: datetime, texts: int = 0, depth: int = TREND_RUNS
    ) -> RunResults:
        """``run``'s results per partner and overall, with the change against the runs before it.

        ``texts``: how many free answers to return per shown (partner, question) at most;
        ``depth``: how many runs the trends cover, this one included (2: just the change).
        """
        depth = max(1, depth)
        assert survey.id is not None and run.id is not None
        definition = run.definition or {}
        questions = questions_of(definition)
        min_group = min_group_of(definition)
        window = {r.id: r for r in await self.runs(survey.id) if r.opens_at <= run.opens_at}
        periods = sorted(window.values(), key=lambda r: (r.opens_at, r.id or 0))[-depth:]
        cells = await self._cells(survey.id, run.opens_at, {q.id: q.kind for q in questions}, depth)
        visible = {rid: _Visible(c, questions, min_group_of(window[rid].definition or {}))
                   for rid, c in cells.items() if rid in window}
        current = cells.get(run.id, _Cells())
        shown = visible.get(run.id) or _Visible(current, questions, min_group)
        names = {pid: name for pid, name in await self.tx.rows(_PARTNER_NAMES)}
        choices = await self._choices(run.id, [q.id for q in questions if q.kind == QuestionKind.CHOICE])
        text_ids = [q.id for q in questions if q.kind == QuestionKind.TEXT]
        free = await self._texts(run.id, text_ids, texts, anonymous=bool(definition.get("anonymous", True))) \
            if texts and text_ids else {}
        follow_ups = {f.partner_id: f.created_at for f in await self.follow_ups(run.id)}
        order = [r.id for r in periods]
        previous_id = order[-2] if len(order) > 1 else None

        def group(pid: int | None, *, overall: bool) -> Group:
            invited = sum(current.invited.values()) if overall else current.invited.get(pid, 0)
            name = "Overall" if overall else names.get(pid, NO_PARTNER) if pid is not None else NO_PARTNER
            followed = None if overall or pid is None else follow_ups.get(pid)
            if not (shown.overall if overall else pid in shown.partners):
                return Group(pid, name, invited, None, overall=overall, followed_up_at=followed)
            answered = sum(current.answered.values()) if overall else current.answered.get(pid, 0)
            figures = tuple(self._figure(q, pid, overall, run.id or 0, order, cells, visible, choices, free)
                            for q in questions)
            previous_rate = None
            if previous_id is not None and previous_id in visible:
                before, seen = cells[previous_id], visible[previous_id]
                if (seen.overall if overall else pid in seen.partners):
                    asked = sum(before.invited.values()) if overall else before.invited.get(pid, 0)
                    got = sum(before.answered.values()) if overall else before.answered.get(pid, 0)
                    previous_rate = got / asked if asked else None
            return Group(pid, name, invited, answered, figures, previous_rate, overall, followed)

        partner_ids = set(current.invited) | set(current.answered)
        partners = sorted((group(pid, overall=False) for pid in partner_ids),
                          key=lambda g: (g.partner_id is None, g.name.casefold()))
        previous_run = window.get(previous_id) if previous_id is not None else None
        return RunResults(
            survey_name=survey.name,
            title=str(definition.get("title") or survey.title),
            period=run.period,
            opens_at=run.opens_at,
            closes_at=run.closes_at,
            closed=run.closed_at is not None or run.closes_at <= now,
            anonymous=bool(definition.get("anonymous", True)),
            min_group=min_group,
            questions=questions,
            overall=group(None, overall=True),
            partners=tuple(partners),
            previous_period=previous_run.period if previous_run is not None else None,
            trend_periods=tuple(r.period for r in periods),
        )

    @staticmethod
    def _figure(
        question: Question,
        pid: int | None,
        overall: bool,
        run_id: int,
        order: Sequence[int | None],
        cells: Mapping[int, _Cells],
        visible: Mapping[int, _Visible],
        choices: Mapping[tuple[int | None, str], dict[str, int]],
        free: Mapping[tuple[int | None, str], list[str]],
    ) -> Figure:
        def sums_of(rid: int) -> list[int] | None:
            c, v = cells.get(rid), visible.get(rid)
            if c is None or v is None:
                return None
            if overall:
                if not v.question_overall.get(question.id):
                    return None
                rows = [s for (p, q), s in c.figures.items() if q == question.id]
                return [sum(col) for col in zip(*rows, strict=True)] if rows else None
            if pid not in v.cells.get(question.id, frozenset()):
                return None
            return c.figures.get((pid, question.id))

        sums = sums_of(run_id)
        if sums is None:
            return Figure(question, None)
        average, nps = _measure(question.kind, sums)
        trend: tuple[float | None, ...] = ()
        previous = None
        if question.measured:
            series = []
            for rid in order:
                before = sums_of(rid) if rid is not None else None
                series.append(_measured_value(question.kind, before) if before is not None else None)
            trend = tuple(series)
            previous = trend[-2] if len(trend) > 1 else None
        distribution: tuple[tuple[str, int], ...] = ()
        if question.kind == QuestionKind.CHOICE:
            counted: dict[str, int] = defaultdict(int)
            for (p, q), by_choice in choices.items():
                if q == question.id and (overall or p == pid):
                    for choice, n in by_choice.items():
                        counted[choice] += n
            extra = sorted(c for c in counted if c not in question.options)
            distribution = tuple((option, counted.get(option, 0)) for option in (*question.options, *extra))
        texts: tuple[str, ...] = ()
        if question.kind == QuestionKind.TEXT and not overall:
            texts = tuple(free.get((pid, question.id), ()))
        return Figure(question, sums[0], average, nps, distribution, previous, trend, texts)

    async def _cells(
        self, survey_id: int, opens_at: datetime, kinds: Mapping[str, str], depth: int
    ) -> dict[int, _Cells]:
        """Grouped counts of the run opening at ``opens_at`` and the runs before it (``depth`` in all)."""
        out: dict[int, _Cells] = defaultdict(_Cells)
        for rid, pid, n in await self.tx.rows(_INVITED, sid=survey_id, opens=opens_at, depth=depth):
            out[rid].invited[pid] = int(n)
        for rid, pid, n in await self.tx.rows(_ANSWERED, sid=survey_id, opens=opens_at, depth=depth):
            out[rid].answered[pid] = int(n)
        for rid, pid, qid, kind, *sums in await self.tx.rows(_FIGURES, sid=survey_id, opens=opens_at, depth=depth):
            if kinds.get(qid) == kind:  # a question whose kind changed since is not the same question
                out[rid].figures[(pid, qid)] = [int(s) for s in sums]
        return dict(out)

    async def _choices(self, run_id: int, question_ids: Sequence[str]) -> dict[tuple[int | None, str], dict[str, int]]:
        out: dict[tuple[int | None, str], dict[str, int]] = defaultdict(dict)
        if not question_ids:
            return {}
        for pid, qid, choice, n in await self.tx.rows(_choices_of(run_id, question_ids)):
            out[(pid, qid)][str(choice)] = int(n)
        return dict(out)

    async def _texts(
        self, run_id: int, question_ids: Sequence[str], limit: int, *, anonymous: bool
    ) -> dict[tuple[int | None, str], list[str]]:
        out: dict[tuple[int | None, str], list[str]] = defaultdict(list)
        for pid, qid, text, name in await self.tx.rows(_texts_of(run_id, question_ids, limit)):
            said = " ".join(str(text).split())
            if not said:
                continue
            out[(pid, qid)].append(said if anonymous or not name else f"{said} ({name})")
        return dict(out)

    # --- relationship health -------------------------------------------------------------------------

    async def satisfaction(self, *, now: datetime) -> dict[int, Satisfaction]:
        """Each partner's satisfaction in the latest closed run of a survey that asks it, and the run
        before; only figures that show under the threshold."""
        for run in await self.tx.models(SurveyRun, _CLOSED, now=now):
            question = satisfaction_question(questions_of(run.definition or {}))
            if question is None:
                continue
            survey = await self.tx.model(Survey, _SURVEY, sid=run.survey_id)
            if survey is None:
                continue
            results = await self.results(survey, run, now=now, depth=2)  # the run and the one before
            out: dict[int, Satisfaction] = {}
            for group in results.partners:
                figure = group.figure(question.id)
                if group.partner_id is None or figure is None or figure.hidden:
                    continue
                out[group.partner_id] = Satisfaction(figure.average, figure.previous, results.title, run.period)
            return out
        return {}

    # --- you said, we did ------------------------------------------------------------------------------

    async def follow_ups(self, run_id: int) -> list[SurveyFollowUp]:
        return await self.tx.models(SurveyFollowUp, _FOLLOW_UPS, rid=run_id)

    async def follow_up(self, *, run_id: int, partner_id: int) -> SurveyFollowUp | None:
        return await self.tx.model(SurveyFollowUp, _FOLLOW_UP, rid=run_id, pid=partner_id)

    async def add_follow_up(self, follow_up: SurveyFollowUp) -> bool:
        """Record a follow-up; False when the (run, partner) has one already (nothing written)."""
        added = await self.tx.count(_ADD_FOLLOW_UP, {
            "run_id": follow_up.run_id, "partner_id": follow_up.partner_id, "by_person_id": follow_up.by_person_id,
            "text": follow_up.text, "created_at": follow_up.created_at,
        })
        return bool(added)

    async def invited_people(self, *, run_id: int, partner_id: int) -> list[int]:
        """Everyone of the partner invited to the run: whom a follow-up goes to."""
        return [int(pid) for pid in await self.tx.scalars(_INVITED_PEOPLE, rid=run_id, pid=partner_id)]


__all__ = [
    "Figure",
    "Group",
    "Question",
    "RunResults",
    "Satisfaction",
    "SurveyResults",
    "disclosed",
    "min_group_of",
    "questions_of",
    "satisfaction_question",
]
