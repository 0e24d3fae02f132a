"""Relationship health, explained in words: plain functions of the data and a clock.

Each signal carries its reason ("41 days since the last touchpoint; cadence 30"). A
relationship is ``stalled`` when a signal is serious, ``watch`` when one is a warning, else
``healthy``. A pulse survey whose satisfaction fell by a point, or sits below 3.0, is a warning.

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
from storage.survey_results import Satisfaction

DEFAULT_STATUS_LIMIT_DAYS = 10
PULSE_FLOOR = 3.0  # an average satisfaction below this is a warning
PULSE_FALL = 1.0  # so is a fall of this much since the previous run
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


def pulse_signal(partner_id: int, satisfaction: Satisfaction | None) -> Signal | None:
    """The partner's pulse: average satisfaction down 1 point or more since the previous run, or
    under 3.0, is a warning. Figures compare as shown (one decimal). ``None`` figures are groups
    under the survey's ``min_group``: they say nothing, so they raise nothing."""
    if satisfaction is None or satisfaction.current is None:
        return None
    current = round(satisfaction.current, 1)
    item = f"partner:{partner_id}"
    previous = None if satisfaction.previous is None else round(satisfaction.previous, 1)
    if previous is not None and round(previous - current, 1) >= PULSE_FALL:
        return Signal(Level.WATCH, f"pulse satisfaction fell from {previous:.1f} to {current:.1f}", item)
    if current < PULSE_FLOOR:
        return Signal(Level.WATCH, f"pulse satisfaction {current:.1f}, below {PULSE_FLOOR:.1f}", item)
    return None


def judge(
    relationship: Relationship,
    open_requests: Sequence[DemandRequest],
    *,
    now: datetime,
    limits: Mapping[str, int] | None = None,
    pulse: Satisfaction | None = None,
) -> Health:
    """The relationship's level and every signal behind it, worst first.

    ``pulse``: the partner's satisfaction in the latest closed pulse run (see
    :meth:`storage.survey_results.SurveyResults.satisfaction`).
    """
    found = [touchpoint_signal(relationship, now=now)]
    found.extend(request_signal(r, now=now, limits=limits) for r in open_requests)
    found.append(pulse_signal(relationship.partner_id, pulse))
    signals = tuple(sorted((s for s in found if s is not None), key=lambda s: s.level != Level.STALLED))
    if any(s.level == Level.STALLED for s in signals):
        return Health(Level.STALLED, signals)
    return Health(Level.WATCH if signals else Level.HEALTHY, signals)
