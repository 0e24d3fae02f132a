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

With ``--invitations N`` it measures the other half of the issue's scale target instead: N
recipients invited through the outbox and delivered at the fake platform's rate limit::

    python bench/surveys.py --invitations 1000 --db sqlite --platform slack
    python bench/surveys.py --invitations 10000 --db postgresql --platform slack --kill

N people are written set-based into ``--partners`` partners, each with a Slack (or Teams)
identity the fake platform knows (Teams: with a stored personal-chat reference). The shipped
``partner-pulse`` is applied with its audience set to ``{partners: [every partner]}`` and a
daily schedule that fired an hour ago. Then the ``survey-invitations`` job runs through the
real :class:`bot.jobs.Scheduler` (timed: queueing N invitations), once more in the same slot
(its claim refuses it), and then twice at the same moment as ``brm-bot jobs run`` (forced),
from the first scheduler and from a second one on a database connection of its own: both
must queue nothing. The delivery worker of ``brm-bot serve`` (``tests/bot/outbox_worker.py``,
a process of its own) sends them to the rate-limited fake at ``--rate`` a second, the
worker paced at the same rate; with ``--kill`` it is killed (SIGKILL) when half have arrived
and started again at once. The worker runs with no delivery hours and no weekly budget (as
``BRM_BOT_DELIVERY_HOURS`` open all week and no budget would): the bench measures throughput,
not the calendar. Counted at the fake: each person's invitations, so lost (no invitation) and
duplicated (more than one) are exact, and the achieved rate against the allowed one.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.outbox import POLL, Worker
from bot.jobs import Scheduler
from bot.runtime import utcnow
from bot.survey_jobs import survey_jobs
from conversations.surveys import default_definition_text, parse_definition
from storage import migrate
from storage.admin import create_database, drop_database
from storage.db import Database
from storage.models import (
    BusinessPartner,
    ConversationReference,
    Identity,
    OutboxMessage,
    Person,
    Survey,
    SurveyAnswer,
    SurveyInvitation,
    SurveyRun,
)
from storage.store import Store, table
from tests.bot.outbox_worker import BOT_ID, TENANT, LimitedConnector, LimitedSlack, unsent
from tests.slack.fake_slack import TEAM_ID

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
IDENTITY, REFERENCE, OUTBOX = table(Identity), table(ConversationReference), table(OutboxMessage)
CHUNK = 2_000  # rows a multi-row INSERT: under both databases' limit of bound parameters


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


# --- invitations: N recipients through the outbox at the platform's rate limit ----------------------


def slack_user(n: int) -> str:
    return f"UB{n}"


def teams_user(n: int) -> str:
    return f"29:bench-{n}"


def _recipient(platform_name: str, where: str) -> int | None:
    """The person number a message went to: Slack's DM channel ``DB<n>``, Teams' ``a:bench-<n>``."""
    prefix = "DB" if platform_name == "slack" else "a:bench-"
    return int(where[len(prefix):]) if where.startswith(prefix) and where[len(prefix):].isdigit() else None


async def recipients(db: Database, *, people: int, partners: int, platform_name: str, service_url: str) -> int:
    """``people`` people (set-based) in ``partners`` partners, each with an identity on the
    platform (Teams: and a personal-chat reference); returns the first person's id, person
    ``n`` having id ``first + n``."""
    now = datetime.now(UTC)
    async with db.transaction() as store:
        dialect = store.tx.dialect
        first_partner = 0
        for i in range(partners):
            partner = BusinessPartner(name=f"Partner {i:03d}", created_at=now)
            await store.add(partner)
            first_partner = first_partner or (partner.id or 0)
        n = numbers(dialect, people).c.n
        rows = sa.select(
            sa.literal("Bench person ") + sa.cast(n, sa.String),
            sa.literal("p") + sa.cast(n, sa.String) + sa.literal("@bench.test"),
            sa.literal("requester"), sa.literal("UTC"), first_partner + n % partners,
            sa.literal(now, PERSON.c.created_at.type),
        )
        await store.tx.count(PERSON.insert().from_select(
            ["name", "email", "role", "time_zone", "partner_id", "created_at"], rows))
        first = int(await store.tx.scalar(sa.select(sa.func.min(PERSON.c.id))))
        workspace = TEAM_ID if platform_name == "slack" else TENANT
        user = slack_user if platform_name == "slack" else teams_user
        for start in range(0, people, CHUNK):
            chunk = range(start, min(people, start + CHUNK))
            await store.tx.count(IDENTITY.insert().values([
                {"person_id": first + i, "platform": platform_name, "workspace": workspace, "user_id": user(i),
                 "created_at": now} for i in chunk]))
            if platform_name == "teams":
                await store.tx.count(REFERENCE.insert().values([
                    {"platform": "teams", "workspace": TENANT, "scope": "user", "target": teams_user(i),
                     "reference": {"user": {"id": teams_user(i)}, "bot": {"id": BOT_ID}, "channelId": "msteams",
                                   "serviceUrl": service_url,
                                   "conversation": {"id": f"a:bench-{i}", "conversationType": "personal",
                                                    "tenantId": TENANT, "tenantID": TENANT}},
                     "updated_at": now} for i in chunk]))
        # The survey: the shipped one, its audience every partner, its schedule daily at the hour
        # that began an hour or two ago (UTC, everyone's zone), applied two days before.
        names = ", ".join(f"Partner {i:03d}" for i in range(partners))
        fired = now - timedelta(hours=1)
        text = (default_definition_text()
                .replace("audience: executives ", f"audience: {{partners: [{names}]}} ")
                .replace('schedule: {day: "1st mon", hour: 10}', f"schedule: {{hour: {fired.hour}}}"))
        definition = parse_definition(text, source="the benchmark")
        assert definition.audience.kind == "partners" and dict(definition.schedule) == {"hour": str(fired.hour)}
        await store.surveys.apply(name=definition.name, title=definition.title, definition=definition.to_json(),
                                  fingerprint=definition.fingerprint(), now=now - timedelta(days=2))
        await store.tx.count(sa.text("ANALYZE"))  # maintenance of the benchmark, as autovacuum would
    return first


