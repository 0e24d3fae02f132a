"""A BRM reachable in Teams only once they install the app gets what was held for them."""

from __future__ import annotations

from datetime import timedelta

import aiohttp

from bot.delivery import DeliveryWorker
from conversations.engine import Engine
from storage.db import Database
from storage.models import OutboxMessage, OutboxStatus
from tests.conftest import FakeClock
from tests.helpers import rows_of
from tests.teams.conftest import ALICE, DANA, open_harness
from tests.teams.fake_connector import FakeConnector


async def test_a_brm_who_installs_the_teams_app_gets_the_held_notification(
    engine: Engine, demo_db: Database, fake: tuple[FakeConnector, str], http: aiohttp.ClientSession, clock: FakeClock
) -> None:
    teams, client = await open_harness(engine, demo_db, fake, http=http, clock=clock)
    try:
        await teams.send(teams.channel(ALICE, "help"))  # Alice: seen only in a channel so far
        for line in ("new request", "Invoice OCR for accounts payable", "skip",
                     "Invoices are booked without manual typing", "Project", "High", "Finance", "skip", "submit"):
            await teams.send(teams.personal(DANA, line))
        assert "I'm letting Alice Moreno, the BRM for Finance, know" in teams.fake.messages[-1].text
        worker = DeliveryWorker(demo_db, {"teams": teams.adapter}, clock=clock)
        assert await worker.run_once() == 0
        assert (await rows_of(demo_db, OutboxMessage))[0].status == OutboxStatus.UNREACHABLE

        clock.advance(timedelta(hours=5))
        await teams.send(teams.install_personal(ALICE))
        assert await worker.run_once() == 1
        note = teams.fake.messages[-1]
        assert note.conversation == ALICE.conversation and "New demand request DR-13" in note.text
        await teams.send(teams.personal(DANA, "status DR-13"))
        assert "Delivered" in teams.fake.messages[-1].text
    finally:
        await teams.adapter.close()
        await client.close()

