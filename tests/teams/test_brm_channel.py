"""BRM_BOT_BRM_CHANNEL in Teams: a request nobody owns is announced once in the BRM team's channel,
and whichever BRM presses its buttons there acts on it; nobody else can."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from bot.delivery import DeliveryWorker
from conversations.engine import Engine
from conversations.flows import default_flows
from storage.db import Database
from storage.models import DemandRequest, OutboxMessage
from tests.conftest import FakeClock
from tests.helpers import rows_of
from tests.teams.conftest import ALICE, CHANNEL_ID, NORA, TeamsHarness
from tests.teams.test_conversations import _last_card_with

MONDAY_MORNING = datetime(2026, 11, 23, 9, 5, tzinfo=UTC)


@pytest.fixture
def engine(demo_db: Database, clock: FakeClock) -> Engine:
    return Engine(demo_db, default_flows(), clock=clock, default_timezone="UTC", brm_channel=f"teams:{CHANNEL_ID}")


async def _filed_by_someone_without_a_partner(teams: TeamsHarness) -> None:
    # Nora belongs to no business partner: her request is for "Not sure", so no BRM owns it.
    for line in ("request Travel expense photo capture",
                 "Receipts are typed by hand. Outcome: expenses are filed from a photo of the receipt",
                 "project, high, end of March", "submit"):
        await teams.send(teams.personal(NORA, line))


async def _announced(teams: TeamsHarness, demo_db: Database) -> DeliveryWorker:
    await teams.send(teams.channel(ALICE, "help"))  # the bot is in the channel: it keeps its reference
    await _filed_by_someone_without_a_partner(teams)
    assert "asking the BRM team" in teams.fake.messages[-1].text
    worker = DeliveryWorker(demo_db, {"teams": teams.adapter}, clock=lambda: MONDAY_MORNING)
    assert await worker.run_once() == 1
    return worker


async def test_a_not_sure_request_is_announced_once_in_the_brm_channel(teams: TeamsHarness, demo_db: Database) -> None:
    worker = await _announced(teams, demo_db)
    assert await worker.run_once() == 0
    notice = teams.fake.messages[-1]
    assert "New demand request DR-13" in notice.text and notice.kind == "send"
    assert notice.conversation.startswith(CHANNEL_ID), "a new post in the BRM team's channel"
    assert sum("New demand request DR-13" in m.text for m in teams.fake.messages) == 1, "not each BRM as well"
    [row] = [m for m in await rows_of(demo_db, OutboxMessage) if m.kind == "request_submitted"]
    assert (row.recipient_id, row.channel, row.status) == (None, f"teams:{CHANNEL_ID}", "sent")


async def test_any_brm_can_press_accept_in_the_channel_and_a_requester_cannot(
    teams: TeamsHarness, demo_db: Database
) -> None:
    await _announced(teams, demo_db)
    card_id, _, data = _last_card_with(teams, "Accept")

    await teams.send(teams.submit(NORA, card_id, data, personal=False))  # its requester: sees it, may not act
    assert "Nothing changed" in teams.fake.messages[-1].text
    assert not teams.fake.of("update"), "the card keeps its buttons for the BRMs"
    [request] = await rows_of(demo_db, DemandRequest, DemandRequest.id == 13)
    assert request.status == "submitted" and request.brm_id is None

    await teams.send(teams.submit(ALICE, card_id, data, personal=False))
    assert "DR-13 moved from submitted to triaged" in teams.fake.messages[-1].text
    [request] = await rows_of(demo_db, DemandRequest, DemandRequest.id == 13)
    assert request.status == "triaged" and request.brm_id == 1, "the BRM who pressed takes it"
    assert teams.fake.of("update"), "now the card shows the press"


async def test_a_channel_the_bot_was_never_added_to_is_unreachable_not_retried(
    teams: TeamsHarness, demo_db: Database
) -> None:
    await _filed_by_someone_without_a_partner(teams)
    worker = DeliveryWorker(demo_db, {"teams": teams.adapter}, clock=lambda: MONDAY_MORNING)
    assert await worker.run_once() == 0
    assert await worker.run_once() == 0
    [row] = [m for m in await rows_of(demo_db, OutboxMessage) if m.kind == "request_submitted"]
    assert row.status == "unreachable" and row.attempts == 1
    assert row.last_error is not None and "conversation in this channel" in row.last_error
