"""The delivery worker: sends queued outbox messages through the platform adapters.

Messages are claimed with a lease token, sent outside any database transaction, and then
marked sent, retried with backoff and jitter, or given up on. Every write after the claim
checks the token: a worker whose lease ran out and was taken over writes nothing, so it
cannot mark a message another worker is sending. A crash mid-send leaves the lease to run
out and the message goes again; attempts count at claim time, so a message that kills its
worker stops at the retry limit. A message claimed again (``attempts`` above one) is sent with
``Address.maybe_sent_since``: Slack looks for the copy an earlier claim may have posted before
posting (exactly once); the Bot Connector cannot be asked, so Teams stays at least once.
The outbox row's unique (kind, subject, period, recipient) keeps a job that runs twice from
queueing it twice.

Before sending, the delivery calendar (``BRM_BOT_DELIVERY_HOURS``, in the recipient's own
time zone) and the weekly budget of proactive messages (``priority`` above 0) are checked: a
message outside hours waits for the next opening, one over budget is ``held`` until the
recipient's next week.

Example::

    worker = DeliveryWorker(db, {"slack": slack}, clock=utcnow, hours=DeliveryHours.parse("Mon-Fri 08:00-18:00"))
    sent = await worker.run_once()
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import random
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from conversations.codec import reply_from_json
from conversations.messages import Address, Delivered
from conversations.observe import NO_OBSERVER, Observer
from conversations.ports import RENDERED, DeliveryError, Outbound, SendsRendered, Unreachable
from storage.db import Database
from storage.models import OutboxHold, OutboxMessage, OutboxStatus, Person
from storage.tx import DATABASE_ERRORS

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 8
WEEKLY_BUDGET = 5
DEFAULT_HOURS = "Mon-Fri 08:00-18:00"
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^\s*(\w{3})(?:\s*-\s*(\w{3}))?\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def backoff(attempt: int, *, retry_after: float | None = None) -> timedelta:
    """Exponential backoff with full jitter; exactly what the platform asked for when it said."""
    if retry_after is not None:
        return timedelta(seconds=retry_after + random.uniform(0, 0.2))
    ceiling = min(30 * 2**attempt, 3600)
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))


@dataclass(frozen=True, slots=True)
class DeliveryHours:
    """When the bot may start a conversation, in the recipient's own time zone.

    ``DeliveryHours.parse("Mon-Fri 08:00-18:00")``; ``parse("always")`` is None (no calendar).
    """

    days: frozenset[int]
    start: clock_time
    end: clock_time
    text: str

    @classmethod
    def parse(cls, text: str) -> DeliveryHours | None:
        if text.strip().casefold() == "always":
            return None
        match = _HOURS.match(text.casefold())
        if match is None:
            raise ValueError(f"{text!r} is not like 'Mon-Fri 08:00-18:00' or 'always'")
        first, last, h1, m1, h2, m2 = match.groups()
        if first not in DAYS or (last or first) not in DAYS:
            raise ValueError(f"{text!r}: days are Mon, Tue, Wed, Thu, Fri, Sat, Sun")
        a, b = DAYS.index(first), DAYS.index(last or first)
        days = frozenset(range(a, b + 1)) if a <= b else frozenset([*range(a, 7), *range(0, b + 1)])
        try:
            start, end = clock_time(int(h1), int(m1)), clock_time(int(h2), int(m2))
        except ValueError:
            raise ValueError(f"{text!r}: times are HH:MM from 00:00 to 23:59") from None
        if start >= end:
            raise ValueError(f"{text!r}: the hours must start before they end")
        return cls(days, start, end, text.strip())

    def next_open(self, now: datetime, tz: ZoneInfo) -> datetime | None:
        """None when ``now`` is inside the hours, else the next moment they open (UTC)."""
        local = now.astimezone(tz)
        if local.weekday() in self.days and self.start <= local.time() < self.end:
            return None
        for ahead in range(8):
            day = (local + timedelta(days=ahead)).date()
            opening = datetime.combine(day, self.start, tzinfo=tz)
            if day.weekday() in self.days and opening > local:
                return opening.astimezone(now.tzinfo)
        raise AssertionError("delivery hours open at least one day a week")


def week_start(now: datetime, tz: ZoneInfo) -> datetime:
    """Monday 00:00 of ``now``'s week in ``tz`` (UTC-aware): a budget's week is the recipient's own."""
    local = now.astimezone(tz)
    monday = (local - timedelta(days=local.weekday())).date()
    return datetime.combine(monday, clock_time(0), tzinfo=tz).astimezone(now.tzinfo)


