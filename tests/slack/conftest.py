"""Fixtures for the Slack adapter: the real aiohttp server with the real AsyncApp, a fake Slack.

Requests are built and signed the way Slack builds them: Events API envelopes as JSON,
slash commands and interactivity payloads as form posts, each with ``X-Slack-Signature``
and ``X-Slack-Request-Timestamp``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from adapters.slack import SlackAdapter
from conversations.engine import Engine
from storage.db import Database
from tests.conftest import FakeClock
from tests.slack.fake_slack import BOT_USER_ID, TEAM_ID, Call, FakeSlack

SIGNING_SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
BOT_TOKEN = "xoxb-1111-2222-testtokenvalue"
DANA, ALICE, NEWBIE = "U0DANA", "U0ALICE", "U0NEW"
USERS = {
    DANA: {"name": "Dana Whitfield", "email": "dana@example.com", "tz": "America/New_York"},
    ALICE: {"name": "Alice Moreno", "email": "alice@example.com", "tz": "Europe/Madrid"},
    NEWBIE: {"name": "Nora New", "email": "nora.new@example.com", "tz": "Europe/Berlin"},
}
_ids = itertools.count(1)


def dm_of(user: str) -> str:
    """The DM channel the fake opens for ``user`` (``U0DANA`` -> ``D0DANA``)."""
    return "D" + user[1:]


def sign(body: str, *, secret: str = SIGNING_SECRET, timestamp: int | None = None) -> dict[str, str]:
    """Slack's request signing: v0=HMAC-SHA256(secret, "v0:<timestamp>:<body>")."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    digest = hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}


