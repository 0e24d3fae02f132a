"""Pulse survey results benchmark: one run's results over 100,000 answers, computed in SQL.

Run by hand (never in the test suite)::

    python bench/surveys.py                          # SQLite file and PostgreSQL
    python bench/surveys.py --db postgresql --runs 6 --answers 100000

The data is written set-based: each table is filled by one ``INSERT … SELECT`` over a
series of numbers (``generate_series`` on PostgreSQL, a recursive CTE on SQLite), built with
SQLAlchemy constructs. Per run: ``--answers`` answers (4 questions a response: a rating, a
choice, an NPS and a free answer), so ``answers / 4`` responses from ``--partners`` partners,
and a quarter more people invited than answered. The latest run is measured: the call
``store.survey_results.results(...)`` that ``brm-bot surveys results`` and ``pulse`` make,
which reads the latest run and the runs before it (the trend) with ``GROUP BY`` statements.
It is timed ``--repeat`` times on a warm database, after ``ANALYZE``; the median and the
slowest are printed, with the machine's load average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from storage import migrate
from storage.admin import create_database
from storage.db import Database
from storage.models import BusinessPartner, Person, Survey, SurveyAnswer, SurveyInvitation, SurveyRun
from storage.store import Store, table

POSTGRES = os.environ.get("BRM_BOT_BENCH_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
DEFINITION = {
    "name": "partner-pulse", "title": "Partner pulse", "anonymous": True, "min_group": 3,
    "questions": [
        {"id": "satisfaction", "type": "rating", "text": "How satisfied are you with IT's services?"},
        {"id": "role", "type": "choice", "text": "How would you describe IT's role for your area?",
         "options": ["order taker", "trusted advisor", "strategic partner"]},
        {"id": "recommend", "type": "nps", "text": "How likely are you to recommend IT's services?"},
        {"id": "better", "type": "text", "text": "One thing IT should do differently"},
    ],
}
PERSON, ANSWER, INVITATION = table(Person), table(SurveyAnswer), table(SurveyInvitation)


def numbers(dialect: str, count: int) -> Any:
    """A selectable of one column ``n`` from 0 to ``count - 1``."""
    if dialect == "postgresql":
        series = sa.func.generate_series(0, count - 1).table_valued(
            sa.column("n", sa.Integer), name="series").render_derived()
        return sa.select(series.c.n).subquery()
    seed = sa.select(sa.literal(0, sa.Integer).label("n")).cte("series", recursive=True)
    series = seed.union_all(sa.select((seed.c.n + 1).label("n")).where(seed.c.n < count - 1))
    return sa.select(series.c.n).subquery()


async def load(db: Database, *, runs: int, answers: int, partners: int) -> None:
    now = datetime.now(UTC)
    responses = answers // 4
    invited = responses + responses // 4
    async with db.transaction() as store:
        dialect = store.tx.dialect
        first_partner = 0
        for i in range(partners):
            partner = BusinessPartner(name=f"Partner {i:03d}", created_at=now)
            await store.add(partner)
            first_partner = first_partner or (partner.id or 0)
        survey = Survey(name="partner-pulse", title="Partner pulse", definition=DEFINITION, fingerprint="0" * 64,
                        created_at=now, updated_at=now)
        await store.add(survey)
        n = numbers(dialect, invited).c.n
        people = sa.select(
            sa.literal("Bench person") + sa.cast(n, sa.String),
            sa.literal("p") + sa.cast(n, sa.String) + sa.literal("@bench.test"),
            sa.literal("requester"), sa.literal("UTC"), first_partner + n % partners,
            sa.literal(now, PERSON.c.created_at.type),
        )
        await store.tx.count(PERSON.insert().from_select(
            ["name", "email", "role", "time_zone", "partner_id", "created_at"], people))
        first_person = int(await store.tx.scalar(sa.select(sa.func.min(PERSON.c.id))))
    for r in range(runs):
        opens = now - timedelta(days=30 * (runs - r))
        async with db.transaction() as store:
            run = SurveyRun(survey_id=survey.id or 0, period=f"run-{r:02d}", definition=DEFINITION, opens_at=opens,
                            closes_at=opens + timedelta(days=5), closed_at=opens + timedelta(days=5))
            await store.add(run)
            await _run_rows(store, dialect, run.id or 0, r, invited=invited, responses=responses,
                            partners=partners, first_partner=first_partner, first_person=first_person, at=opens)


async def _run_rows(store: Store, dialect: str, run_id: int, r: int, *, invited: int, responses: int, partners: int,
                    first_partner: int, first_person: int, at: datetime) -> None:
    """One run's invitations and answers, each table by one INSERT … SELECT per question."""
    n = numbers(dialect, invited).c.n
    await store.tx.count(INVITATION.insert().from_select(
        ["run_id", "person_id", "partner_id", "invited_at"],
        sa.select(sa.literal(run_id), first_person + n, first_partner + n % partners,
                  sa.literal(at, INVITATION.c.invited_at.type)),
    ))
    for qid, kind in (("satisfaction", "rating"), ("role", "choice"), ("recommend", "nps"), ("better", "text")):
        n = numbers(dialect, responses).c.n
        value: Any = sa.null()
        choice: Any = sa.null()
        text: Any = sa.null()
        if kind == "rating":
            value = 1 + (n * 7 + r) % 5
        elif kind == "nps":
            value = (n * 13 + r) % 11
        elif kind == "choice":
            choice = sa.case((n % 3 == 0, "order taker"), (n % 3 == 1, "trusted advisor"), else_="strategic partner")
        else:
            text = sa.literal("Answer number ") + sa.cast(n, sa.String)
        rows = sa.select(
            sa.literal(run_id), first_partner + n % partners, sa.literal(qid), sa.literal(kind),
            sa.literal(f"r{r}-") + sa.cast(n, sa.String), sa.cast(value, sa.Integer), sa.cast(choice, sa.String),
            sa.cast(text, sa.Text),
        )
        await store.tx.count(ANSWER.insert().from_select(
            ["run_id", "partner_id", "question_id", "kind", "response_id", "value", "choice", "text"], rows))


