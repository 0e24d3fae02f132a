"""The outbound port: how the bot speaks first, whatever the platform.

Each adapter implements :class:`Outbound`. The delivery worker (in ``bot/``) reads queued
messages from the outbox, resolves the recipient to an :class:`Address` on a platform the
person uses, and calls ``send``.

Example::

    delivered = await slack.send(Address("slack", "T1", user="U1"), Reply.text("Hi"))
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from conversations.messages import Address, Delivered, Platform, Reply


class DeliveryError(Exception):
    """A send failed. ``retry_after`` (seconds) when the platform said when to try again."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


class Unreachable(DeliveryError):
    """The platform cannot reach this person or channel (never seen, uninstalled, blocked)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, retryable=False)


class PlatformRefused(Exception):
    """A platform refused the bot's credentials at start; the message names the setting to fix."""


class Outbound(Protocol):
    platform: Platform

    async def send(self, to: Address, reply: Reply) -> Delivered: ...


RENDERED = "rendered"  # outbox payload key: the platform whose adapter rendered and addressed the message itself


@runtime_checkable
class SendsRendered(Protocol):
    """An adapter that queues a reply the platform throttled as it rendered it (``payload[RENDERED]``
    names its platform, the rest is the adapter's own) and sends such payloads again later."""

    platform: Platform

    async def send_rendered(self, payload: Mapping[str, Any]) -> Delivered: ...
