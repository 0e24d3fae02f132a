"""Relationship health, explained in words: plain functions of the data and a clock.

Each signal carries its reason ("41 days since the last touchpoint; cadence 30"). A
relationship is ``stalled`` when a signal is serious, ``watch`` when one is a warning, else
``healthy``. The surveys issue adds a falling pulse as one more signal.

Example::

    health = judge(relationship, open_requests, now=clock())
    health.level, health.reasons        # "watch", ("20 days since the last touchpoint; cadence 14",)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from storage.models import DemandRequest, Relationship, Status

DEFAULT_STATUS_LIMIT_DAYS = 10
# Deferred requests wait on purpose; they are not "stuck".
NOT_STUCK = frozenset({Status.DEFERRED.value})


class Level(StrEnum):
    HEALTHY = "healthy"
    WATCH = "watch"
    STALLED = "stalled"


@dataclass(frozen=True, slots=True)
class Signal:
    """One reason to look at a relationship; ``item`` is what a nudge acts on and a snooze names."""

    level: Level
    reason: str
    item: str  # "partner:3" or "request:17"
    request_id: int | None = None


@dataclass(frozen=True, slots=True)
class Health:
    level: Level
    signals: tuple[Signal, ...]

    @property
    def reasons(self) -> tuple[str, ...]:
        return tuple(s.reason for s in self.signals)

    def line(self) -> str:
        """``watch: 20 days since the last touchpoint; cadence 14``."""
        return self.level.value + (": " + " · ".join(self.reasons) if self.signals else "")


def touchpoint_signal(relationship: Relationship, *, now: datetime) -> Signal | None:
    """Days since the last touchpoint against the cadence: past it is watch, past twice it is stalled."""
    item = f"partner:{relationship.partner_id}"
    last = relationship.last_touchpoint_at
    if last is None:
        return Signal(Level.STALLED, "no touchpoint recorded", item)
    days = (now - last).days
    cadence = max(relationship.cadence_days, 1)
    if days <= cadence:
        return None
    level = Level.STALLED if days > 2 * cadence else Level.WATCH
    return Signal(level, f"{days} days since the last touchpoint; cadence {cadence}", item)


def request_signal(
    request: DemandRequest, *, now: datetime, limits: Mapping[str, int] | None = None
) -> Signal | None:
    """A request sitting in one status past that status' limit (default 10 days)."""
    if request.status in NOT_STUCK:
        return None
    limit = (limits or {}).get(request.status, DEFAULT_STATUS_LIMIT_DAYS)
    days = (now - request.updated_at).days
    if days <= limit:
        return None
    level = Level.STALLED if days > 2 * limit else Level.WATCH
    return Signal(level, f"{request.key} in {request.status} for {days} days", f"request:{request.id}", request.id)


def judge(
    relationship: Relationship,
    open_requests: Sequence[DemandRequest],
    *,
    now: datetime,
    limits: Mapping[str, int] | None = None,
) -> Health:
    """The relationship's level and every signal behind it, worst first."""
    found = [touchpoint_signal(relationship, now=now)]
    found.extend(request_signal(r, now=now, limits=limits) for r in open_requests)
    signals = tuple(sorted((s for s in found if s is not None), key=lambda s: s.level != Level.STALLED))
    if any(s.level == Level.STALLED for s in signals):
        return Health(Level.STALLED, signals)
    return Health(Level.WATCH if signals else Level.HEALTHY, signals)