async def measure(db: Database, repeat: int) -> tuple[list[float], Any]:
    timings: list[float] = []
    found = None
    for _ in range(repeat):
        started = time.perf_counter()
        async with db.transaction() as store:
            survey = await store.survey_results.survey("partner-pulse")
            assert survey is not None and survey.id is not None
            latest = (await store.survey_results.runs(survey.id))[-1]
            found = await store.survey_results.results(survey, latest, now=datetime.now(UTC), texts=5)
        timings.append(time.perf_counter() - started)
    return timings, found


async def run(url: str, label: str, args: argparse.Namespace) -> str:
    if sa.make_url(url).get_backend_name() == "postgresql":
        url = await create_database(url, "brm_bench_surveys", replace=True)
    db = Database.connect(url)
    try:
        await migrate.upgrade(db)
        started = time.perf_counter()
        await load(db, runs=args.runs, answers=args.answers, partners=args.partners)
        loaded = time.perf_counter() - started
        async with db.transaction() as store:
            # Fresh statistics, as autovacuum (PostgreSQL) or a periodic ANALYZE would give a table
            # this size; without them the planner guesses a few dozen rows a run. Not a statement of
            # the bot: a maintenance command of the benchmark, so plain text.
            await store.tx.count(sa.text("ANALYZE"))
        async with db.transaction() as store:
            total = int(await store.tx.scalar(sa.select(sa.func.count()).select_from(ANSWER)))
        await measure(db, 1)  # warm: statements compiled, pages cached
        timings, found = await measure(db, args.repeat)
    finally:
        await db.dispose()
    assert found is not None
    print(f"{label}: loaded {total:,} answers in {loaded:.1f} s; latest run: {found.overall.answered:,} responses, "
          f"overall satisfaction {found.overall.figure('satisfaction').average}", file=sys.stderr)
    median, worst = statistics.median(timings) * 1000, max(timings) * 1000
    return (f"| {label} | {args.runs} | {args.answers:,} | {total:,} | {args.partners} | {median:.0f} | {worst:.0f} |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=100_000, help="answers per run (4 a response)")
    parser.add_argument("--runs", type=int, default=1, help="runs of the survey; the latest is measured")
    parser.add_argument("--partners", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.db in ("sqlite", "both"):
            rows.append(await run(f"sqlite+aiosqlite:///{tmp}/bench.db", "SQLite (file, WAL)", args))
    if args.db in ("postgresql", "both"):
        try:
            rows.append(await run(POSTGRES, "PostgreSQL", args))
        except OSError as exc:
            print(f"PostgreSQL skipped: {exc}", file=sys.stderr)
    load1, load5, _ = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {load1:.1f} / {load5:.1f} (1 / 5 min)")
    print("| database | runs | answers a run | answers in all | partners | results median ms | slowest ms |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    asyncio.run(main())
