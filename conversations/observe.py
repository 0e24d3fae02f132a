"""What the engine and the adapters report about their work, for whoever counts it.

``bot/`` passes an :class:`Observer` down (its Prometheus metrics); everything else holds
the one it was given, never a module global. :class:`NoObserver` is the default: nothing is
counted and nothing is imported.

Example::

    engine = Engine(db, flows, clock=utcnow, observer=metrics)
    observer.turn("slack", outcome="ok", seconds=0.012)
"""

from __future__ import annotations

from typing import Protocol

# Outcomes of a turn: answered, a platform's repeat of an event already handled, or failed.
TURN_OK = "ok"
TURN_DUPLICATE = "duplicate"
TURN_ERROR = "error"


class Observer(Protocol):
    """Counters and timings of the bot's work; every method returns at once and never raises."""

    def inbound(self, platform: str, *, outcome: str) -> None:
        """A request from a platform: ``accepted``, or why it was refused (``unauthorized``, ``busy``…)."""

    def turn(self, platform: str, *, outcome: str, seconds: float) -> None:
        """One engine turn: :data:`TURN_OK`, :data:`TURN_DUPLICATE` or :data:`TURN_ERROR`."""

    def ack(self, platform: str, *, seconds: float) -> None:
        """How long the platform's request waited for its answer (Slack's ack, Teams' response)."""

    def api_call(self, platform: str, *, method: str, result: str) -> None:
        """One call of the platform's API: ``ok``, an error code, ``429``, or an exception's name."""

    def delivery(self, platform: str, *, result: str) -> None:
        """One outbox message's attempt: ``sent``, ``retry``, ``failed`` or ``unreachable``."""

    def job_run(self, job: str, *, result: str, seconds: float) -> None:
        """One run of a scheduled job: ``ok``, ``skipped`` (claimed elsewhere) or ``error``."""

    def database_error(self, where: str) -> None:
        """A database call failed (``turn``, ``delivery``, ``housekeeping``, ``health``)."""


class NoObserver:
    """Counts nothing: the default wherever no observer is given."""

    def inbound(self, platform: str, *, outcome: str) -> None:
        return None

    def turn(self, platform: str, *, outcome: str, seconds: float) -> None:
        return None

    def ack(self, platform: str, *, seconds: float) -> None:
        return None

    def api_call(self, platform: str, *, method: str, result: str) -> None:
        return None

    def delivery(self, platform: str, *, result: str) -> None:
        return None

    def job_run(self, job: str, *, result: str, seconds: float) -> None:
        return None

    def database_error(self, where: str) -> None:
        return None


NO_OBSERVER: Observer = NoObserver()
