"""Builds the objects the commands need from the settings: database, engine, worker."""

from __future__ import annotations

import asyncio
import gc
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import asyncpg
import sqlalchemy as sa

from bot.delivery import DeliveryHours, DeliveryWorker
from bot.jobs import Scheduler, default_jobs
from bot.metrics import Metrics
from bot.settings import Settings
from conversations.engine import Engine
from conversations.flows import default_flows
from conversations.observe import NO_OBSERVER, Observer
from conversations.ports import Outbound
from storage import migrate
from storage.db import Database, DatabaseUrlError
from storage.tx import DatabaseUnavailable

log = logging.getLogger(__name__)
RETENTION_DAYS = 30


class StartupError(Exception):
    """The bot cannot start; the message says what to do."""


def database_problem(exc: BaseException) -> StartupError:
    """One line naming DATABASE_URL and what the database said (never the URL's password)."""
    if isinstance(exc, DatabaseUrlError):
        return StartupError(str(exc))
    cause = getattr(exc, "orig", None) or exc
    said = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return StartupError(f"DATABASE_URL: cannot use the database ({type(cause).__name__}: {said[:300]})")


DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    sqlite3.Error,
    DatabaseUnavailable,
    DatabaseUrlError,
    sa.exc.DBAPIError,
    asyncpg.PostgresError,  # raised as is when a connection is refused (unknown role, database)
)


def connect_database(url: str) -> Database:
    """The database of ``DATABASE_URL``, or one line saying what is wrong with the URL."""
    try:
        return Database.connect(url)
    except DatabaseUrlError as exc:
        raise StartupError(str(exc)) from None


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    engine: Engine
    worker: DeliveryWorker
    adapters: dict[str, Outbound] = field(default_factory=dict)
    metrics: Metrics | None = None  # BRM_BOT_METRICS=on

    @property
    def observer(self) -> Observer:
        return self.metrics if self.metrics is not None else NO_OBSERVER

    def scheduler(self) -> Scheduler:
        """The scheduled jobs on this runtime's database, waking its delivery worker."""
        s = self.settings
        jobs = default_jobs(
            nudges=s.nudges_schedule, draft_reminders=s.draft_reminders_schedule, digest=s.digest_schedule,
            value_checks=s.value_checks_schedule, value_check_days=s.value_check_days,
            value_reminder_days=s.value_reminder_days, leadership_channel=s.leadership_channel,
        )
        return Scheduler(self.db, jobs, clock=utcnow, on_queued=self.worker.wake,
                         default_timezone=self.settings.timezone)


def freeze_startup_heap() -> None:
    """Move everything alive after start-up out of the garbage collector's sight.

    The libraries a server imports (bolt, botbuilder, SQLAlchemy) leave a large heap that never
    becomes garbage, and each full collection walked all of it: a pause every request in flight
    waited out (seen in the Slack benchmark's ack p99). Frozen, a full
    collection only walks what was allocated since.
    """
    gc.collect()
    gc.freeze()


async def prepare_database(db: Database, *, upgrade_empty: bool = True) -> None:
    """Upgrade an empty database; refuse to run on one that is behind (say what to run)."""
    current = await migrate.current_revision(db)
    head = migrate.head_revision()
    if current == head:
        return
    if current is None and upgrade_empty:
        await migrate.upgrade(db)
        return
    raise StartupError(
        f"the database schema is at revision {current or 'none'}, this version needs {head}: "
        "run `brm-bot db upgrade` first"
    )


@asynccontextmanager
async def open_runtime(settings: Settings, *, fallback: Outbound | None = None) -> AsyncIterator[Runtime]:
    db = connect_database(settings.database_url)
    try:
        try:
            await prepare_database(db)
            await db.check_writable()
        except DATABASE_ERRORS as exc:
            raise database_problem(exc) from None
        holder: list[DeliveryWorker] = []
        metrics = Metrics() if settings.metrics else None
        observer: Observer = metrics if metrics is not None else NO_OBSERVER
        engine = Engine(
            db,
            default_flows(),
            clock=utcnow,
            default_timezone=settings.timezone,
            on_queued=lambda: holder[0].wake() if holder else None,
            observer=observer,
            brm_channel=settings.brm_channel,
        )
        worker = DeliveryWorker(
            db,
            {},
            clock=utcnow,
            fallback=fallback,
            hours=DeliveryHours.parse(settings.delivery_hours),
            weekly_budget=settings.weekly_budget,
            default_timezone=settings.timezone,
            observer=observer,
        )
        holder.append(worker)
        yield Runtime(settings=settings, db=db, engine=engine, worker=worker, metrics=metrics)
    finally:
        await db.dispose()


@dataclass(frozen=True, slots=True)
class Swept:
    events: int
    states: int
    outbox: int


async def sweep(db: Database, *, now: datetime, keep: timedelta) -> Swept:
    """Delete what is older than ``keep``: processed event ids, conversation states (expired drafts),
    delivered outbox messages. Platforms retry within minutes, and a draft expires after a day."""
    before = now - keep
    async with db.transaction() as store:
        events = await store.events.forget_before(before=before)
        states = await store.state.forget_before(before=before)
        outbox = await store.outbox.forget_sent_before(before=before)
    return Swept(events=events, states=states, outbox=outbox)


async def housekeeping(
    db: Database,
    *,
    clock: Callable[[], datetime] = utcnow,
    keep: timedelta = timedelta(days=RETENTION_DAYS),
    every: float = 3600.0,
    observer: Observer = NO_OBSERVER,
) -> None:
    """Run :func:`sweep` every ``every`` seconds (``BRM_BOT_RETENTION_DAYS`` sets ``keep``)."""
    while True:
        started = time.perf_counter()
        try:
            swept = await sweep(db, now=clock(), keep=keep)
            if swept.events or swept.states or swept.outbox:
                log.info(
                    "retention: deleted %d processed event ids, %d conversation states and %d delivered messages "
                    "older than %d days", swept.events, swept.states, swept.outbox, keep.days,
                )
            observer.job_run("housekeeping", result="ok", seconds=time.perf_counter() - started)
        except Exception as exc:
            if isinstance(exc, DATABASE_ERRORS):
                observer.database_error("housekeeping")
            observer.job_run("housekeeping", result="error", seconds=time.perf_counter() - started)
            log.exception("housekeeping failed; trying again later")
        await asyncio.sleep(every)