def zone(name: str, default: str = "UTC") -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(default)


class _Pace:
    """At most ``rate`` sends a second on one platform, on average, with bursts of up to one
    second's worth (as the platforms' own limits allow): a worker that fell behind for a moment
    (a slow database write, a busy machine) catches up instead of losing that time for good."""

    def __init__(self, rate: float | None) -> None:
        self._rate = rate or 0.0
        self._tokens = self._rate
        self._at = time.monotonic()

    async def wait(self) -> None:
        if not self._rate:
            return
        now = time.monotonic()
        self._tokens = min(self._rate, self._tokens + (now - self._at) * self._rate) - 1
        self._at = now
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self._rate)


class DeliveryWorker:
    def __init__(
        self,
        db: Database,
        adapters: Mapping[str, Outbound],
        *,
        clock: Callable[[], datetime],
        fallback: Outbound | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        hours: DeliveryHours | None = None,
        weekly_budget: int = WEEKLY_BUDGET,
        default_timezone: str = "UTC",
        rates: Mapping[str, float] | None = None,
        lease: timedelta = LEASE,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        self._db = db
        self._observer = observer
        self._adapters = dict(adapters)
        self._fallback = fallback
        self._clock = clock
        self._max_attempts = max_attempts
        self._hours = hours
        self._budget = weekly_budget
        self._default_tz = default_timezone
        self._rates = dict(rates or {})
        self._paces: dict[str, _Pace] = {}
        self._paused: dict[str, datetime] = {}
        self._lease = lease
        self._wake = asyncio.Event()
        self._put_back: list[datetime] = []  # when what this worker put back is due again
        self._stopping = False

    def register(self, adapter: Outbound, *, fallback: bool = False) -> None:
        """Deliver to ``adapter.platform`` identities through ``adapter``.

        A ``fallback`` adapter takes what no platform identity can reach (the terminal chat
        prints every notification, since everyone shares that one terminal).
        """
        self._adapters[adapter.platform] = adapter
        if fallback:
            self._fallback = adapter

    def wake(self) -> None:
        """Called when a turn queued something: deliver now instead of at the next poll."""
        self._wake.set()

    async def run_once(self, limit: int = 50) -> int:
        """Deliver what is due now; returns how many messages were sent."""
        if self._stopping:
            return 0
        now = self._clock()
        token = uuid.uuid4().hex
        async with self._db.transaction() as store:
            claimed = await store.outbox.claim(now=now, lease_until=now + self._lease, limit=limit, token=token)
        return await self._deliver_all(claimed)

    async def _deliver_all(self, claimed: list[OutboxMessage]) -> int:
        """Send a claimed batch in order; once asked to stop, give the rest back at once (due now,
        the attempt returned) so the next worker need not wait for this one's lease to run out."""
        sent = 0
        for message in claimed:
            if self._stopping:
                await self._defer(message, until=self._clock(), reason="the worker stopped before sending it")
                continue
            sent += await self._deliver(message)
        return sent

    async def drain(self, *, limit: int = 50) -> int:
        """Deliver until nothing is due now (``brm-bot jobs run`` before it exits)."""
        total = 0
        while True:
            now = self._clock()
            async with self._db.transaction() as store:
                claimed = await store.outbox.claim(now=now, lease_until=now + self._lease, limit=limit)
            if not claimed or self._stopping:
                return total + await self._deliver_all(claimed)
            total += await self._deliver_all(claimed)

    def stop(self) -> None:
        """Finish the message being sent, give the rest of the batch back, and leave ``run_forever``.

        ``brm-bot serve`` calls this on SIGTERM and waits for ``run_forever`` to return, so a
        stop never cuts a send between the platform's answer and the record of it.
        """
        self._stopping = True
        self._wake.set()

    async def run_forever(self, *, interval: float = 5.0) -> None:
        while not self._stopping:
            try:
                while await self.run_once() and not self._stopping:
                    pass
            except Exception as exc:
                if isinstance(exc, DATABASE_ERRORS):
                    self._observer.database_error("delivery")
                log.exception("delivery round failed; trying again in %.0f s", interval)
            if self._stopping:
                return
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=self._idle(interval))
            except TimeoutError:
                pass

    def _idle(self, interval: float) -> float:
        """How long to wait for work: ``interval``, or less when something this worker put back
        (a platform's pause, a retry) is due sooner, so the worker is there when it is."""
        now = self._clock()
        self._put_back = [at for at in self._put_back if at > now]
        if not self._put_back:
            return interval
        return min(interval, (min(self._put_back) - now).total_seconds())

    def _due_again(self, at: datetime | None) -> None:
        if at is not None and len(self._put_back) < 10_000:
            self._put_back.append(at)

    async def _recipient(self, message: OutboxMessage) -> tuple[Person | None, list[tuple[Outbound, Address]]]:
        """The person and where to reach them, best first: their platform identities, then
        Slack by email (someone who never wrote to the bot), then the fallback. A message to a
        channel (``slack:C0123ABCD``, ``teams:19:…@thread.tacv2``) has no person: just the channel."""
        if message.channel is not None or message.recipient_id is None:
            return None, self._channel_target(message.channel or "")
        async with self._db.transaction() as store:
            identities = await store.people.identities(message.recipient_id)
            person = await store.people.get(message.recipient_id)
        targets: list[tuple[Outbound, Address]] = []
        for identity in identities:
            adapter = self._adapters.get(identity.platform)
            if adapter is not None and identity.unreachable_at is None:
                address = Address(identity.platform, identity.workspace, user=identity.user_id)  # type: ignore[arg-type]
                targets.append((adapter, address))
        if not targets and any(i.platform in self._adapters for i in identities):
            return person, []  # the app was removed where they are (or its token revoked): nothing to try
        slack = self._adapters.get("slack")
        if slack is not None and person is not None and person.email and all(i.platform != "slack" for i in identities):
            targets.append((slack, Address("slack", "", email=person.email)))
        if not targets and self._fallback is not None and person is not None:
            fallback = self._fallback
            targets.append((fallback, Address(fallback.platform, "local", user=person.email or person.name)))
        return person, targets

    def _channel_target(self, channel: str) -> list[tuple[Outbound, Address]]:
        """Where a channel address points, if its platform is served here (else nowhere: unreachable).

        The workspace is left empty: a Slack channel id is the whole address for the bot's token,
        and the Teams adapter finds the tenant from the conversation reference it stored there.
        """
        platform, _, target = channel.partition(":")
        adapter = self._adapters.get(platform)
        if adapter is None or not target:
            return []
        return [(adapter, Address(adapter.platform, "", channel=target))]

    async def _deliver(self, message: OutboxMessage) -> int:
        assert message.id is not None
        now = self._clock()
        if message.attempts > self._max_attempts:
            await self._finish(message, OutboxStatus.FAILED, now, error=f"gave up after {self._max_attempts} attempts")
            return 0
        rendered = message.payload.get(RENDERED)
        if isinstance(rendered, str):
            return await self._deliver_rendered(message, rendered, now)
        person, targets = await self._recipient(message)
        tz = zone(person.time_zone if person else self._default_tz, self._default_tz)
        if self._hours is not None:
            opening = self._hours.next_open(now, tz)
            if opening is not None:
                reason = f"{OutboxHold.HOURS} ({self._hours.text}, {tz.key})"
                await self._defer(message, until=opening, reason=reason)
                return 0
        if message.priority > 0 and self._budget >= 0 and message.recipient_id is not None:
            since = week_start(now, tz)
            async with self._db.transaction() as store:
                used = await store.outbox.budget_used(recipient_id=message.recipient_id, since=since)
            if used >= self._budget:
                reason = f"{OutboxHold.BUDGET} ({used} of {self._budget} this week)"
                await self._defer(message, until=since + timedelta(days=7), reason=reason, held=True)
                return 0
        status, error, retry_at, platform_id = OutboxStatus.UNREACHABLE, None, None, None
        if not targets:
            error = (f"{message.channel}: that platform is not configured here" if message.channel
                     else "the recipient has no identity on a configured platform")
        errors: list[str] = []
        # attempts counts this claim: more than one means an earlier claim may have posted it
        # (its worker died, or the platform never answered), so an adapter that can look does.
        maybe_sent_since = message.created_at if message.attempts > 1 else None
        for adapter, address in targets:
            if await self._wait_for(adapter.platform, message, now):
                return 0
            address = dataclasses.replace(address, outbox_id=message.id, maybe_sent_since=maybe_sent_since)
            send = functools.partial(adapter.send, address, reply_from_json(message.payload))
            outcome = await self._attempt(message, now, send, adapter.platform)
            if isinstance(outcome, str):
                errors.append(outcome)
                continue
            status, error, retry_at, platform_id = outcome
            break
        else:
            if errors:
                error = "; ".join(errors)
        sent_via = targets[0][0].platform if targets else "none"
        self._observer.delivery(sent_via, result="retry" if status == OutboxStatus.PENDING else status.value)
        if status != OutboxStatus.SENT:
            log.info("outbox message %s (%s %s): %s", message.id, message.kind, message.subject, status)
        written = await self._finish(message, status, now, retry_at=retry_at, error=error, platform_id=platform_id)
        return int(status == OutboxStatus.SENT and written)

    async def _deliver_rendered(self, message: OutboxMessage, platform: str, now: datetime) -> int:
        """A reply an adapter rendered and addressed itself (Teams throttled it inside a turn):
        sent back through that adapter as it is, at once (a reply is awaited, so no delivery
        calendar and no budget apply), with the same retries and pauses as everything else."""
        adapter = self._adapters.get(platform)
        if not isinstance(adapter, SendsRendered):
            await self._finish(message, OutboxStatus.UNREACHABLE, now, error=f"{platform} is not configured here")
            return 0
        if await self._wait_for(platform, message, now):
            return 0
        outcome = await self._attempt(message, now, functools.partial(adapter.send_rendered, message.payload), platform)
        if isinstance(outcome, str):
            status, error, retry_at, platform_id = OutboxStatus.UNREACHABLE, outcome, None, None
        else:
            status, error, retry_at, platform_id = outcome
        self._observer.delivery(platform, result="retry" if status == OutboxStatus.PENDING else status.value)
        written = await self._finish(message, status, now, retry_at=retry_at, error=error, platform_id=platform_id)
        return int(status == OutboxStatus.SENT and written)

    async def _wait_for(self, platform: str, message: OutboxMessage, now: datetime) -> bool:
        """Put ``message`` back until ``platform``'s pause ends (True), or wait for its pace (False)."""
        paused = self._paused.get(platform)
        if paused is not None and paused > now:
            await self._defer(message, until=paused, reason=f"{platform} asked for a pause")
            return True
        await self._paces.setdefault(platform, _Pace(self._rates.get(platform))).wait()
        return False

    async def _attempt(
        self, message: OutboxMessage, now: datetime, send: Callable[[], Awaitable[Delivered]], platform: str
    ) -> tuple[OutboxStatus, str | None, datetime | None, str | None] | str:
        """One send: (status, error, retry at, platform id), or the reason this target cannot reach them."""
        try:
            delivered = await send()
        except Unreachable as exc:
            return str(exc)
        except DeliveryError as exc:
            if exc.retry_after is not None:
                self._paused[platform] = now + timedelta(seconds=exc.retry_after)
            retry_at = now + backoff(message.attempts, retry_after=exc.retry_after)
            return self._retry_or_fail(message, exc.retryable), str(exc), retry_at, None
        except Exception as exc:
            log.warning("sending outbox message %s failed: %s", message.id, type(exc).__name__)
            return self._retry_or_fail(message, True), type(exc).__name__, now + backoff(message.attempts), None
        return OutboxStatus.SENT, None, None, delivered.message_id

    async def _finish(
        self,
        message: OutboxMessage,
        status: OutboxStatus,
        now: datetime,
        *,
        retry_at: datetime | None = None,
        error: str | None = None,
        platform_id: str | None = None,
    ) -> bool:
        assert message.id is not None
        if status == OutboxStatus.PENDING:
            self._due_again(retry_at)
        async with self._db.transaction() as store:
            written = await store.outbox.finish(
                message.id,
                token=message.lease_token,
                status=status,
                now=now,
                next_attempt_at=retry_at,
                error=error,
                platform_message_id=platform_id,
            )
        if not written:
            log.warning("outbox message %s: lease taken over by another worker; its outcome is theirs", message.id)
        return written

    async def _defer(self, message: OutboxMessage, *, until: datetime, reason: str, held: bool = False) -> None:
        assert message.id is not None
        self._due_again(until)
        async with self._db.transaction() as store:
            await store.outbox.defer(message.id, token=message.lease_token, until=until, reason=reason, held=held)

    def _retry_or_fail(self, message: OutboxMessage, retryable: bool) -> OutboxStatus:
        if retryable and message.attempts < self._max_attempts:
            return OutboxStatus.PENDING
        return OutboxStatus.FAILED
