"""The delivery worker sends what the engine queued, retries, and gives up clearly."""

from __future__ import annotations

from datetime import timedelta

from bot.delivery import DeliveryWorker
from conversations.engine import Engine
from conversations.messages import Address, Delivered, Platform, Reply
from conversations.ports import DeliveryError, Unreachable
from storage.models import OutboxMessage
from tests.helpers import Chat, file_request, rows_of


class Recorder:
    """An outbound port that records what it was asked to send; it can be told to fail."""

    def __init__(self, platform: Platform = "console", failures: list[Exception] | None = None) -> None:
        self.platform = platform
        self.sent: list[tuple[Address, Reply]] = []
        self.failures = failures or []

    async def send(self, to: Address, reply: Reply) -> Delivered:
        if self.failures:
            raise self.failures.pop(0)
        self.sent.append((to, reply))
        return Delivered(message_id=f"m{len(self.sent)}")


async def _outbox(engine: Engine) -> list[OutboxMessage]:
    return await rows_of(engine.db, OutboxMessage)


async def test_a_submitted_request_reaches_the_brm_on_their_platform(engine: Engine, clock) -> None:
    await file_request(Chat(engine))
    slack_alice = Chat(engine, email="alice@example.com", platform="slack", channel="D9")
    slack_alice.email = "alice@example.com"
    await slack_alice.say("hello")  # Alice now has a Slack identity (user id = her key's user)
    slack = Recorder("slack")
    worker = DeliveryWorker(engine.db, {"slack": slack}, clock=clock)
    assert await worker.run_once() == 1
    (address, reply) = slack.sent[0]
    (message,) = await _outbox(engine)
    assert address == Address("slack", "local", user="alice@example.com", outbox_id=message.id)
    assert address.maybe_sent_since is None, "a first attempt cannot have been posted before"
    assert "New demand request DR-13" in reply.plain_text()
    assert (message.status, message.platform_message_id, message.attempts) == ("sent", "m1", 1)
    assert await worker.run_once() == 0  # nothing is sent twice


async def test_a_failed_send_is_retried_after_the_wait_the_platform_asked_for(engine: Engine, clock) -> None:
    await file_request(Chat(engine))
    flaky = Recorder(failures=[DeliveryError("429 from platform", retry_after=120)])
    worker = DeliveryWorker(engine.db, {}, clock=clock, fallback=flaky)
    assert await worker.run_once() == 0
    (message,) = await _outbox(engine)
    assert message.status == "pending" and message.last_error == "429 from platform"
    assert message.next_attempt_at >= clock() + timedelta(seconds=120)
    assert await worker.run_once() == 0  # not due yet
    clock.advance(timedelta(hours=2))
    assert await worker.run_once() == 1
    assert flaky.sent and (await _outbox(engine))[0].status == "sent"
    ((address, _),) = flaky.sent
    assert (address.outbox_id, address.maybe_sent_since) == (message.id, message.created_at), (
        "a second attempt tells the adapter an earlier one may have posted it (since it was queued)")


async def test_an_unreachable_recipient_is_marked_and_not_retried(engine: Engine, clock) -> None:
    await file_request(Chat(engine))
    worker = DeliveryWorker(engine.db, {}, clock=clock, fallback=Recorder(failures=[Unreachable("never met")]))
    await worker.run_once()
    (message,) = await _outbox(engine)
    assert (message.status, message.last_error) == ("unreachable", "never met")


async def test_nobody_to_deliver_through_means_unreachable(engine: Engine, clock) -> None:
    await file_request(Chat(engine))
    await DeliveryWorker(engine.db, {}, clock=clock).run_once()
    (message,) = await _outbox(engine)
    assert message.status == "unreachable" and "no identity" in (message.last_error or "")


async def test_a_worker_that_died_mid_send_leaves_the_message_to_be_sent_again(engine: Engine, clock) -> None:
    await file_request(Chat(engine))
    async with engine.db.transaction() as store:  # a worker claims it and then dies
        claimed = await store.outbox.claim(now=clock(), lease_until=clock() + timedelta(minutes=5))
    assert len(claimed) == 1
    recorder = Recorder()
    worker = DeliveryWorker(engine.db, {}, clock=clock, fallback=recorder)
    assert await worker.run_once() == 0  # still leased
    clock.advance(timedelta(minutes=6))
    assert await worker.run_once() == 1 and len(recorder.sent) == 1


async def test_after_too_many_failures_the_message_is_given_up(engine: Engine, clock) -> None:
    await file_request(Chat(engine))
    recorder = Recorder(failures=[DeliveryError("502") for _ in range(3)])
    worker = DeliveryWorker(engine.db, {}, clock=clock, fallback=recorder, max_attempts=3)
    for _ in range(3):
        await worker.run_once()
        clock.advance(timedelta(hours=2))
    (message,) = await _outbox(engine)
    assert (message.status, message.attempts) == ("failed", 3) and not recorder.sent
