"""The requester hears what really happened to the BRM's notification, and a notification held as
unreachable goes out once the BRM can be reached, while it is still useful."""

from __future__ import annotations

from datetime import timedelta

from bot.delivery import DeliveryWorker
from conversations.engine import Engine
from conversations.messages import Address, Delivered, Reply
from conversations.ports import Unreachable
from storage.models import OutboxMessage, OutboxStatus
from tests.bot.test_delivery import Recorder
from tests.conftest import FakeClock
from tests.helpers import Chat, file_request, rows_of


class SlackByIdOnly(Recorder):
    """A Slack that knows nobody by email (``users.lookupByEmail`` answers users_not_found)."""

    def __init__(self) -> None:
        super().__init__("slack")

    async def send(self, to: Address, reply: Reply) -> Delivered:
        if to.user is None:
            raise Unreachable("users_not_found")
        return await super().send(to, reply)


async def _status(engine: Engine, text: str = "status DR-13") -> str:
    return await Chat(engine).say(text)


async def test_the_requester_sees_whether_the_brm_was_reached(engine: Engine, clock: FakeClock) -> None:
    done = await file_request(Chat(engine))
    assert "I'm letting Alice Moreno, the BRM for Finance, know" in done and "notified" not in done
    assert "BRM notified: Pending" in await _status(engine)

    slack = SlackByIdOnly()
    worker = DeliveryWorker(engine.db, {"slack": slack}, clock=clock)
    assert await worker.run_once() == 0, "Alice has never talked to the bot: unreachable"
    (held,) = await rows_of(engine.db, OutboxMessage)
    assert held.status == OutboxStatus.UNREACHABLE
    assert "BRM notified: Not delivered yet" in await _status(engine)

    clock.advance(timedelta(days=3))
    await Chat(engine, email="alice@example.com", platform="slack", channel="D9").say("hello")
    (again,) = await rows_of(engine.db, OutboxMessage)
    assert again.status == OutboxStatus.PENDING, "Alice wrote to the bot: her notification is due again"
    assert await worker.run_once() == 1
    assert "New demand request DR-13" in slack.sent[0][1].plain_text()
    assert "BRM notified: Delivered 26 Nov 2026" in await _status(engine)


async def test_an_old_unreachable_notification_is_not_sent_late(engine: Engine, clock: FakeClock) -> None:
    await file_request(Chat(engine))
    worker = DeliveryWorker(engine.db, {"slack": SlackByIdOnly()}, clock=clock)
    await worker.run_once()
    clock.advance(timedelta(days=15))
    await Chat(engine, email="alice@example.com", platform="slack", channel="D9").say("hello")
    (held,) = await rows_of(engine.db, OutboxMessage)
    assert held.status == OutboxStatus.UNREACHABLE, "two weeks late is no use: it stays held"
    assert await worker.run_once() == 0
