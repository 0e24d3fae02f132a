"""A BRM presses an action on the new-request notification delivered to their Slack DM."""

from __future__ import annotations

from bot.delivery import DeliveryWorker
from storage.models import DemandRequest, OutboxMessage
from tests.conftest import FakeClock
from tests.helpers import rows_of
from tests.slack.conftest import ALICE, SlackHarness, dm_of


async def test_accept_pressed_on_the_delivered_notification(slack: SlackHarness, clock: FakeClock) -> None:
    await slack.dm("hello", user=ALICE)
    await slack.fake.wait_for("chat.postMessage")
    lines = ("new request", "Invoice OCR for accounts payable", "skip", "Invoices are booked without manual typing",
             "Project", "High", "1", "skip", "submit")
    for n, line in enumerate(lines, 2):
        await slack.dm(line)
        await slack.fake.wait_for("chat.postMessage", n)
    worker = DeliveryWorker(slack.db, {}, clock=clock)
    worker.register(slack.adapter)
    assert await worker.run_once() == 1
    notice = slack.fake.called("chat.postMessage")[-1]
    assert notice.args["channel"] == dm_of(ALICE) and "New demand request DR-13" in notice.text
    sent = slack.fake.count("chat.postMessage")

    await slack.press(notice, "Accept", user=ALICE)
    await slack.settle()
    await slack.fake.wait_for("chat.postMessage", sent + 1)
    answer = slack.fake.called("chat.postMessage")[-1]
    assert answer.args["channel"] == dm_of(ALICE)
    assert "DR-13 moved from submitted to triaged. The requester has been told." in answer.text
    [request] = await rows_of(slack.db, DemandRequest, DemandRequest.id == 13)
    assert request.status == "triaged" and request.brm_id == 1
    told = [m for m in await rows_of(slack.db, OutboxMessage) if m.kind == "request_update"]
    assert [(m.recipient_id, m.subject) for m in told] == [(4, "DR-13")]
