"""A BRM presses an action on the new-request card delivered to them in Teams."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.delivery import DeliveryWorker
from storage.db import Database
from storage.models import DemandRequest, OutboxMessage
from tests.helpers import rows_of
from tests.teams.conftest import ALICE, DANA, TeamsHarness
from tests.teams.test_conversations import _last_card_with


async def test_reject_pressed_on_the_delivered_card_asks_for_the_reason(teams: TeamsHarness, demo_db: Database) -> None:
    await teams.send(teams.personal(ALICE, "hello"))
    for line in ("new request", "Invoice OCR for accounts payable", "skip",
                 "Invoices are booked without manual typing", "Project", "High", "Finance", "skip", "submit"):
        await teams.send(teams.personal(DANA, line))
    worker = DeliveryWorker(demo_db, {"teams": teams.adapter}, clock=lambda: datetime(2026, 11, 23, 9, 5, tzinfo=UTC))
    assert await worker.run_once() == 1
    assert "New demand request DR-13" in teams.fake.messages[-1].text

    card_id, _, data = _last_card_with(teams, "Reject")
    await teams.send(teams.submit(ALICE, card_id, data))
    assert "Why is DR-13 rejected?" in teams.fake.messages[-1].text
    await teams.send(teams.personal(ALICE, "Covered by the ERP upgrade"))
    assert "DR-13 moved from submitted to rejected." in teams.fake.messages[-1].text
    [request] = await rows_of(demo_db, DemandRequest, DemandRequest.id == 13)
    assert request.status == "rejected"
    told = [m for m in await rows_of(demo_db, OutboxMessage) if m.kind == "request_update"]
    assert [(m.recipient_id, m.subject) for m in told] == [(4, "DR-13")]
