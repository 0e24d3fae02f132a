"""Scheduled jobs: the bot speaks first, once per period in the whole deployment.

Each job has a schedule in its recipients' own time zones (``mon-fri 09:00``). At start,
``Scheduler`` registers one APScheduler cron trigger per (job, time zone) from code (nothing
pickled; an in-memory job store). A run first claims its ``(job, period)`` row, the period
being the local date and the zone, so replicas firing the same tick run it once; then it
queues its messages in the outbox (unique keys: a re-run queues nothing twice) and marks the
run finished. A run that died half-way is taken over by the next resume tick (every few
minutes); a run missed while no process was up is caught up at start (misfire grace and
coalescing cover a loop that was merely late).

Example::

    scheduler = Scheduler(db, default_jobs(), clock=utcnow, on_queued=worker.wake)
    await scheduler.start()
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from datetime import time as clock_time
from typing import ClassVar

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.delivery import zone
from conversations import codec
from conversations.digest import KIND as DIGEST_KIND
from conversations.digest import Week, gather, render, scope_for
from conversations.engine import STATE_TTL
from conversations.flows.relationships import nudge_choices
from conversations.flows.value import KIND as VALUE_KIND
from conversations.flows.value import value_question
from conversations.health import judge
from conversations.messages import Choices, Option, Reply, Text, TextStyle
from storage.db import Database
from storage.models import Person, Role
from storage.store import Store

log = logging.getLogger(__name__)

JOB_LEASE = timedelta(minutes=10)
MISFIRE_GRACE = timedelta(hours=12)
RESUME_EVERY = timedelta(minutes=5)
DIGEST_PRIORITY = 3
NUDGE_PRIORITY = 2
VALUE_PRIORITY = 1
REMINDER_PRIORITY = 1
_SCHEDULE = re.compile(r"^\s*([a-z]{3}(?:-[a-z]{3})?(?:,[a-z]{3}(?:-[a-z]{3})?)*|\*)\s+(\d{1,2}):(\d{2})\s*$")

Builder = Callable[[Store, Person, datetime, str], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Schedule:
    """``mon-fri 09:00``: days (cron's day_of_week) and a local time."""

    days: str
    at: clock_time

    @classmethod
    def parse(cls, text: str) -> Schedule:
        match = _SCHEDULE.match(text.casefold())
        if match is None:
            raise ValueError(f"{text!r} is not like 'mon-fri 09:00'")
        try:
            at = clock_time(int(match.group(2)), int(match.group(3)))
        except ValueError:
            raise ValueError(f"{text!r}: the time is HH:MM from 00:00 to 23:59") from None
        return cls(match.group(1), at)

    zoned: ClassVar[bool] = True  # it fires at a local time: one trigger per recipients' zone

    def trigger(self, tz: str) -> CronTrigger:
        return CronTrigger(day_of_week=self.days, hour=self.at.hour, minute=self.at.minute, timezone=zone(tz))

    def period(self, moment: datetime, tz: str) -> str:
        return period_of(moment, tz)

    def __str__(self) -> str:
        return f"{self.days} {self.at:%H:%M}"


@dataclass(frozen=True, slots=True)
class Every:
    """Every ``minutes`` minutes, the same moment everywhere: for jobs whose subjects carry their
    own schedules (each survey's cron fields, in each recipient's zone). Its period is the slot,
    so replicas ticking the same slot run it once."""

    minutes: int
    what: str = ""  # what decides the real moments, for ``brm-bot jobs list``
    zoned: ClassVar[bool] = False

    def trigger(self, tz: str) -> CronTrigger:
        return CronTrigger(minute=f"*/{self.minutes}" if self.minutes < 60 else "0", timezone=UTC)

    def period(self, moment: datetime, tz: str) -> str:
        slot = moment.astimezone(UTC).replace(second=0, microsecond=0)
        slot -= timedelta(minutes=slot.minute % self.minutes if self.minutes < 60 else slot.minute)
        return f"{slot:%Y-%m-%dT%H:%M} {tz}"

    def __str__(self) -> str:
        every = f"every {self.minutes} minutes" if self.minutes < 60 else "every hour"
        return f"{every} ({self.what})" if self.what else every


@dataclass(frozen=True, slots=True)
class Job:
    """A job: whom it considers, and what it queues for one of them in one period."""

    name: str
    schedule: Schedule | Every
    recipients: Callable[[Store, datetime], Awaitable[list[Person]]]  # whom it considers at that moment
    build: Builder
    prepare: Callable[[Store, datetime], Awaitable[int]] | None = None  # once per run, before anyone

# --- what the jobs queue --------------------------------------------------------------------------


async def build_nudge(store: Store, brm: Person, now: datetime, period: str) -> int:
    """One consolidated message to a BRM: each item needing attention, its reason and its actions.

    Snoozed items stay out until their snooze ends; nothing to say means no message.
    """
    assert brm.id is not None
    snoozed = {s.item for s in await store.relationships.snoozed(brm_id=brm.id, now=now)}
    items: list[tuple[str, str, str | None]] = []
    views = await store.relationships.of_brm(brm.id)
    pulse = await store.survey_results.satisfaction(now=now) if views else {}
    for view in views:
        health = judge(view.relationship, await store.relationships.open_requests(view.partner.id or 0), now=now,
                       pulse=pulse.get(view.partner.id or 0))
        for signal in health.signals:
            if signal.item in snoozed:
                continue
            key = f"DR-{signal.request_id}" if signal.request_id is not None else None
            items.append((signal.item, f"*{view.partner.name}* ({health.level}): {signal.reason}", key))
    if not items:
        return 0
    blocks: list[Text | Choices] = [Text("What needs your attention", TextStyle.HEADING)]
    blocks.extend(nudge_choices(item, request_key=key, reason=reason) for item, reason, key in items)
    reply = Reply(blocks=tuple(blocks))
    added = await store.outbox.enqueue(kind="nudge", subject=f"brm:{brm.id}", period=period, recipient_id=brm.id,
                                       payload=codec.reply_to_json(reply), now=now, priority=NUDGE_PRIORITY)
    return int(added)


async def build_draft_reminders(store: Store, person: Person, now: datetime, period: str) -> int:
    """One reminder for each intake this person left on an earlier day and that has not expired."""
    assert person.id is not None
    tz = zone(person.time_zone)
    today = datetime.combine(now.astimezone(tz).date(), clock_time(0), tzinfo=tz).astimezone(now.tzinfo)
    added = 0
    identities = {(i.platform, i.workspace, i.user_id) for i in await store.people.identities(person.id)}
    for key, saved in await store.state.left(flow="intake", after=now - STATE_TTL, before=today):
        if (key.platform, key.workspace, key.user_id) not in identities:
            continue
        title = str(saved.data.get("title") or "your demand request")
        value = "|".join((key.platform, key.workspace, key.channel, key.user_id, key.thread, str(saved.version)))
        reply = Reply.of(
            Text(f"You started “{title}” and left it half-way. Want to finish it?"),
            Choices(id="drafts:act", prompt="Your draft is kept until it has been quiet for a day.",
                    options=(Option(f"continue|{value}", "Continue", primary=True),
                             Option(f"discard|{value}", "Discard", danger=True))),
        )
        subject = f"draft:{key.platform}:{key.channel}:{key.user_id}:{saved.version}"
        added += int(await store.outbox.enqueue(kind="draft-reminder", subject=subject, period=period,
                                                recipient_id=person.id, payload=codec.reply_to_json(reply), now=now,
                                                priority=REMINDER_PRIORITY))
    return added


def digest_builder(*, channel: str | None = None) -> Builder:
    """The ``digest`` job for one leader: the last complete week in their zone, once per ISO week.

    The outbox key carries the week, so a schedule that fires more often than weekly, a second
    replica or a re-run queues nothing twice. With ``channel`` (``BRM_BOT_LEADERSHIP_CHANNEL``) the
    digest goes to that channel instead, once a week: the first leader whose run gets there queues
    it (in their zone; every leader's scope is the whole organisation), the others find it queued.
    """

    async def build(store: Store, leader: Person, now: datetime, period: str) -> int:
        assert leader.id is not None
        scope = scope_for(leader)
        if scope is None:
            return 0
        tz = zone(leader.time_zone)
        week = Week.last_complete(now, tz)
        subject = "leadership" if channel is not None else f"leader:{leader.id}"
        if await store.outbox.find(kind=DIGEST_KIND, subject=subject, recipient_id=None if channel else leader.id,
                                   channel=channel, period=str(week)) is not None:
            return 0  # sent already: spare the figures
        digest = await gather(store, scope, week=week, tz=tz, now=now, whose="Everyone's demand")
        reply = render(digest, tz=tz, now=now)
        added = await store.outbox.enqueue(
            kind=DIGEST_KIND, subject=subject, period=str(week), payload=codec.reply_to_json(reply), now=now,
            priority=DIGEST_PRIORITY, **({"channel": channel} if channel else {"recipient_id": leader.id}),
        )
        return int(added)

    return build


def value_checks_builder(*, after: timedelta, remind_after: timedelta) -> Builder:
    """The ``value-checks`` job for one requester: ask about requests delivered ``after`` ago, and
    remind once ``remind_after`` later. The value check row (unique per request) and the outbox
    key make a replica or a retry ask nothing twice."""

    async def build(store: Store, person: Person, now: datetime, period: str) -> int:
        assert person.id is not None
        added = 0
        for request in await store.values.to_ask(requester_id=person.id, delivered_before=now - after):
            assert request.id is not None
            if await store.values.ask(request_id=request.id, requester_id=person.id, now=now):
                added += int(await store.outbox.enqueue(
                    kind=VALUE_KIND, subject=request.key, period="ask", recipient_id=person.id,
                    payload=codec.reply_to_json(value_question(request)), now=now, priority=VALUE_PRIORITY))
        for request_id, _, _ in await store.values.to_remind(requester_id=person.id, asked_before=now - remind_after):
            delivered = await store.requests.get(request_id)
            if delivered is not None and await store.values.remind(request_id=request_id, now=now):
                added += int(await store.outbox.enqueue(
                    kind=VALUE_KIND, subject=delivered.key, period="reminder", recipient_id=person.id,
                    payload=codec.reply_to_json(value_question(delivered, reminder=True)), now=now,
                    priority=VALUE_PRIORITY))
        return added

    return build


async def _leaders(store: Store, now: datetime) -> list[Person]:
    """Leaders get the digest. Admins run the bot rather than the BRM practice, so they do not;
    ``brm-bot digest preview --leader ADMIN`` shows them the same message."""
    return await store.directory.with_role(Role.LEADER)


async def _requesters_of_delivered(store: Store, now: datetime) -> list[Person]:
    return await store.values.requesters()


async def _brms(store: Store, now: datetime) -> list[Person]:
    return await store.relationships.brms()


async def _everyone(store: Store, now: datetime) -> list[Person]:
    return await store.people.all()


def default_jobs(
    *,
    nudges: str = "mon-fri 09:00",
    draft_reminders: str = "mon-fri 09:30",
    digest: str = "mon 08:00",
    value_checks: str = "mon-fri 10:00",
    value_check_days: int = 30,
    value_reminder_days: int = 7,
    leadership_channel: str | None = None,
) -> list[Job]:
    from bot.survey_jobs import survey_jobs

    return [
        Job("nudges", Schedule.parse(nudges), _brms, build_nudge),
        Job("draft-reminders", Schedule.parse(draft_reminders), _everyone, build_draft_reminders),
        Job("digest", Schedule.parse(digest), _leaders, digest_builder(channel=leadership_channel)),
        Job("value-checks", Schedule.parse(value_checks), _requesters_of_delivered,
            value_checks_builder(after=timedelta(days=value_check_days),
                                 remind_after=timedelta(days=value_reminder_days))),
        *survey_jobs(),
    ]


# --- running them ---------------------------------------------------------------------------------


def period_of(moment: datetime, tz: str) -> str:
    """The period a run covers: the local date of its scheduled moment, and the zone."""
    return f"{moment.astimezone(zone(tz)).date().isoformat()} {tz}"


class Scheduler:
    """Runs the jobs on their schedules inside ``brm-bot serve`` (an ``AsyncIOScheduler``)."""

    def __init__(
        self,
        db: Database,
        jobs: Sequence[Job],
        *,
        clock: Callable[[], datetime],
        on_queued: Callable[[], None] | None = None,
        default_timezone: str = "UTC",
    ) -> None:
        self.db = db
        self.jobs = {job.name: job for job in jobs}
        self._clock = clock
        self._on_queued = on_queued
        self._default_tz = default_timezone
        self.aps = AsyncIOScheduler(
            timezone="UTC",
            job_defaults={"misfire_grace_time": int(MISFIRE_GRACE.total_seconds()), "coalesce": True,
                          "max_instances": 1},
        )

    async def zones(self, job: Job) -> list[str]:
        if not job.schedule.zoned:
            return ["UTC"]
        async with self.db.transaction() as store:
            people = await job.recipients(store, self._clock())
        return sorted({p.time_zone or self._default_tz for p in people} or {self._default_tz})

    async def start(self) -> None:
        """Register every (job, zone) trigger, catch up what was missed, and start ticking."""
        await self.register()
        self.aps.add_job(self.maintain, IntervalTrigger(seconds=int(RESUME_EVERY.total_seconds())), id="resume")
        await self.catch_up()
        await self.resume()
        self.aps.start()

    async def register(self) -> list[str]:
        """Add a trigger for each (job, zone) that has none yet; returns their ids.

        Called at start and every few minutes: people imported (or moved to a new time zone)
        while the bot runs get their schedules without a restart.
        """
        added = []
        for job in self.jobs.values():
            for tz in await self.zones(job):
                trigger_id = f"{job.name}@{tz}"
                if self.aps.get_job(trigger_id) is None:
                    self.aps.add_job(self.tick, job.schedule.trigger(tz), args=(job.name, tz), id=trigger_id,
                                     name=job.name)
                    added.append(trigger_id)
        return added

    async def maintain(self) -> None:
        """The periodic tick: schedules for new time zones, then runs that died half-way."""
        await self.register()
        await self.resume()

    def shutdown(self) -> None:
        if self.aps.running:
            self.aps.shutdown(wait=False)

    async def tick(self, name: str, tz: str, moment: datetime | None = None) -> int:
        """One scheduled firing: run ``name`` for the recipients in ``tz``, once per period."""
        moment = moment or self._clock()
        return await self.run(name, self.jobs[name].schedule.period(moment, tz), tz=tz)

    async def catch_up(self) -> int:
        """Run what should have fired since the last start (within the misfire grace), once."""
        now = self._clock()
        done = 0
        for job in self.jobs.values():
            for tz in await self.zones(job):
                trigger = job.schedule.trigger(tz)
                last = last_fire(trigger, now, now - MISFIRE_GRACE)
                if last is not None:
                    done += await self.run(job.name, job.schedule.period(last, tz), tz=tz)
        return done

    async def resume(self) -> int:
        """Finish runs that died half-way (lease run out, never finished)."""
        async with self.db.transaction() as store:
            unfinished = await store.jobs.unfinished(now=self._clock())
        done = 0
        for run in unfinished:
            if run.job in self.jobs:
                tz = run.period.split(" ", 1)[1] if " " in run.period else None
                done += await self.run(run.job, run.period, tz=tz)
        return done

    async def run(self, name: str, period: str, *, tz: str | None = None, force: bool = False) -> int:
        """Claim (name, period), queue the job's messages, finish the run; returns how many were queued.

        Without ``tz`` every recipient is considered (``brm-bot jobs run``).
        """
        job = self.jobs[name]
        now = self._clock()
        token = uuid.uuid4().hex
        async with self.db.transaction() as store:
            if not await store.jobs.claim(job=name, period=period, token=token, now=now,
                                          lease_until=now + JOB_LEASE, force=force):
                return 0
        queued = 0
        if job.prepare is not None:
            async with self.db.transaction() as store:
                await job.prepare(store, now)
        async with self.db.transaction() as store:
            recipients = await job.recipients(store, now)
        for person in recipients:
            if tz is not None and job.schedule.zoned and (person.time_zone or self._default_tz) != tz:
                continue
            async with self.db.transaction() as store:  # one person at a time: a crash keeps what was queued
                queued += await job.build(store, person, now, period.split(" ", 1)[0])
        async with self.db.transaction() as store:
            if not await store.jobs.finish(job=name, period=period, token=token, now=self._clock(), enqueued=queued):
                log.warning("job %s for %s: another process took the run over", name, period)
        log.info("job %s for %s queued %d messages", name, period, queued)
        if queued and self._on_queued is not None:
            self._on_queued()
        return queued

    async def run_now(self, name: str) -> int:
        """``brm-bot jobs run NAME``: every recipient, today's period, whatever the claims say."""
        now = self._clock()
        return await self.run(name, f"{now.date().isoformat()} manual", force=True)

    async def listing(self) -> list[tuple[str, str, datetime | None, datetime | None]]:
        """(job, schedule, last run, next run) for ``brm-bot jobs list``."""
        async with self.db.transaction() as store:
            last = await store.jobs.last_runs()
        now = self._clock()
        out = []
        for job in self.jobs.values():
            zones = await self.zones(job)
            upcoming = [job.schedule.trigger(tz).get_next_fire_time(None, now) for tz in zones]
            nearest = min((u for u in upcoming if u is not None), default=None)
            schedule = f"{job.schedule} in each recipient's time zone ({', '.join(zones)})" if job.schedule.zoned \
                else str(job.schedule)
            out.append((job.name, schedule, last.get(job.name, (None, None))[0], nearest))
        return out


def last_fire(trigger: CronTrigger, now: datetime, since: datetime) -> datetime | None:
    """The latest moment ``trigger`` fires in (since, now]."""
    last, cursor = None, since
    while True:
        upcoming = trigger.get_next_fire_time(last, cursor)
        if upcoming is None or upcoming > now:
            return last
        last, cursor = upcoming, upcoming + timedelta(seconds=1)