async def _queued(db: Database) -> tuple[int, int]:
    """(invitations queued in the outbox, distinct people they go to): counted in SQL."""
    async with db.transaction() as store:
        (row,) = await store.rows(sa.select(sa.func.count(), sa.func.count(sa.distinct(OUTBOX.c.recipient_id)))
                                  .where(OUTBOX.c.kind == "survey-invitation"))
    return int(row[0]), int(row[1])


async def invitations_leg(args: argparse.Namespace, folder: Path) -> tuple[str, str]:
    """Queue ``--invitations`` invitations with the job, deliver them, count them at the fake:
    (the job's row, the delivery's row)."""
    people, platform_name = args.invitations, args.platform
    if args.db == "sqlite":
        url, pg_name = f"sqlite+aiosqlite:///{folder / 'invitations.db'}", None
    else:
        pg_name = "brm_bench_invitations"
        url = await create_database(POSTGRES, pg_name, replace=True)
    db = Database.connect(url)
    second = Database.connect(url)
    runner: web.AppRunner | None = None
    fake: LimitedSlack | LimitedConnector
    worker_args = ["--lease", str(args.lease), "--rate", str(args.rate)]
    try:
        await migrate.upgrade(db)
        if platform_name == "slack":
            fake = LimitedSlack({slack_user(n): {"email": f"p{n}@bench.test", "name": f"Bench person {n}"}
                                 for n in range(people)}, rate=args.rate)
            await fake.start()
            worker_args += ["--slack-api", fake.api_url]
            service_url = ""
        else:
            fake = LimitedConnector(rate=args.rate)
            runner = web.AppRunner(fake.app(), access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            service_url = f"http://127.0.0.1:{runner.addresses[0][1]}/"
            worker_args += ["--teams"]
        started = time.perf_counter()
        await recipients(db, people=people, partners=args.partners, platform_name=platform_name,
                         service_url=service_url)
        print(f"  {people:,} recipients written in {time.perf_counter() - started:.1f} s", file=sys.stderr)

        one, two = Scheduler(db, survey_jobs(), clock=utcnow), Scheduler(second, survey_jobs(), clock=utcnow)
        started = time.perf_counter()
        queued = await one.tick("survey-invitations", "UTC")
        job_seconds = time.perf_counter() - started
        again = await one.tick("survey-invitations", "UTC")
        started = time.perf_counter()
        forced = await asyncio.gather(one.run_now("survey-invitations"), two.run_now("survey-invitations"))
        rerun_seconds = time.perf_counter() - started
        in_outbox, distinct = await _queued(db)
        print(f"  the job queued {queued:,} in {job_seconds:.1f} s; again in the same slot: {again}; "
              f"forced from two schedulers at once: {forced[0]} + {forced[1]} in {rerun_seconds:.1f} s; "
              f"outbox: {in_outbox:,} invitations to {distinct:,} people", file=sys.stderr)
        job_row = (f"| {platform_name} | {args.db} | {people:,} | {queued:,} | {job_seconds:.1f} "
                   f"| {people / job_seconds:,.0f} | {again} | {forced[0] + forced[1]} ({rerun_seconds:.1f} s) "
                   f"| {in_outbox:,} to {distinct:,} |")

        def arrived() -> int:
            return fake.delivered if isinstance(fake, LimitedConnector) else fake.count("chat.postMessage")

        worker = await Worker.start(url, worker_args)
        first = last = 0.0
        killed, restart, seen = False, 0.0, 0
        deadline = time.monotonic() + people / args.rate * 3 + 120
        while time.monotonic() < deadline:
            now_seen = arrived()
            if now_seen and not first:
                first = time.monotonic()
            if now_seen != seen:
                seen, last = now_seen, time.monotonic()
            if args.kill and not killed and seen >= people // 2:
                killed_at = time.monotonic()
                os.kill(worker.process.pid, signal.SIGKILL)
                await worker.stop()
                killed = True
                print(f"  killed the worker at {seen:,} invitations; restarting it", file=sys.stderr)
                worker = await Worker.start(url, worker_args)
                restart = time.monotonic() - killed_at
            if seen >= people and await unsent(db) == 0:
                break
            await asyncio.sleep(POLL)
        await asyncio.sleep(1.0)  # anything still on its way is counted too
        await worker.stop()
        left = await unsent(db)
        if left:
            print("".join(worker.output[-20:]), file=sys.stderr)
        if isinstance(fake, LimitedSlack):
            sent = [(c.args.get("channel", ""), c.text) for c in fake.called("chat.postMessage")]
        else:
            sent = [(c.conversation, c.text) for c in fake.messages]
        per_person = Counter(_recipient(platform_name, str(where)) for where, text in sent if "Partner pulse" in text)
        lost = sum(1 for n in range(people) if per_person[n] == 0)
        duplicates = sum(c - 1 for n, c in per_person.items() if n is not None and c > 1)
        strays = per_person[None] + (len(sent) - sum(per_person.values()))
        seconds = last - first
        rate = (seen - 1) / seconds if seconds else 0.0
        up = seconds - restart
        running = (seen - 1) / up if up > 0 else 0.0
        run = f"SIGKILL at half, restarted ({restart:.1f} s)" if killed else "straight through"
        delivery_row = (f"| {platform_name} | {args.db} | {run} | {people:,} | {seconds:.1f} "
                        f"| {rate:.2f} ({100 * rate / args.rate:.1f}%) "
                        f"| {running:.2f} ({100 * running / args.rate:.1f}%) "
                        f"| {lost} | {duplicates} | {strays} | {fake.bucket.refused} | {left} |")
        if lost or duplicates or strays or left or running < 0.95 * args.rate or again or any(forced):
            delivery_row += ("\n\nTARGET MISSED: at least 95% of the allowed rate, zero lost, zero duplicates, "
                             "nothing queued twice")
        return job_row, delivery_row
    finally:
        await db.dispose()
        await second.dispose()
        if isinstance(fake, LimitedSlack):
            await fake.close()
        if runner is not None:
            await runner.cleanup()
        if pg_name is not None:
            await drop_database(POSTGRES, pg_name)


async def invitations(args: argparse.Namespace) -> None:
    load1, load5, _ = os.getloadavg()
    print(f"{args.invitations:,} invitations, {args.platform}, {args.db}, the platform allows {args.rate:g}/s"
          f"{', SIGKILL at half' if args.kill else ''} ...", file=sys.stderr)
    with tempfile.TemporaryDirectory() as folder:
        job_row, delivery_row = await invitations_leg(args, Path(folder))
    end1, _, _ = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average {load1:.1f} / {load5:.1f} (1 / 5 min) before, {end1:.1f} after")
    print("| platform | database | recipients | queued by the job | job seconds | recipients/s "
          "| again, same slot | forced twice at once | in the outbox |")
    print("|---|---|---|---|---|---|---|---|---|")
    print(job_row)
    print()
    print("| platform | database | run | invitations | seconds | delivered/s (of allowed) | while a worker was up "
          "| lost | duplicates | strays | 429s | unsent |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    print(delivery_row)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=int, default=100_000, help="answers per run (4 a response)")
    parser.add_argument("--runs", type=int, default=1, help="runs of the survey; the latest is measured")
    parser.add_argument("--partners", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--db", choices=("sqlite", "postgresql", "both"), default="both")
    parser.add_argument("--invitations", type=int, default=0,
                        help="instead of results: this many recipients invited and delivered through the outbox")
    parser.add_argument("--platform", choices=("slack", "teams"), default="slack")
    parser.add_argument("--rate", type=float, default=50.0, help="messages a second the fake platform allows")
    parser.add_argument("--kill", action="store_true", help="SIGKILL the delivery worker half-way and restart it")
    parser.add_argument("--lease", type=float, default=3.0, help="seconds a claimed batch stays the worker's")
    args = parser.parse_args()
    if args.invitations:
        if args.db == "both":
            parser.error("--invitations runs on one database: --db sqlite or --db postgresql")
        await invitations(args)
        return
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
