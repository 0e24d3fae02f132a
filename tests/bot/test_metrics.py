"""``GET /metrics``: what an operator scrapes after people talked to the bot in Slack and Teams.

The bot is served as ``brm-bot serve`` serves it (one aiohttp app, both adapters, the engine
and the delivery worker sharing one :class:`Metrics`), and Prometheus' own parser reads the page.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from adapters.slack import SlackAdapter
from adapters.teams import RetryPolicy, TeamsAdapter, TeamsConfig
from bot.delivery import DeliveryWorker
from bot.metrics import Metrics
from bot.web import build_web_app
from conversations import codec
from conversations.engine import Engine
from conversations.flows import default_flows
from conversations.messages import Reply
from storage.db import Database
from tests.conftest import FakeClock
from tests.slack.conftest import BOT_TOKEN, SIGNING_SECRET, SlackHarness
from tests.slack.fake_slack import FakeSlack
from tests.teams.conftest import DANA as TEAMS_DANA
from tests.teams.conftest import TeamsHarness
from tests.teams.conftest import fake as fake
from tests.teams.fake_connector import FakeConnector


@dataclass
class Served:
    slack: SlackHarness
    teams: TeamsHarness
    metrics: Metrics
    worker: DeliveryWorker
    db: Database
    client: TestClient

    async def scrape(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        response = await self.client.get("/metrics")
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/plain")
        samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        for family in text_string_to_metric_families(await response.text()):
            for sample in family.samples:
                samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
        return samples


def value(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    from tests.slack.conftest import USERS

    fake = FakeSlack(users=USERS)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def served(
    demo_db: Database, clock: FakeClock, fake_slack: FakeSlack, fake: tuple[FakeConnector, str]
) -> AsyncIterator[Served]:
    metrics = Metrics()
    engine = Engine(demo_db, default_flows(), clock=clock, default_timezone="UTC", observer=metrics)
    connector, service_url = fake

    async def no_sleep(seconds: float) -> None:
        return None

    async with aiohttp.ClientSession() as http:
        slack = SlackAdapter(
            engine, bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, http=http, clock=clock,
            api_url=fake_slack.api_url,
        )
        teams = TeamsAdapter(
            engine=engine, db=demo_db, config=TeamsConfig(local_mode=True), retry=RetryPolicy(sleep=no_sleep), http=http
        )
        worker = DeliveryWorker(demo_db, {"slack": slack, "teams": teams}, clock=clock, observer=metrics)
        client = TestClient(TestServer(build_web_app(demo_db, [slack, teams], metrics=metrics, clock=clock),
                                       host="127.0.0.1"))
        await client.start_server()
        await slack.start()
        await teams.start()
        try:
            yield Served(
                SlackHarness(client, fake_slack, slack, engine, demo_db),
                TeamsHarness(client, connector, teams, service_url),
                metrics, worker, demo_db, client,
            )
        finally:
            await slack.close()
            await teams.close()
            await client.close()


async def test_metrics_count_what_a_slack_and_a_teams_conversation_caused(served: Served, clock: FakeClock) -> None:
    before = await served.scrape()
    assert value(before, "brm_bot_turns_total", platform="slack", outcome="ok") == 0

    # Slack: two messages, one of them sent again by Slack (a retry), and one forged request.
    served.slack.fake.rate_limit_once("chat.postMessage", retry_after=0)
    first = await served.slack.dm("hello")
    await served.slack.settle()
    await served.slack.dm("hello", event_id=first, retry=1)
    await served.slack.settle()
    await served.slack.dm("my requests")
    await served.slack.settle()
    forged = await served.client.post(
        "/slack/events", data=json.dumps({"type": "event_callback"}),
        headers={"Content-Type": "application/json", "X-Slack-Request-Timestamp": "1", "X-Slack-Signature": "v0=x"},
    )
    assert forged.status == 401

    # Teams: one message in the personal chat.
    await served.teams.send(served.teams.personal(TEAMS_DANA, "hello"))

    samples = await served.scrape()
    assert value(samples, "brm_bot_inbound_events_total", platform="slack", outcome="accepted") == 3
    assert value(samples, "brm_bot_inbound_events_total", platform="slack", outcome="unauthorized") == 1
    assert value(samples, "brm_bot_inbound_events_total", platform="teams", outcome="accepted") == 1
    assert value(samples, "brm_bot_turns_total", platform="slack", outcome="ok") == 2
    assert value(samples, "brm_bot_turns_total", platform="slack", outcome="duplicate") == 1
    assert value(samples, "brm_bot_turns_total", platform="teams", outcome="ok") == 1
    assert value(samples, "brm_bot_turn_seconds_count", platform="slack") == 3
    assert value(samples, "brm_bot_turn_seconds_count", platform="teams") == 1
    assert value(samples, "brm_bot_ack_seconds_count", platform="slack") == 3
    assert value(samples, "brm_bot_ack_seconds_count", platform="teams") == 1
    # Two answers posted, the first after one 429; users.info once, for Dana's first contact.
    posted = served.slack.fake.count("chat.postMessage")
    assert value(samples, "brm_bot_platform_api_calls_total", platform="slack", method="chat.postMessage",
                 result="429") == 1
    assert value(samples, "brm_bot_platform_api_calls_total", platform="slack", method="chat.postMessage",
                 result="ok") == posted == 2
    assert value(samples, "brm_bot_platform_api_calls_total", platform="slack", method="users.info",
                 result="ok") == 1
    teams_sent = len(served.teams.fake.messages)
    assert teams_sent >= 1
    teams_calls = sum(
        v for (name, labels), v in samples.items()
        if name == "brm_bot_platform_api_calls_total" and dict(labels).get("platform") == "teams"
        and dict(labels).get("result") == "ok" and dict(labels)["method"].startswith("POST conversations/activities")
    )
    assert teams_calls == teams_sent


async def test_metrics_show_the_outbox_by_state_its_oldest_waiting_message_and_deliveries(
    served: Served, clock: FakeClock
) -> None:
    await served.teams.send(served.teams.personal(TEAMS_DANA, "hello"))  # Dana now has a Teams identity
    async with served.db.transaction() as store:
        dana = await store.people.by_email("dana@example.com")
        assert dana is not None and dana.id is not None
        for subject in ("DR-1", "DR-2"):
            await store.outbox.enqueue(kind="status", subject=subject, recipient_id=dana.id,
                                       payload=codec.reply_to_json(Reply.text(f"{subject} moved on")), now=clock())
    clock.advance(timedelta(minutes=7))
    waiting = await served.scrape()
    assert value(waiting, "brm_bot_outbox_messages", state="pending") == 2
    assert value(waiting, "brm_bot_outbox_oldest_pending_seconds") == 7 * 60

    assert await served.worker.run_once() == 2
    delivered = await served.scrape()
    assert value(delivered, "brm_bot_outbox_messages", state="pending") == 0
    assert value(delivered, "brm_bot_outbox_messages", state="sent") == 2
    assert value(delivered, "brm_bot_outbox_oldest_pending_seconds") == 0
    assert value(delivered, "brm_bot_deliveries_total", platform="teams", result="sent") == 2
    assert "DR-2 moved on" in served.teams.fake.text()


async def test_job_runs_and_database_errors_are_counted_by_name() -> None:
    metrics = Metrics()
    metrics.job_run("nudges", result="ok", seconds=0.3)
    metrics.job_run("nudges", result="skipped", seconds=0.01)
    metrics.database_error("turn")
    exposed = metrics.exposition().decode()
    assert 'brm_bot_job_runs_total{job="nudges",result="ok"} 1.0' in exposed
    assert 'brm_bot_job_runs_total{job="nudges",result="skipped"} 1.0' in exposed
    assert 'brm_bot_database_errors_total{where="turn"} 1.0' in exposed


async def test_metrics_are_off_unless_switched_on(demo_db: Database) -> None:
    client = TestClient(TestServer(build_web_app(demo_db, []), host="127.0.0.1"))
    await client.start_server()
    try:
        assert (await client.get("/metrics")).status == 404
    finally:
        await client.close()


async def test_brm_bot_serve_with_metrics_on_answers_the_scrape(fake_slack: FakeSlack, tmp_path: Path) -> None:
    from tests.slack.test_serve import Served as Command
    from tests.slack.test_serve import _brm_bot, _free_port

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MICROSOFT_", "TEAMS_", "BRM_BOT_"))}
    env.update({
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": fake_slack.api_url,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", "HOST": "127.0.0.1", "PORT": str(port),
        "HOME": str(tmp_path), "BRM_BOT_METRICS": "on",
    })
    process = await asyncio.create_subprocess_exec(
        *_brm_bot(), "serve", cwd=tmp_path, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    command = Command(process, f"http://127.0.0.1:{port}")
    try:
        await command.read_until("metrics: /metrics")
        async with aiohttp.ClientSession() as session, session.get(f"{command.url}/metrics") as scraped:
            assert scraped.status == 200
            page = await scraped.text()
        assert 'brm_bot_outbox_messages{state="pending"} 0.0' in page
        assert "brm_bot_turns_total" in page or "# HELP brm_bot_turns" in page
        assert await command.stop() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
