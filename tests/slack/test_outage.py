"""A database outage in Slack: acknowledged, then an apology where the person wrote."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.slack import SlackAdapter
from conversations.engine import Engine
from conversations.flows import default_flows
from storage.db import Database
from tests.conftest import FakeClock
from tests.slack.conftest import BOT_TOKEN, SIGNING_SECRET, USERS, SlackHarness, dm_of
from tests.slack.fake_slack import FakeSlack

CLOSED_PORT_URL = "postgresql+asyncpg://postgres@127.0.0.1:1/brm?connect_timeout=2"


@pytest.fixture
async def slack_down(clock: FakeClock) -> AsyncIterator[SlackHarness]:
    fake = FakeSlack(users=USERS)
    await fake.start()
    db = Database.connect(CLOSED_PORT_URL)
    engine = Engine(db, default_flows(), clock=clock)
    async with aiohttp.ClientSession() as session:
        adapter = SlackAdapter(engine, bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, http=session,
                               clock=clock, api_url=fake.api_url)
        app = web.Application()
        adapter.mount(app)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        await adapter.start()
        try:
            yield SlackHarness(client, fake, adapter, engine, db)
        finally:
            await adapter.close()
            await client.close()
            await db.dispose()
            await fake.close()


async def test_a_new_person_during_a_database_outage_gets_an_apology(slack_down: SlackHarness) -> None:
    await slack_down.dm("new request", user="U0NEW")
    (sorry,) = await slack_down.fake.wait_for("chat.postMessage")
    assert sorry.args["channel"] == dm_of("U0NEW") and "Sorry" in sorry.text


async def test_a_command_during_a_database_outage_is_answered_privately(slack_down: SlackHarness) -> None:
    response = await slack_down.command("mine", user="U0NEW")
    assert response.status == 200
    await slack_down.settle()
    answers = [c for c in slack_down.fake.calls if c.method.startswith("response:")]
    assert answers and "Sorry" in str(answers[-1].args)
