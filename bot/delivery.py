"""The delivery worker: sends queued outbox messages through the platform adapters.

Messages are claimed with a lease, sent outside any database transaction, and then marked
sent, retried with backoff and jitter, or given up on. A crash mid-send leaves the lease to
run out, and the message goes again: delivery is at least once, and the outbox row's unique
(kind, subject, period, recipient) keeps a job that runs twice from queueing it twice.

Example::

    worker = DeliveryWorker(db, {"slack": slack}, clock=utcnow)
    sent = await worker.run_once()
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta

from conversations.codec import reply_from_json
from conversations.messages import Address
from conversations.observe import NO_OBSERVER, Observer
from conversations.ports import DeliveryError, Outbound, Unreachable
from storage.db import Database
from storage.models import OutboxMessage, OutboxStatus
from storage.tx import DATABASE_ERRORS

log = logging.getLogger(__name__)

LEASE = timedelta(minutes=5)
MAX_ATTEMPTS = 8


def backoff(attempt: int, *, retry_after: float | None = None) -> timedelta:
    """Exponential backoff with full jitter, at least what the platform asked for."""
    ceiling = min(30 * 2**attempt, 3600)
    wait = random.uniform(ceiling / 2, ceiling)
    return timedelta(seconds=max(wait, retry_after or 0))


class DeliveryWorker:
    def __init__(
        self,
        db: Database,
        adapters: Mapping[str, Outbound],
        *,
        clock: Callable[[], datetime],
        fallback: Outbound | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        self._db = db
        self._observer = observer
        self._adapters = dict(adapters)
        self._fallback = fallback
        self._clock = clock
        self._max_attempts = max_attempts
        self._wake = asyncio.Event()

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
        now = self._clock()
        async with self._db.transaction() as store:
            claimed = await store.outbox.claim(now=now, lease_until=now + LEASE, limit=limit)
        sent = 0
        for message in claimed:
            sent += await self._deliver(message)
        return sent

    async def run_forever(self, *, interval: float = 5.0) -> None:
        while True:
            try:
                while await self.run_once():
                    pass
            except Exception as exc:
                if isinstance(exc, DATABASE_ERRORS):
                    self._observer.database_error("delivery")
                log.exception("delivery round failed; trying again in %.0f s", interval)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=interval)
            except TimeoutError:
                pass

    async def _address(self, message: OutboxMessage) -> tuple[Outbound, Address] | None:
        async with self._db.transaction() as store:
            identities = await store.people.identities(message.recipient_id)
            person = await store.people.get(message.recipient_id)
        for identity in identities:
            adapter = self._adapters.get(identity.platform)
            if adapter is not None and identity.unreachable_at is None:
                return adapter, Address(identity.platform, identity.workspace, user=identity.user_id)  # type: ignore[arg-type]
        if any(i.platform in self._adapters for i in identities):
            return None  # the app was removed where they are (or its token revoked): nothing to try
        if self._fallback is not None and person is not None:
            fallback = self._fallback
            return fallback, Address(fallback.platform, "local", user=person.email or person.name)
        return None

    async def _deliver(self, message: OutboxMessage) -> int:
        assert message.id is not None
        now = self._clock()
        target = await self._address(message)
        status, error, retry_at, platform_id = OutboxStatus.SENT, None, None, None
        if target is None:
            status, error = OutboxStatus.UNREACHABLE, (
                "the recipient has no identity on a configured platform the bot can still reach "
                "(never seen there, or the app was uninstalled)"
            )
        else:
            adapter, address = target
            try:
                delivered = await adapter.send(address, reply_from_json(message.payload))
                platform_id = delivered.message_id
            except Unreachable as exc:
                status, error = OutboxStatus.UNREACHABLE, str(exc)
            except DeliveryError as exc:
                status, error = self._retry_or_fail(message, exc.retryable), str(exc)
                retry_at = now + backoff(message.attempts, retry_after=exc.retry_after)
            except Exception as exc:
                log.warning("sending outbox message %s failed: %s", message.id, type(exc).__name__)
                status, error = self._retry_or_fail(message, True), type(exc).__name__
                retry_at = now + backoff(message.attempts)
        result = "retry" if status == OutboxStatus.PENDING else status.value
        self._observer.delivery(target[0].platform if target is not None else "none", result=result)
        if status != OutboxStatus.SENT:
            log.info("outbox message %s (%s %s): %s", message.id, message.kind, message.subject, status)
        async with self._db.transaction() as store:
            await store.outbox.finish(
                message.id,
                status=status,
                now=now,
                next_attempt_at=retry_at,
                error=error,
                platform_message_id=platform_id,
            )
        return int(status == OutboxStatus.SENT)

    def _retry_or_fail(self, message: OutboxMessage, retryable: bool) -> OutboxStatus:
        if retryable and message.attempts + 1 < self._max_attempts:
            return OutboxStatus.PENDING
        return OutboxStatus.FAILED