def envelope(event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
    """An Events API envelope around ``event``, as Slack posts it (and wraps it in Socket Mode)."""
    now = int(time.time())
    return {
        "token": "verification-token-unused",
        "team_id": TEAM_ID,
        "context_team_id": TEAM_ID,
        "api_app_id": "A0FAKE",
        "event": {**event, "event_ts": event.get("ts", f"{now}.000100")},
        "type": "event_callback",
        "event_id": event_id or f"Ev{next(_ids):08d}",
        "event_time": now,
        "authorizations": [
            {"enterprise_id": None, "team_id": TEAM_ID, "user_id": BOT_USER_ID, "is_bot": True,
             "is_enterprise_install": False}
        ],
        "is_ext_shared_channel": False,
        "event_context": "4-eyJldCI6Im1lc3NhZ2UiLCJ0aWQiOiJUMEZBS0UifQ",
    }


@dataclass
class SlackHarness:
    """The bot's server, the fake Slack, and a way to send what Slack sends."""

    http: TestClient
    fake: FakeSlack
    adapter: SlackAdapter
    engine: Engine
    db: Database

    async def post(
        self, body: str, content_type: str, *, headers: dict[str, str] | None = None, **signing: Any
    ) -> aiohttp.ClientResponse:
        sent = {"Content-Type": content_type, "User-Agent": "Slackbot 1.0 (+https://api.slack.com/robots)"}
        sent.update(sign(body, **signing))
        sent.update(headers or {})
        return await self.http.post("/slack/events", data=body.encode(), headers=sent)

    def envelope(self, event: dict[str, Any], *, event_id: str | None = None) -> dict[str, Any]:
        return envelope(event, event_id=event_id)

    async def event(
        self, event: dict[str, Any], *, event_id: str | None = None, retry: int | None = None
    ) -> tuple[aiohttp.ClientResponse, str]:
        envelope = self.envelope(event, event_id=event_id)
        headers = {"X-Slack-Retry-Num": str(retry), "X-Slack-Retry-Reason": "http_timeout"} if retry else None
        response = await self.post(json.dumps(envelope), "application/json", headers=headers)
        return response, envelope["event_id"]

    async def dm(self, text: str, *, user: str = DANA, event_id: str | None = None, retry: int | None = None) -> str:
        """A direct message from ``user``; returns the event id."""
        ts = f"{int(time.time())}.{next(_ids):06d}"
        event = {
            "client_msg_id": f"msg-{next(_ids)}", "type": "message", "text": text, "user": user, "ts": ts,
            "team": TEAM_ID, "channel": dm_of(user), "channel_type": "im",
            "blocks": [{"type": "rich_text", "block_id": "b1", "elements": [
                {"type": "rich_text_section", "elements": [{"type": "text", "text": text}]}]}],
        }
        response, sent_id = await self.event(event, event_id=event_id, retry=retry)
        assert response.status == 200
        return sent_id

    async def command(self, text: str, *, user: str = DANA, channel: str = "C0GENERAL") -> aiohttp.ClientResponse:
        fields = {
            "token": "verification-token-unused", "team_id": TEAM_ID, "team_domain": "fake",
            "channel_id": channel, "channel_name": "general", "user_id": user, "user_name": "dana",
            "command": "/brm", "text": text, "api_app_id": "A0FAKE", "is_enterprise_install": "false",
            "response_url": self.fake.response_url(f"cmd{next(_ids)}"), "trigger_id": f"trig.{next(_ids)}.cmd",
        }
        return await self.post(urlencode(fields), "application/x-www-form-urlencoded")

    async def interact(self, payload: dict[str, Any]) -> aiohttp.ClientResponse:
        return await self.post(urlencode({"payload": json.dumps(payload)}), "application/x-www-form-urlencoded")

    def press_payload(self, message: Call, label: str, *, user: str = DANA) -> dict[str, Any]:
        """The ``block_actions`` payload Slack sends when ``user`` presses ``label`` in ``message``."""
        for block in message.blocks:
            for element in block.get("elements", []) if block.get("type") == "actions" else []:
                if element["text"]["text"] == label:
                    break
            else:
                continue
            break
        else:
            raise AssertionError(f"no button {label!r} in: {message.text}")
        channel, ts = str(message.args["channel"]), str(message.result["ts"])
        thread = message.args.get("thread_ts")
        bot_message = {"type": "message", "subtype": "bot_message", "text": message.args.get("text"), "ts": ts,
                       "bot_id": "B0BOT", "user": BOT_USER_ID, "team": TEAM_ID, "blocks": message.blocks}
        if thread:
            bot_message["thread_ts"] = thread
        return {
            "type": "block_actions",
            "user": {"id": user, "username": "dana", "name": "dana", "team_id": TEAM_ID},
            "api_app_id": "A0FAKE",
            "token": "verification-token-unused",
            "container": {"type": "message", "message_ts": ts, "channel_id": channel, "is_ephemeral": False},
            "trigger_id": f"trig.{next(_ids)}.press",
            "team": {"id": TEAM_ID, "domain": "fake"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel, "name": "directmessage" if channel.startswith("D") else "general"},
            "message": bot_message,
            "state": {"values": {}},
            "response_url": self.fake.response_url(f"press{next(_ids)}"),
            "actions": [{
                "action_id": element["action_id"], "block_id": block["block_id"], "text": element["text"],
                "value": element["value"], "type": "button", "action_ts": f"{int(time.time())}.000200",
                **({"style": element["style"]} if "style" in element else {}),
            }],
        }

    async def press(self, message: Call, label: str, *, user: str = DANA) -> aiohttp.ClientResponse:
        response = await self.interact(self.press_payload(message, label, user=user))
        assert response.status == 200
        return response

    async def settle(self) -> None:
        """Wait until the work Slack was already answered for is done."""
        for _ in range(5):
            await asyncio.sleep(0)
        await self.adapter.drain()


@pytest.fixture
async def fake_slack() -> AsyncIterator[FakeSlack]:
    fake = FakeSlack(users=USERS)
    await fake.start()
    try:
        yield fake
    finally:
        await fake.close()


@pytest.fixture
async def slack(engine: Engine, fake_slack: FakeSlack, clock: FakeClock) -> AsyncIterator[SlackHarness]:
    async with aiohttp.ClientSession() as session:
        adapter = SlackAdapter(
            engine, bot_token=BOT_TOKEN, signing_secret=SIGNING_SECRET, http=session, clock=clock,
            api_url=fake_slack.api_url,
        )
        app = web.Application()
        adapter.mount(app)
        client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        await adapter.start()
        try:
            yield SlackHarness(client, fake_slack, adapter, engine, engine.db)
        finally:
            await adapter.close()
            await client.close()
