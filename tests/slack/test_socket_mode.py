"""Socket Mode: with SLACK_APP_TOKEN the adapter opens a socket instead of serving a URL."""

from __future__ import annotations

from pathlib import Path

import aiohttp
from aiohttp import web

from bot.platforms.slack import build_slack
from bot.runtime import Runtime
from bot.settings import Settings
from conversations.engine import Engine
from tests.conftest import FakeClock
from tests.slack.conftest import BOT_TOKEN, DANA, SIGNING_SECRET, dm_of, envelope
from tests.slack.fake_slack import FakeSlack

APP_TOKEN = "xapp-1-A0FAKE-1234-apptokenvalue"  # a test value


def _runtime(engine: Engine, settings: Settings, clock: FakeClock) -> Runtime:
    from bot.delivery import DeliveryWorker

    return Runtime(settings=settings, db=engine.db, engine=engine, worker=DeliveryWorker(engine.db, {}, clock=clock))


async def test_without_an_app_token_the_adapter_serves_the_events_url(
    engine: Engine, clock: FakeClock, tmp_path: Path
) -> None:
    settings = Settings(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET,
                        SLACK_API_URL="http://127.0.0.1:9/api", BRM_BOT_STATE_DIR=tmp_path)  # type: ignore[call-arg]
    async with aiohttp.ClientSession() as http:
        adapter = build_slack(settings, _runtime(engine, settings, clock), http)
        app = web.Application()
        adapter.mount(app)
        routes = {(r.method, r.resource.canonical) for r in app.router.routes() if r.resource is not None}
        assert ("POST", "/slack/events") in routes
        assert adapter.platform == "slack"
        assert str(adapter.client.base_url) == "http://127.0.0.1:9/api/"  # type: ignore[attr-defined]


async def test_socket_mode_receives_events_over_the_socket_and_acks_them(
    engine: Engine, fake_slack: FakeSlack, clock: FakeClock, tmp_path: Path
) -> None:
    settings = Settings(SLACK_BOT_TOKEN=BOT_TOKEN, SLACK_SIGNING_SECRET=SIGNING_SECRET, SLACK_APP_TOKEN=APP_TOKEN,
                        SLACK_API_URL=fake_slack.api_url, BRM_BOT_STATE_DIR=tmp_path)  # type: ignore[call-arg]
    async with aiohttp.ClientSession() as http:
        adapter = build_slack(settings, _runtime(engine, settings, clock), http)
        app = web.Application()
        adapter.mount(app)
        assert not [r for r in app.router.routes() if r.method == "POST"], "no public URL in Socket Mode"
        wrapped = envelope({
            "type": "message", "channel_type": "im", "user": DANA, "channel": dm_of(DANA), "text": "hello",
            "ts": "1700000000.000100", "team": "T0FAKE",
        })
        fake_slack.push_envelope({"envelope_id": "env-1", "type": "events_api", "payload": wrapped,
                                  "accepts_response_payload": False, "retry_attempt": 0, "retry_reason": ""})
        await adapter.start()
        try:
            (connect,) = await fake_slack.wait_for("apps.connections.open")
            assert connect.token == APP_TOKEN
            await fake_slack.wait_for_ack("env-1")
            (reply,) = await fake_slack.wait_for("chat.postMessage")
            assert reply.args["channel"] == dm_of(DANA)
            assert "What would you like to do?" in reply.text
        finally:
            await adapter.close()
