"""Prometheus metrics (``GET /metrics``, on with ``BRM_BOT_METRICS=on``).

:class:`Metrics` is the :class:`~conversations.observe.Observer` ``bot/`` hands to the engine,
the adapters, the delivery worker and the jobs. It keeps its own ``CollectorRegistry`` (never
prometheus-client's global one), so two bots in one process, or two tests, count apart. The
outbox gauges are read from the database when ``/metrics`` is scraped.

Example::

    metrics = Metrics()
    engine = Engine(db, flows, clock=utcnow, observer=metrics)
    app.router.add_get("/metrics", metrics.handler(db, clock=utcnow))
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from storage.db import Database
from storage.models import OutboxStatus
from storage.tx import DATABASE_ERRORS

log = logging.getLogger(__name__)

# Slack wants an ack within 3 s, Teams an answer within 15 s: buckets around those.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
JOB_BUCKETS = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0)


class Metrics:
    """Every metric the bot exports, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.inbound_events = Counter(
            "brm_bot_inbound_events", "Requests from a platform, by outcome (accepted or why refused).",
            ["platform", "outcome"], registry=r,
        )
        self.turns = Counter(
            "brm_bot_turns", "Conversation turns run by the engine, by outcome (ok, duplicate, error).",
            ["platform", "outcome"], registry=r,
        )
        self.turn_seconds = Histogram(
            "brm_bot_turn_seconds", "How long a conversation turn took.", ["platform"], buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ack_seconds = Histogram(
            "brm_bot_ack_seconds", "How long a platform's request waited for its answer (Slack's ack).",
            ["platform"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.api_calls = Counter(
            "brm_bot_platform_api_calls", "Calls of a platform's API, by method and result (ok, 429, an error).",
            ["platform", "method", "result"], registry=r,
        )
        self.deliveries = Counter(
            "brm_bot_deliveries", "Attempts to deliver an outbox message (sent, retry, failed, unreachable).",
            ["platform", "result"], registry=r,
        )
        self.job_runs = Counter(
            "brm_bot_job_runs", "Runs of scheduled jobs, by result (ok, skipped, error).", ["job", "result"],
            registry=r,
        )
        self.job_seconds = Histogram(
            "brm_bot_job_seconds", "How long a scheduled job's run took.", ["job"], buckets=JOB_BUCKETS, registry=r,
        )
        self.database_errors = Counter(
            "brm_bot_database_errors", "Database calls that failed, by where they were made.", ["where"], registry=r,
        )
        self.outbox = Gauge(
            "brm_bot_outbox_messages", "Outbox messages by state (read when scraped).", ["state"], registry=r,
        )
        self.oldest_pending = Gauge(
            "brm_bot_outbox_oldest_pending_seconds",
            "Age of the oldest outbox message still waiting to be sent (0 when none waits).", registry=r,
        )

    # --- Observer --------------------------------------------------------------------------------

    def inbound(self, platform: str, *, outcome: str) -> None:
        self.inbound_events.labels(platform, outcome).inc()

    def turn(self, platform: str, *, outcome: str, seconds: float) -> None:
        self.turns.labels(platform, outcome).inc()
        self.turn_seconds.labels(platform).observe(seconds)

    def ack(self, platform: str, *, seconds: float) -> None:
        self.ack_seconds.labels(platform).observe(seconds)

    def api_call(self, platform: str, *, method: str, result: str) -> None:
        self.api_calls.labels(platform, method, result[:40]).inc()

    def delivery(self, platform: str, *, result: str) -> None:
        self.deliveries.labels(platform, result).inc()

    def job_run(self, job: str, *, result: str, seconds: float) -> None:
        self.job_runs.labels(job, result).inc()
        self.job_seconds.labels(job).observe(seconds)

    def database_error(self, where: str) -> None:
        self.database_errors.labels(where).inc()

    # --- scraping ----------------------------------------------------------------------------------

    async def refresh(self, db: Database, *, now: datetime) -> None:
        """Read the outbox gauges from the database (a failure is counted, the old values stay)."""
        try:
            async with db.transaction() as store:
                summary = await store.outbox.summary()
        except DATABASE_ERRORS:
            self.database_error("metrics")
            log.warning("metrics: the outbox could not be read")
            return
        for state in OutboxStatus:
            self.outbox.labels(state.value).set(summary.counts.get(state.value, 0))
        oldest = summary.oldest_pending
        self.oldest_pending.set(max(0.0, (now - oldest).total_seconds()) if oldest is not None else 0.0)

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format."""
        return generate_latest(self.registry)

    def handler(
        self, db: Database, *, clock: Callable[[], datetime]
    ) -> Callable[[web.Request], Awaitable[web.Response]]:
        """``GET /metrics``."""

        async def metrics(request: web.Request) -> web.Response:
            await self.refresh(db, now=clock())
            response = web.Response(body=self.exposition())
            response.headers["Content-Type"] = CONTENT_TYPE_LATEST
            return response

        return metrics
