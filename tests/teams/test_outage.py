"""A database outage: people get an apology, never an HTTP 500 (Teams would show an error)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from conversations.engine import Engine
from conversations.flows import default_flows
from storage.db import Database
from tests.conftest import FakeClock
from tests.teams.conftest import NORA, TeamsHarness, open_harness
from tests.teams.fake_connector import FakeConnector

CLOSED_PORT_URL = "postgresql+asyncpg://postgres@127.0.0.1:1/brm?connect_timeout=2"


@pytest.fixture
async def down() -> AsyncIterator[Database]:
    database = Database.connect(CLOSED_PORT_URL)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def teams_down(
    down: Database, fake: tuple[FakeConnector, str], http: aiohttp.ClientSession, clock: FakeClock
) -> AsyncIterator[TeamsHarness]:
    engine = Engine(down, default_flows(), clock=clock)
    harness, client = await open_harness(engine, down, fake, http=http)
    try:
        yield harness
    finally:
        await harness.adapter.close()
        await client.close()


async def test_a_new_person_during_a_database_outage_gets_an_apology(teams_down: TeamsHarness) -> None:
    response = await teams_down.post(teams_down.personal(NORA, "new request"))
    assert response.status in (200, 201), await response.text()
    (sorry,) = teams_down.fake.messages
    assert "Sorry" in sorry.text and "nothing was saved" in sorry.text


async def test_the_message_action_during_a_database_outage_answers_with_an_apology(teams_down: TeamsHarness) -> None:
    answer = await teams_down.invoke(teams_down.fetch_task(NORA, "<p>Invoices are typed by hand</p>"))
    assert "Sorry" in str(answer)


async def test_a_card_submission_during_a_database_outage_gets_an_apology(teams_down: TeamsHarness) -> None:
    values = {"action": "intake:submit", "title": "Forecast template"}
    response = await teams_down.post(teams_down.submit(NORA, "1700000000001", values))
    assert response.status in (200, 201), await response.text()
    assert "Sorry" in teams_down.fake.messages[-1].text
