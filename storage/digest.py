"""The weekly digest's figures and the value checks, each one SQL aggregate over the tables.

Nothing here loads a table into Python to count it: each method is one or two statements whose
rows are already the figures (counts per status, a partner's tactical share, a run's average
rating), or a short, bounded list (the five oldest stuck requests). Every figure is computed at
two moments, the end of the week reported on (``at``) and seven days earlier (``prev``), so the
digest can say how it changed.

A :class:`Scope` says whose demand counts: ``brm_id=None`` is everything (leaders, admins); a
BRM's scope is the demand of the partners they have a relationship with.

Example::

    async with db.transaction() as store:
        counts = await store.digest.pipeline(Scope(), at=end, prev=end - timedelta(days=7))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlmodel import SQLModel

from storage.models import (
    OPEN_STATUSES,
    BusinessPartner,
    Category,
    DemandRequest,
    MaturityChange,
    Person,
    Relationship,
    Snooze,
    Status,
    StatusChange,
    SurveyAnswer,
    SurveyFollowUp,
    SurveyRun,
    Touchpoint,
    Urgency,
    ValueAnswer,
    ValueCheck,
)
from storage.tx import Row, Tx, dialect_insert


def _t(model: type[SQLModel]) -> sa.Table:
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]


REQUEST = _t(DemandRequest)
PARTNER = _t(BusinessPartner)
PERSON = _t(Person)
RELATIONSHIP = _t(Relationship)
CHANGE = _t(StatusChange)
TOUCHPOINT = _t(Touchpoint)
MATURITY = _t(MaturityChange)
SNOOZE = _t(Snooze)
RUN = _t(SurveyRun)
ANSWER = _t(SurveyAnswer)
FOLLOW_UP = _t(SurveyFollowUp)
VALUE_CHECK = _t(ValueCheck)

OPEN = sorted(s.value for s in OPEN_STATUSES)
# Requests that can be stuck: open and not deferred on purpose (conversations/health.py NOT_STUCK).
MOVING = sorted(s.value for s in OPEN_STATUSES if s != Status.DEFERRED)
# Enhancements improve what exists: the digest counts them as tactical, with service requests and
# problems; ideas and projects are strategic.
TACTICAL = (Category.SERVICE_REQUEST.value, Category.PROBLEM.value, Category.ENHANCEMENT.value)
STRATEGIC = (Category.IDEA.value, Category.PROJECT.value)
URGENCY_RANK = {u.value: rank for rank, u in enumerate(Urgency)}


@dataclass(frozen=True, slots=True)
class Scope:
    """Whose demand a digest covers: everything, or one BRM's partners and assigned requests."""

    brm_id: int | None = None

    def requests(self) -> sa.ColumnElement[bool]:
        """A BRM's scope is their partners' demand (what the digest's partner figures cover too); a
        request assigned to them from another partner's demand is that partner's BRM's figure."""
        return self.partners(REQUEST.c.partner_id)

    def partners(self, column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
        return sa.true() if self.brm_id is None else column.in_(self._owned())

    def _owned(self) -> sa.Select[Any]:
        return sa.select(RELATIONSHIP.c.partner_id).where(RELATIONSHIP.c.brm_id == self.brm_id)


@dataclass(frozen=True, slots=True)
class Item:
    """A request as a digest line shows it."""

    id: int
    title: str
    status: str
    urgency: str
    partner: str | None
    brm_id: int | None
    brm: str | None
    since: datetime  # created (new demand) or last status change (pipeline, stuck)

    @property
    def key(self) -> str:
        return f"DR-{self.id}"


def _sum(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
    return sa.func.coalesce(sa.func.sum(sa.case((condition, 1), else_=0)), 0)


_URGENCY_ORDER = sa.case(*((REQUEST.c.urgency == u, r) for u, r in URGENCY_RANK.items()), else_=-1)


def _items(tx_rows: Sequence[Row]) -> list[Item]:
    return [Item(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6], r[7]) for r in tx_rows]


def _item_select(since: sa.ColumnElement[Any]) -> sa.Select[Any]:
    brm = PERSON.alias("brm")
    return (
        sa.select(REQUEST.c.id, REQUEST.c.title, REQUEST.c.status, REQUEST.c.urgency, PARTNER.c.name,
                  REQUEST.c.brm_id, brm.c.name, since)
        .select_from(REQUEST)
        .outerjoin(PARTNER, PARTNER.c.id == REQUEST.c.partner_id)
        .outerjoin(brm, brm.c.id == REQUEST.c.brm_id)
    )


def _counts_per_status(scope: Scope, statuses: Sequence[str]) -> sa.CompoundSelect[Any]:
    """(status, count) for each status, one index-only count each: cheaper than a ``GROUP BY`` over
    the whole table."""
    return sa.union_all(*(
        sa.select(sa.literal(s, REQUEST.c.status.type), sa.func.count()).where(REQUEST.c.status == s, scope.requests())
        for s in statuses
    ))


class Digests:
    """The digest's figures for one scope, at the end of a week and a week earlier."""

    __slots__ = ("tx",)

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def new_demand(
        self, scope: Scope, *, start: datetime, end: datetime, limit: int = 5
    ) -> tuple[int, int, list[Item]]:
        """Requests filed in [start, end) and in the week before, and the most urgent of them."""
        before = start - timedelta(days=7)
        in_window = sa.and_(REQUEST.c.created_at >= before, REQUEST.c.created_at < end, scope.requests())
        (this, last), = await self.tx.rows(
            sa.select(_sum(REQUEST.c.created_at >= start), _sum(REQUEST.c.created_at < start)).where(in_window)
        )
        top = await self.tx.rows(
            _item_select(REQUEST.c.created_at)
            .where(REQUEST.c.created_at >= start, REQUEST.c.created_at < end, scope.requests())
            .order_by(_URGENCY_ORDER.desc(), REQUEST.c.created_at, REQUEST.c.id)
            .limit(limit)
        )
        return int(this), int(last), _items(top)

    async def pipeline(self, scope: Scope, *, at: datetime, prev: datetime) -> dict[str, tuple[int, int]]:
        """Requests in each status at ``at`` and at ``prev``: today's counts less the changes since.

        Each status change after a moment moved one request out of ``from_status`` and into
        ``to_status``; undoing those gives the counts as they were then.
        """
        now_rows = await self.tx.rows(_counts_per_status(scope, [s.value for s in Status]))
        counts = {str(s): [int(n), int(n)] for s, n in now_rows}
        scoped = sa.select(REQUEST.c.id).where(scope.requests())
        recent = sa.and_(CHANGE.c.at > prev, sa.true() if scope.brm_id is None else CHANGE.c.request_id.in_(scoped))
        moves = sa.union_all(
            sa.select(CHANGE.c.to_status.label("status"), sa.literal(1).label("delta"), CHANGE.c.at.label("at"))
            .where(recent),
            sa.select(CHANGE.c.from_status.label("status"), sa.literal(-1).label("delta"), CHANGE.c.at.label("at"))
            .where(recent, CHANGE.c.from_status.is_not(None)),
        ).subquery()
        delta_rows = await self.tx.rows(
            sa.select(moves.c.status, sa.func.sum(sa.case((moves.c.at > at, moves.c.delta), else_=0)),
                      sa.func.sum(moves.c.delta))
            .group_by(moves.c.status)
        )
        for status, after_at, after_prev in delta_rows:
            pair = counts.setdefault(str(status), [0, 0])
            pair[0] -= int(after_at or 0)
            pair[1] -= int(after_prev or 0)
        return {s: (max(a, 0), max(b, 0)) for s, (a, b) in counts.items()}

    async def oldest_per_status(self, scope: Scope, *, at: datetime) -> dict[str, Item]:
        """The open request longest in each status, among those already in it at ``at`` (one indexed
        look-up per status)."""
        parts = [
            _item_select(REQUEST.c.updated_at)
            .where(REQUEST.c.status == status, scope.requests(), REQUEST.c.updated_at <= at)
            .order_by(REQUEST.c.updated_at, REQUEST.c.id)
            .limit(1)
            .subquery()
            for status in OPEN
        ]
        union = sa.union_all(*(sa.select(p) for p in parts))
        return {item.status: item for item in _items(await self.tx.rows(union))}

    async def stuck(
        self, scope: Scope, *, at: datetime, prev: datetime, limit_days: int, limit: int = 5
    ) -> tuple[int, int, list[Item]]:
        """Open requests (not deferred) longer than ``limit_days`` in their status, at both moments,
        and the longest-waiting ones. A week ago counts those that had passed the limit then and
        are still in that status (a request that moved since is not seen)."""
        days = timedelta(days=limit_days + 1)  # past the limit in whole days, as health.request_signal counts
        moving = sa.and_(REQUEST.c.status.in_(MOVING), scope.requests())
        (this, last), = await self.tx.rows(
            sa.select(_sum(REQUEST.c.updated_at <= at - days), _sum(REQUEST.c.updated_at <= prev - days))
            .where(moving, REQUEST.c.updated_at <= at - days)
        )
        per_status = [  # the oldest few of each status, from the index in order, then the oldest of those
            _item_select(REQUEST.c.updated_at)
            .where(REQUEST.c.status == status, scope.requests(), REQUEST.c.updated_at <= at - days)
            .order_by(REQUEST.c.updated_at, REQUEST.c.id)
            .limit(limit)
            .subquery()
            for status in MOVING
        ]
        union = sa.union_all(*(sa.select(p) for p in per_status)).subquery()
        top = await self.tx.rows(sa.select(union).order_by(union.c[7], union.c[0]).limit(limit))
        return int(this), int(last), _items(top)

    async def relationships(self, scope: Scope, *, at: datetime, prev: datetime) -> list[RelationshipFigures]:
        """Each primary relationship in scope: its last contact at both moments, and its partner's
        oldest moving open request (what ``judge`` needs to give the same level as over all of them).

        The oldest request is found with one index probe per (partner, status) on
        ``ix_demand_request_partner_status``: the partner's oldest request of each moving status,
        of which the oldest wins.
        """
        brm = PERSON.alias("brm")
        oldest_of = [
            sa.select(REQUEST.c.id)
            .where(REQUEST.c.partner_id == RELATIONSHIP.c.partner_id, REQUEST.c.status == status)
            .order_by(REQUEST.c.updated_at, REQUEST.c.id)
            .limit(1)
            .scalar_subquery()
            for status in MOVING
        ]
        touched_before = (
            sa.select(sa.func.max(TOUCHPOINT.c.happened_on))
            .where(TOUCHPOINT.c.partner_id == RELATIONSHIP.c.partner_id, TOUCHPOINT.c.created_at <= prev)
            .scalar_subquery()
        )
        rows = await self.tx.rows(
            sa.select(RELATIONSHIP.c.partner_id, PARTNER.c.name, RELATIONSHIP.c.brm_id, brm.c.name,
                      RELATIONSHIP.c.cadence_days, RELATIONSHIP.c.last_touchpoint_at, touched_before, *oldest_of)
            .join(PARTNER, PARTNER.c.id == RELATIONSHIP.c.partner_id)
            .join(brm, brm.c.id == RELATIONSHIP.c.brm_id)
            .where(RELATIONSHIP.c.is_primary, scope.partners(RELATIONSHIP.c.partner_id))
            .order_by(PARTNER.c.name)
        )
        ids = sorted({int(i) for row in rows for i in row[7:] if i is not None})
        found: dict[int, tuple[str, datetime, str]] = {}
        if ids:
            for rid, status, updated, title in await self.tx.rows(
                sa.select(REQUEST.c.id, REQUEST.c.status, REQUEST.c.updated_at, REQUEST.c.title)
                .where(REQUEST.c.id.in_(ids))
            ):
                found[int(rid)] = (str(status), updated, str(title))
        out = []
        for pid, name, brm_id, brm_name, cadence, last, before, *candidates in rows:
            known = [int(c) for c in candidates if c is not None and int(c) in found]
            oldest = min(known, key=lambda c: (found[c][1], c)) if known else None
            status, updated, title = found[oldest] if oldest is not None else (None, None, None)
            out.append(RelationshipFigures(int(pid), name, int(brm_id), brm_name, int(cadence), last, before,
                                           oldest, status, updated, title))
        return out

    async def pulse_runs(self, *, at: datetime, limit: int = 6) -> list[tuple[int, str, dict[str, Any]]]:
        """(id, period, definition) of the last ``limit`` runs opened by ``at`` of the survey run
        most recently, oldest first: the pulse the digest trends."""
        latest = (
            sa.select(RUN.c.survey_id).where(RUN.c.opens_at <= at).order_by(RUN.c.opens_at.desc(), RUN.c.id.desc())
            .limit(1).scalar_subquery()
        )
        rows = await self.tx.rows(
            sa.select(RUN.c.id, RUN.c.period, RUN.c.definition)
            .where(RUN.c.survey_id == latest, RUN.c.opens_at <= at)
            .order_by(RUN.c.opens_at.desc(), RUN.c.id.desc())
            .limit(limit)
        )
        return [(int(r[0]), str(r[1]), dict(r[2] or {})) for r in reversed(rows)]

    async def pulse_scores(
        self, scope: Scope, *, questions: dict[int, str]
    ) -> list[tuple[int, int, float, int]]:
        """(run, partner, average rating, answers) for each run's rating question."""
        if not questions:
            return []
        which = sa.or_(*(sa.and_(ANSWER.c.run_id == run, ANSWER.c.question_id == q) for run, q in questions.items()))
        rows = await self.tx.rows(
            sa.select(ANSWER.c.run_id, ANSWER.c.partner_id, sa.func.avg(ANSWER.c.value), sa.func.count())
            .where(which, ANSWER.c.value.is_not(None), ANSWER.c.partner_id.is_not(None),
                   scope.partners(ANSWER.c.partner_id))
            .group_by(ANSWER.c.run_id, ANSWER.c.partner_id)
        )
        return [(int(r), int(p), float(avg), int(n)) for r, p, avg, n in rows]

    async def partner_names(self, scope: Scope) -> dict[int, str]:
        rows = await self.tx.rows(sa.select(PARTNER.c.id, PARTNER.c.name).where(scope.partners(PARTNER.c.id)))
        return {int(i): str(n) for i, n in rows}

    async def mix(
        self, scope: Scope, *, at: datetime, prev: datetime, days: int
    ) -> list[tuple[int, int, int, int, int]]:
        """(partner, requests, tactical, previous requests, previous tactical) over the ``days``
        before each moment: how much of a partner's demand is tactical, now and a week ago."""
        span = timedelta(days=days)
        now_window = sa.and_(REQUEST.c.created_at >= at - span, REQUEST.c.created_at < at)
        prev_window = sa.and_(REQUEST.c.created_at >= prev - span, REQUEST.c.created_at < prev)
        tactical = REQUEST.c.category.in_(TACTICAL)
        rows = await self.tx.rows(
            sa.select(REQUEST.c.partner_id, _sum(now_window), _sum(sa.and_(now_window, tactical)),
                      _sum(prev_window), _sum(sa.and_(prev_window, tactical)))
            .where(REQUEST.c.partner_id.is_not(None), REQUEST.c.created_at >= prev - span,
                   REQUEST.c.created_at < at, scope.partners(REQUEST.c.partner_id))
            .group_by(REQUEST.c.partner_id)
        )
        return [(int(p), int(a), int(b), int(c), int(d)) for p, a, b, c, d in rows]

    async def maturity_still(
        self, scope: Scope, *, at: datetime, prev: datetime, months: int = 6
    ) -> tuple[list[tuple[str, str, datetime]], int]:
        """Partners whose stage has not moved in ``months`` (since their last change, or since they
        were added): (name, stage, since) at ``at``, and how many at ``prev``."""
        span = timedelta(days=round(months * 30.44))
        last_change = (
            sa.select(sa.func.max(MATURITY.c.at)).where(MATURITY.c.partner_id == PARTNER.c.id, MATURITY.c.at <= at)
            .scalar_subquery()
        )
        prev_change = (
            sa.select(sa.func.max(MATURITY.c.at)).where(MATURITY.c.partner_id == PARTNER.c.id, MATURITY.c.at <= prev)
            .scalar_subquery()
        )
        since = sa.func.coalesce(last_change, PARTNER.c.created_at)
        since_prev = sa.func.coalesce(prev_change, PARTNER.c.created_at)
        rows = await self.tx.rows(
            sa.select(PARTNER.c.name, PARTNER.c.maturity, since, since_prev).where(scope.partners(PARTNER.c.id))
            .order_by(PARTNER.c.name)
        )
        still = [(n, m, s) for n, m, s, _ in rows if s is not None and s <= at - span]
        before = sum(1 for _, _, _, p in rows if p is not None and p <= prev - span)
        return still, before

    async def snoozes(self, scope: Scope, *, at: datetime, prev: datetime) -> tuple[list[SnoozeLine], int]:
        """Nudge items snoozed at ``at`` (who, what, why, until), and how many were at ``prev``."""
        brm = PERSON.alias("brm")
        running = sa.and_(SNOOZE.c.created_at <= at, SNOOZE.c.until > at)
        mine = sa.true() if scope.brm_id is None else SNOOZE.c.brm_id == scope.brm_id
        rows = await self.tx.rows(
            sa.select(brm.c.name, SNOOZE.c.item, SNOOZE.c.reason, SNOOZE.c.until)
            .join(brm, brm.c.id == SNOOZE.c.brm_id)
            .where(running, mine)
            .order_by(SNOOZE.c.until, SNOOZE.c.id)
        )
        before = await self.tx.rows(
            sa.select(sa.func.count()).where(SNOOZE.c.created_at <= prev, SNOOZE.c.until > prev, mine)
        )
        return [SnoozeLine(r[0], r[1], r[2], r[3]) for r in rows], int(before[0][0])

    async def titles(self, ids: Sequence[int]) -> dict[int, str]:
        if not ids:
            return {}
        rows = await self.tx.rows(sa.select(REQUEST.c.id, REQUEST.c.title).where(REQUEST.c.id.in_(list(ids))))
        return {int(i): str(t) for i, t in rows}

    async def unconfirmed(
        self, scope: Scope, *, limit: int = 5
    ) -> tuple[dict[str, int], list[tuple[Item, str | None, str | None, datetime | None]]]:
        """Delivered requests whose value is not confirmed: how many in each state of their value
        check (``waiting`` to be asked, ``asked``, ``reminded``, ``partly``, ``no``), and the ones
        to look at first (no, partly, unanswered after a reminder). How many were delivered a
        week ago is the pipeline's figure for ``delivered``."""
        state = sa.case(
            (VALUE_CHECK.c.answer == ValueAnswer.NO.value, "no"),
            (VALUE_CHECK.c.answer == ValueAnswer.PARTLY.value, "partly"),
            (VALUE_CHECK.c.reminded_at.is_not(None), "reminded"),
            (VALUE_CHECK.c.asked_at.is_not(None), "asked"),
            else_="waiting",
        )
        delivered = sa.and_(REQUEST.c.status == Status.DELIVERED.value, scope.requests())
        total = int((await self.tx.rows(sa.select(sa.func.count()).where(delivered)))[0][0])
        rows = await self.tx.rows(
            sa.select(state, sa.func.count())
            .select_from(VALUE_CHECK.join(REQUEST, REQUEST.c.id == VALUE_CHECK.c.request_id))
            .where(delivered)
            .group_by(state)
        )
        counts = {str(s): int(n) for s, n in rows}
        counts["waiting"] = total - sum(counts.values())  # delivered, not asked yet: no value check row
        rank = sa.case((VALUE_CHECK.c.answer == "no", 0), (VALUE_CHECK.c.answer == "partly", 1),
                       (VALUE_CHECK.c.reminded_at.is_not(None), 2), else_=3)
        first = (  # from the index and the checks alone; the requests' rows are read for these few only
            sa.select(REQUEST.c.id.label("rid"), rank.label("rank"), REQUEST.c.updated_at.label("since"))
            .join(VALUE_CHECK, VALUE_CHECK.c.request_id == REQUEST.c.id)
            .where(delivered, sa.or_(VALUE_CHECK.c.answer.in_([ValueAnswer.NO.value, ValueAnswer.PARTLY.value]),
                                     VALUE_CHECK.c.reminded_at.is_not(None)))
            .order_by(rank, REQUEST.c.updated_at, REQUEST.c.id)
            .limit(limit)
            .subquery()
        )
        top = await self.tx.rows(
            _item_select(REQUEST.c.updated_at)
            .add_columns(VALUE_CHECK.c.answer, VALUE_CHECK.c.comment, VALUE_CHECK.c.reminded_at)
            .join(first, first.c.rid == REQUEST.c.id)
            .join(VALUE_CHECK, VALUE_CHECK.c.request_id == REQUEST.c.id)
            .order_by(first.c.rank, first.c.since, first.c.rid)
        )
        return counts, [(_items([r[:8]])[0], r[8], r[9], r[10]) for r in top]

    async def followed_up(self, scope: Scope, *, at: datetime, prev: datetime) -> tuple[list[str], int]:
        """Partners that got a "you said, we did" for their last pulse run (by ``at``), and how many
        had one by ``prev``. A partner's last run is the last one its people answered."""
        out: list[list[str]] = []
        for moment in (at, prev):
            answered = sa.exists().where(ANSWER.c.run_id == RUN.c.id, ANSWER.c.partner_id == PARTNER.c.id)
            last_run = (
                sa.select(RUN.c.id).where(RUN.c.opens_at <= moment, answered)
                .order_by(RUN.c.opens_at.desc(), RUN.c.id.desc()).limit(1)
                .scalar_subquery()
            )
            got = sa.exists().where(FOLLOW_UP.c.partner_id == PARTNER.c.id, FOLLOW_UP.c.run_id == last_run,
                                    FOLLOW_UP.c.created_at <= moment)
            rows = await self.tx.rows(
                sa.select(PARTNER.c.name).where(scope.partners(PARTNER.c.id), got).order_by(PARTNER.c.name)
            )
            out.append([str(r[0]) for r in rows])
        return out[0], len(out[1])

    async def recent_open(
        self, scope: Scope, *, at: datetime, days: int, limit: int
    ) -> list[tuple[int, str, int, str]]:
        """(id, title, partner, partner name) of the newest open requests filed within ``days``
        before ``at``: what connected demand compares (a bounded list, newest first)."""
        rows = await self.tx.rows(
            sa.select(REQUEST.c.id, REQUEST.c.title, REQUEST.c.partner_id, PARTNER.c.name)
            .join(PARTNER, PARTNER.c.id == REQUEST.c.partner_id)
            .where(REQUEST.c.status.in_(OPEN), REQUEST.c.created_at >= at - timedelta(days=days),
                   REQUEST.c.created_at < at, REQUEST.c.duplicate_of_id.is_(None), scope.requests())
            .order_by(REQUEST.c.created_at.desc(), REQUEST.c.id.desc())
            .limit(limit)
        )
        return [(int(i), str(t), int(p), str(n)) for i, t, p, n in rows]


@dataclass(frozen=True, slots=True)
class RelationshipFigures:
    partner_id: int
    partner: str
    brm_id: int
    brm: str
    cadence_days: int
    last_touchpoint_at: datetime | None
    touched_before: Any  # the last touchpoint's day logged by ``prev`` (a date), or None
    oldest_id: int | None
    oldest_status: str | None
    oldest_updated_at: datetime | None
    oldest_title: str | None


@dataclass(frozen=True, slots=True)
class SnoozeLine:
    brm: str
    item: str
    reason: str | None
    until: datetime


# --- value checks ---------------------------------------------------------------------------------


class ValueChecks:
    """Asking requesters whether a delivered request brought its outcome: once, one reminder."""

    __slots__ = ("tx",)

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def requesters(self) -> list[Person]:
        """People with a delivered request (whom the ``value-checks`` job considers)."""
        delivered = sa.select(REQUEST.c.requester_id).where(REQUEST.c.status == Status.DELIVERED.value)
        rows = await self.tx.rows(sa.select(PERSON).where(PERSON.c.id.in_(delivered)).order_by(PERSON.c.id))
        names = [c.name for c in PERSON.c]
        return [Person.model_construct(**dict(zip(names, r, strict=True))) for r in rows]

    async def to_ask(self, *, requester_id: int, delivered_before: datetime) -> list[DemandRequest]:
        """The person's delivered requests, delivered before ``delivered_before``, never asked."""
        delivered_at = (
            sa.select(sa.func.max(CHANGE.c.at))
            .where(CHANGE.c.request_id == REQUEST.c.id, CHANGE.c.to_status == Status.DELIVERED.value)
            .scalar_subquery()
        )
        asked = sa.exists().where(VALUE_CHECK.c.request_id == REQUEST.c.id)
        rows = await self.tx.rows(
            sa.select(REQUEST).where(REQUEST.c.requester_id == requester_id,
                                     REQUEST.c.status == Status.DELIVERED.value,
                                     sa.func.coalesce(delivered_at, REQUEST.c.updated_at) <= delivered_before, ~asked)
            .order_by(REQUEST.c.id)
        )
        names = [c.name for c in REQUEST.c]
        return [DemandRequest.model_construct(**dict(zip(names, r, strict=True))) for r in rows]

    async def ask(self, *, request_id: int, requester_id: int, now: datetime) -> bool:
        """Record the question; False when it was asked already (a replica, a retry)."""
        insert = dialect_insert(self.tx.dialect)(VALUE_CHECK).values(
            request_id=request_id, requester_id=requester_id, asked_at=now
        ).on_conflict_do_nothing()
        return bool(await self.tx.count(insert))

    async def to_remind(self, *, requester_id: int, asked_before: datetime) -> list[tuple[int, str, str]]:
        """(request, title, outcome) asked before ``asked_before``, unanswered, not reminded yet."""
        rows = await self.tx.rows(
            sa.select(REQUEST.c.id, REQUEST.c.title, REQUEST.c.outcome)
            .join(VALUE_CHECK, VALUE_CHECK.c.request_id == REQUEST.c.id)
            .where(VALUE_CHECK.c.requester_id == requester_id, VALUE_CHECK.c.answer.is_(None),
                   VALUE_CHECK.c.reminded_at.is_(None), VALUE_CHECK.c.asked_at <= asked_before,
                   REQUEST.c.status == Status.DELIVERED.value)
            .order_by(REQUEST.c.id)
        )
        return [(int(i), str(t), str(o)) for i, t, o in rows]

    async def remind(self, *, request_id: int, now: datetime) -> bool:
        """Mark the one reminder; False when it was sent already."""
        return bool(await self.tx.count(
            sa.update(VALUE_CHECK)
            .where(VALUE_CHECK.c.request_id == request_id, VALUE_CHECK.c.reminded_at.is_(None),
                   VALUE_CHECK.c.answer.is_(None))
            .values(reminded_at=now)
        ))

    async def get(self, request_id: int) -> ValueCheck | None:
        rows = await self.tx.rows(sa.select(VALUE_CHECK).where(VALUE_CHECK.c.request_id == request_id))
        if not rows:
            return None
        names = [c.name for c in VALUE_CHECK.c]
        return ValueCheck.model_construct(**dict(zip(names, rows[0], strict=True)))

    async def answer(self, *, request_id: int, answer: ValueAnswer, now: datetime) -> bool:
        """Record the answer; False when the check was answered already (a second press)."""
        return bool(await self.tx.count(
            sa.update(VALUE_CHECK)
            .where(VALUE_CHECK.c.request_id == request_id, VALUE_CHECK.c.answer.is_(None))
            .values(answer=answer.value, answered_at=now)
        ))

    async def comment(self, *, request_id: int, text: str) -> bool:
        return bool(await self.tx.count(
            sa.update(VALUE_CHECK).where(VALUE_CHECK.c.request_id == request_id).values(comment=text[:1000])
        ))
