"""Digest benchmark: the weekly digest of every leader over a large organisation, on PostgreSQL.

Run by hand (never in the test suite)::

    python bench/digest.py                          # 10k, 100k and 1M requests, 200k survey answers
    python bench/digest.py --sizes 10000 1000000 --answers 200000 --repeat 3

For each size a fresh database is created on the server of ``BRM_BOT_TEST_POSTGRES_URL`` (default
``postgresql+asyncpg://postgres@127.0.0.1:5432/test``), migrated, and filled set-based: each table
is one ``INSERT … SELECT`` over ``generate_series`` built with SQLAlchemy (60 partners, 12 BRMs,
3 leaders in three time zones, 2,000 requesters, requests spread over two years in every status
and category, two status changes a request, a monthly pulse of 12 runs, value checks, snoozes,
maturity changes). Then ``VACUUM ANALYZE``, and the digest of each leader is built (every figure, the
relationship judgements, connected demand, the rendering) ``--repeat`` times: the median and the
slowest per leader are printed, with a BRM's scoped preview for comparison. Target: under 2 s
per leader at 1,000,000 requests and 200,000 answers.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import SQLModel

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from conversations.digest import Week, gather, render, scope_for
from storage import migrate
from storage.admin import create_database, drop_database
from storage.db import Database
from storage.models import (
    BusinessPartner,
    DemandRequest,
    MaturityChange,
    Person,
    Relationship,
    Snooze,
    StatusChange,
    Survey,
    SurveyAnswer,
    SurveyFollowUp,
    SurveyRun,
    ValueCheck,
)
from storage.types import UTCDateTime

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
PARTNERS, BRMS, REQUESTERS = 60, 12, 2000
LEADERS = (("Lea Leader", "Asia/Kolkata"), ("Leo Leader", "Europe/Berlin"), ("Lia Leader", "America/New_York"))
STATUSES = ("submitted", "submitted", "triaged", "shaping", "approved", "deferred", "rejected", "rejected",
            "in delivery", "delivered", "delivered") + ("value realized",) * 9
CATEGORIES = ("idea", "project", "enhancement", "service request", "problem")
URGENCIES = ("low", "medium", "high", "critical")
VERBS = ("Automate", "Report on", "Dashboard for", "Mobile", "Self-service", "Clean up", "Integrate", "Replace",
         "Audit", "Speed up")
SUBJECTS = ("invoices", "expense claims", "supplier onboarding", "payroll", "shift plans", "lead scoring",
            "quotes", "warehouse scans", "contract renewals", "training records", "customer churn", "VPN access",
            "laptop refresh", "price lists", "travel bookings", "month-end close", "budget planning", "CRM data",
            "access reviews", "sales forecasts", "stock counts", "returns", "field service", "recruiting",
            "onboarding", "IT tickets", "campaign ROI", "vendor master data", "cash forecasts", "audit trails")
DEFINITION = {"title": "Partner pulse", "min_group": 3,
              "questions": [{"id": "satisfaction", "type": "rating", "text": "How satisfied are you?"}]}


L = sa.literal


def _t(model: type[SQLModel]) -> sa.Table:
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]


def _pick(index: Any, words: tuple[str, ...]) -> Any:
    return sa.case(*((index == k, w) for k, w in enumerate(words)), else_=words[0])


def _div(a: Any, b: Any) -> Any:
    """Integer division (SQLAlchemy's ``/`` on integers divides as numbers)."""
    return sa.cast(sa.func.div(a, b), sa.Integer)


def _ago(days: Any, minutes: Any = 0) -> Any:
    now = L(NOW, UTCDateTime)
    return now - sa.func.make_interval(0, 0, 0, sa.cast(days, sa.Integer), 0, sa.cast(minutes, sa.Integer))


def _series(n: int) -> tuple[Any, Any]:
    s = sa.func.generate_series(1, n).table_valued("i").render_derived(name="s")
    return s, s.c.i


async def fill(db: Database, requests: int, answers: int) -> None:
    """The organisation, set-based: one INSERT … SELECT per table."""
    partner, person, rel = _t(BusinessPartner), _t(Person), _t(Relationship)
    request, change, run, answer = _t(DemandRequest), _t(StatusChange), _t(SurveyRun), _t(SurveyAnswer)
    async with db.transaction() as store:
        tx = store.tx
        s, i = _series(PARTNERS)
        await tx.count(sa.insert(partner).from_select(
            ["name", "executive", "maturity", "created_at"],
            sa.select(sa.func.concat("Partner ", i), sa.null(),
                      _pick(i % 4, ("ad hoc", "order taker", "trusted advisor", "strategic partner")),
                      _ago(800)).select_from(s)))
        for name, tz in LEADERS:
            await store.add(Person(name=name, email=f"{name.split()[0].lower()}@example.com", role="leader",
                                   time_zone=tz, created_at=NOW))
        s, i = _series(BRMS)
        await tx.count(sa.insert(person).from_select(
            ["name", "email", "role", "time_zone", "created_at"],
            sa.select(sa.func.concat("BRM ", i), sa.func.concat("brm", i, "@example.com"), L("brm"), L("Europe/Madrid"),
                      _ago(800)).select_from(s)))
        s, i = _series(REQUESTERS)
        await tx.count(sa.insert(person).from_select(
            ["name", "email", "role", "time_zone", "partner_id", "created_at"],
            sa.select(sa.func.concat("Requester ", i), sa.func.concat("r", i, "@example.com"), L("requester"), L("UTC"),
                      1 + i % PARTNERS, _ago(800)).select_from(s)))
        first_brm, first_requester = len(LEADERS) + 1, len(LEADERS) + BRMS + 1
        s, i = _series(PARTNERS)
        await tx.count(sa.insert(rel).from_select(
            ["partner_id", "brm_id", "is_primary", "cadence_days", "last_touchpoint_at", "created_at"],
            sa.select(i, first_brm + i % BRMS, sa.true(), 14 + 7 * (i % 3), _ago((i * 3) % 60), _ago(800))
            .select_from(s)))
        s, i = _series(requests)
        age = _div(i, 11) % 730  # status, partner, category, urgency and age vary independently
        created = _ago(age, (i * 37) % 1440)
        pid = 1 + _div(i, 7) % PARTNERS
        await tx.count(sa.insert(request).from_select(
            ["title", "outcome", "category", "urgency", "requester_id", "partner_id", "brm_id", "status",
             "source_platform", "created_at", "updated_at"],
            sa.select(sa.func.concat(_pick(i % len(VERBS), VERBS), " ", _pick(_div(i, len(VERBS)) % len(SUBJECTS),
                                                                              SUBJECTS)),
                      L("a measurable business outcome"), _pick(_div(i, 3) % 5, CATEGORIES),
                      _pick(_div(i, 13) % 4, URGENCIES),
                      first_requester + i % REQUESTERS, pid, first_brm + pid % BRMS,
                      _pick((i * 11) % len(STATUSES), STATUSES), L("slack"), created,
                      _ago(age - _div(age * ((i * 7) % 10), 10), (i * 37) % 1440)).select_from(s)))
        await tx.count(sa.insert(change).from_select(
            ["request_id", "at", "to_status"],
            sa.select(request.c.id, request.c.created_at, L("submitted"))))
        await tx.count(sa.insert(change).from_select(
            ["request_id", "at", "from_status", "to_status"],
            sa.select(request.c.id, request.c.updated_at, L("submitted"), request.c.status)
            .where(request.c.status != "submitted")))
        survey = Survey(name="partner-pulse", title="Partner pulse", definition=DEFINITION, fingerprint="bench",
                        created_at=NOW, updated_at=NOW)
        await store.add(survey)
        s, i = _series(12)
        await tx.count(sa.insert(run).from_select(
            ["survey_id", "period", "definition", "opens_at", "closes_at"],
            sa.select(L(survey.id), sa.func.concat("run ", i), L(DEFINITION, sa.JSON),
                      _ago((13 - i) * 30), _ago((13 - i) * 30 - 5)).select_from(s)))
        s, i = _series(answers)
        await tx.count(sa.insert(answer).from_select(
            ["run_id", "partner_id", "question_id", "kind", "response_id", "value"],
            sa.select(1 + i % 12, 1 + _div(i, 12) % PARTNERS, L("satisfaction"), L("rating"), sa.func.concat("r", i),
                      1 + (i * 7) % 5).select_from(s)))
        s, i = _series(20)
        await tx.count(sa.insert(_t(SurveyFollowUp)).from_select(
            ["run_id", "partner_id", "by_person_id", "text", "created_at"],
            sa.select(L(12), i, L(first_brm), L("what we heard, what we will do"), _ago(3)).select_from(s)))
        await tx.count(sa.insert(_t(ValueCheck)).from_select(
            ["request_id", "requester_id", "asked_at", "answer"],
            sa.select(request.c.id, request.c.requester_id, _ago(10),
                      sa.case((request.c.id % 9 == 0, "partly"), (request.c.id % 9 == 3, "no"), else_=sa.null()))
            .where(request.c.status == "delivered", request.c.id % 3 == 0)))
        s, i = _series(30)
        await tx.count(sa.insert(_t(Snooze)).from_select(
            ["brm_id", "item", "until", "reason", "created_at"],
            sa.select(first_brm + i % BRMS, sa.func.concat("partner:", 1 + i), _ago(-7),
                      L("waiting for the budget"), _ago(2)).select_from(s)))
        s, i = _series(PARTNERS)
        await tx.count(sa.insert(_t(MaturityChange)).from_select(
            ["partner_id", "by_person_id", "from_stage", "to_stage", "at"],
            sa.select(i, L(first_brm), L("ad hoc"), L("order taker"), _ago(i * 5))
            .select_from(s)))
    async with db.transaction() as store:
        # fresh tables: the planner's statistics and the visibility map (index-only scans), as autovacuum
        # leaves them on a live database
        await store.tx.count(sa.text("VACUUM ANALYZE"))


async def measure(db: Database, repeat: int) -> dict[str, list[float]]:
    """Seconds per digest (figures and rendering) for each leader and one BRM."""
    timings: dict[str, list[float]] = {}
    async with db.transaction() as store:
        people = [*(await store.directory.with_role("leader")), *(await store.directory.with_role("brm"))[:1]]
    for _ in range(repeat):
        for person in people:
            scope = scope_for(person)
            assert scope is not None
            tz = ZoneInfo(person.time_zone)
            started = time.perf_counter()
            async with db.transaction() as store:
                digest = await gather(store, scope, week=Week.last_complete(NOW, tz), tz=tz, now=NOW,
                                      whose=person.name)
            render(digest, tz=tz, now=NOW)
            timings.setdefault(f"{person.name} ({person.role}, {person.time_zone})", []).append(
                time.perf_counter() - started)
    return timings


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--answers", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="keep the databases (named brm_bench_digest_N)")
    args = parser.parse_args()
    server = os.environ.get("BRM_BOT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
    print(f"# {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f}")
    for size in args.sizes:
        name = f"brm_bench_digest_{size}"
        db = Database.connect(await create_database(server, name, replace=True))
        try:
            await migrate.upgrade(db)
            started = time.perf_counter()
            await fill(db, size, args.answers)
            filled = time.perf_counter() - started
            timings = await measure(db, args.repeat)
        finally:
            await db.dispose()
            if not args.keep:
                await drop_database(server, name)
        print(f"\n{size:,} requests, {args.answers:,} answers (filled in {filled:.0f} s); "
              f"load average {os.getloadavg()[0]:.2f}")
        for who, seconds in timings.items():
            print(f"  {who}: median {statistics.median(seconds):.3f} s, slowest {max(seconds):.3f} s")


if __name__ == "__main__":
    asyncio.run(main())
