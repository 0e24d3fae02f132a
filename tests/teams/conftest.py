"""Fixtures for the Teams adapter: the real aiohttp server with the real CloudAdapter, a fake
Bot Connector on 127.0.0.1, and activities shaped exactly as Teams sends them.

Most tests run with authentication off (``TeamsConfig(local_mode=True)``, as
``TEAMS_LOCAL_MODE=true`` configures it) and the fake's loopback address as ``serviceUrl``.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.teams import RetryPolicy, TeamsAdapter, TeamsConfig
from bot.web import build_web_app
from conversations.engine import Engine
from storage.db import Database
from tests.teams.fake_connector import FakeConnector, FakeLogin

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
BOT_ID = "28:9e2b0f6a-0c5d-4b3e-8d1a-6f7e5c4b3a21"
BOT_NAME = "BRM Bot"
TEAM_ID = "19:2c4ff0d1c9b84a7f8b1d0e3f4a5b6c7d@thread.tacv2"
CHANNEL_ID = "19:8a1e2d3c4b5a69788796a5b4c3d2e1f0@thread.tacv2"
_ids = itertools.count(1_700_000_000_000)


@dataclass(frozen=True)
class TeamsUser:
    id: str
    aad: str
    name: str
    email: str
    conversation: str  # their personal chat with the bot

    def roster(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "aadObjectId": self.aad,
            "email": self.email,
            "userPrincipalName": self.email,
            "tenantId": TENANT,
            "userRole": "user",
        }


DANA = TeamsUser(
    "29:1GcS4Ez9pBeTXmU0jNs_dana", "6d6c1a3e-0000-4000-8000-00000000da4a", "Dana Whitfield", "dana@example.com",
    "a:1Kk8xXq9danaPersonalChat",
)
ALICE = TeamsUser(
    "29:1Alice_moreno_teams_user", "6d6c1a3e-0000-4000-8000-0000000a11ce", "Alice Moreno", "alice@example.com",
    "a:1Zz7alicePersonalChat",
)
NORA = TeamsUser(
    "29:1Nora_new_teams_user", "6d6c1a3e-0000-4000-8000-00000000a0a0", "Nora New", "nora.new@example.com",
    "a:1Yy6noraPersonalChat",
)


def _base(user: TeamsUser, service_url: str, *, personal: bool, thread: str | None = None) -> dict[str, Any]:
    activity_id = str(next(_ids))
    if personal:
        conversation = {"conversationType": "personal", "tenantId": TENANT, "id": user.conversation}
        channel_data: dict[str, Any] = {"tenant": {"id": TENANT}}
    else:
        root = thread or activity_id
        conversation = {
            "isGroup": True,
            "conversationType": "channel",
            "tenantId": TENANT,
            "id": f"{CHANNEL_ID};messageid={root}",
        }
        channel_data = {
            "teamsChannelId": CHANNEL_ID,
            "teamsTeamId": TEAM_ID,
            "channel": {"id": CHANNEL_ID},
            "team": {"id": TEAM_ID},
            "tenant": {"id": TENANT},
        }
    return {
        "id": activity_id,
        "timestamp": "2026-11-23T09:00:00.000Z",
        "localTimestamp": "2026-11-23T04:00:00.000-05:00",
        "localTimezone": "America/New_York",
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": {"id": user.id, "name": user.name, "aadObjectId": user.aad},
        "conversation": conversation,
        "recipient": {"id": BOT_ID, "name": BOT_NAME},
        "locale": "en-US",
        "channelData": channel_data,
    }


@dataclass
class TeamsHarness:
    """The bot's server, the fake connector, and ways to send what Teams sends."""

    http: TestClient
    fake: FakeConnector
    adapter: TeamsAdapter
    service_url: str
    sleeps: list[float] = field(default_factory=list)

    async def post(self, activity: dict[str, Any], *, headers: dict[str, str] | None = None) -> Any:
        return await self.http.post(
            "/api/messages", json=activity, headers={"Content-Type": "application/json", **(headers or {})}
        )

    async def send(self, activity: dict[str, Any]) -> dict[str, Any]:
        """Post an activity as Teams does; returns it (its id is what a button press replies to)."""
        response = await self.post(activity)
        assert response.status in (200, 201), await response.text()
        return activity

    async def invoke(self, activity: dict[str, Any]) -> Any:
        response = await self.post(activity)
        assert response.status == 200, await response.text()
        return await response.json()

    # --- activities ---------------------------------------------------------------------------

    def personal(self, user: TeamsUser, text: str) -> dict[str, Any]:
        activity = _base(user, self.service_url, personal=True)
        activity.update(type="message", text=text, textFormat="plain", entities=[{"type": "clientInfo",
                        "locale": "en-US", "country": "US", "platform": "Web", "timezone": "America/New_York"}])
        return activity

    def channel(self, user: TeamsUser, text: str, *, mention: bool = True, thread: str | None = None) -> dict[str, Any]:
        activity = _base(user, self.service_url, personal=False, thread=thread)
        mention_text = f"<at>{BOT_NAME}</at>"
        entities: list[dict[str, Any]] = [{"type": "clientInfo", "locale": "en-US"}]
        if mention:
            text = f"{mention_text} {text}"
            entities.insert(0, {"mentioned": {"id": BOT_ID, "name": BOT_NAME}, "text": mention_text, "type": "mention"})
        activity.update(type="message", text=text, textFormat="plain", entities=entities)
        return activity

    def submit(self, user: TeamsUser, card_message_id: str, value: dict[str, Any], *, personal: bool = True,
               thread: str | None = None) -> dict[str, Any]:
        """What Teams posts when a card's Action.Submit is pressed: ``value`` = data + inputs."""
        activity = _base(user, self.service_url, personal=personal, thread=thread)
        activity.update(type="message", replyToId=card_message_id, value=value)
        return activity

    def fetch_task(self, user: TeamsUser, message_html: str, *, message_id: str = "1700000000999",
                   command: str = "captureRequest", channel_name: str | None = None) -> dict[str, Any]:
        activity = _base(user, self.service_url, personal=False, thread=message_id)
        if channel_name is not None:
            activity["channelData"]["channel"]["name"] = channel_name
        activity.update(
            type="invoke",
            name="composeExtension/fetchTask",
            value={
                "commandId": command,
                "commandContext": "message",
                "context": {"theme": "default"},
                "messagePayload": {
                    "id": message_id,
                    "messageType": "message",
                    "createdDateTime": "2026-11-23T08:55:00.000Z",
                    "importance": "normal",
                    "locale": "en-us",
                    "linkToMessage": f"https://teams.microsoft.com/l/message/{CHANNEL_ID}/{message_id}"
                    f"?groupId=0000&tenantId={TENANT}&parentMessageId={message_id}",
                    "from": {"user": {"id": NORA.aad, "displayName": NORA.name, "userIdentityType": "aadUser"}},
                    "body": {"contentType": "html", "content": message_html},
                    "attachments": [],
                    "mentions": [],
                    "reactions": [],
                },
            },
        )
        return activity

    def submit_action(
        self, user: TeamsUser, data: dict[str, Any], *, message_id: str = "1700000000999",
        command: str = "captureRequest",
    ) -> dict[str, Any]:
        activity = _base(user, self.service_url, personal=False, thread=message_id)
        activity.update(
            type="invoke",
            name="composeExtension/submitAction",
            value={"commandId": command, "commandContext": "message", "data": data,
                   "context": {"theme": "default"}},
        )
        return activity

    def install_personal(self, user: TeamsUser) -> dict[str, Any]:
        activity = _base(user, self.service_url, personal=True)
        activity.update(type="conversationUpdate", membersAdded=[{"id": BOT_ID}])
        return activity

    def install_team(self, user: TeamsUser) -> dict[str, Any]:
        activity = _base(user, self.service_url, personal=False)
        activity["conversation"] = {"isGroup": True, "conversationType": "channel", "tenantId": TENANT, "id": TEAM_ID}
        activity["channelData"]["eventType"] = "teamMemberAdded"
        activity.update(type="conversationUpdate", membersAdded=[{"id": BOT_ID}])
        return activity


@pytest.fixture
async def fake() -> AsyncIterator[tuple[FakeConnector, str]]:
    connector = FakeConnector(members={u.id: u.roster() for u in (DANA, ALICE, NORA)})
    server = TestServer(connector.app(), host="127.0.0.1")
    await server.start_server()
    try:
        yield connector, str(server.make_url("/")).rstrip("/") + "/"
    finally:
        await server.close()


async def open_harness(
    engine: Engine,
    db: Database,
    fake: tuple[FakeConnector, str],
    config: TeamsConfig | None = None,
    *,
    http: aiohttp.ClientSession | None,
    clock: Callable[[], datetime] | None = None,
) -> tuple[TeamsHarness, TestClient]:
    """The bot served as ``brm-bot serve`` serves it (``http`` is the app's shared session)."""
    connector, service_url = fake
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:  # no waiting in tests; the delays are recorded
        sleeps.append(seconds)

    adapter = TeamsAdapter(
        engine=engine,
        db=db,
        config=config or TeamsConfig(local_mode=True),
        retry=RetryPolicy(sleep=sleep),
        http=http,
        **({"clock": clock} if clock is not None else {}),
    )
    client = TestClient(TestServer(build_web_app(db, [adapter]), host="127.0.0.1"))
    await client.start_server()
    await adapter.start()
    return TeamsHarness(client, connector, adapter, service_url, sleeps), client


class Egress(list[str]):
    """Every URL the bot's shared session was asked to fetch; anything off 127.0.0.1 is stopped."""


class EgressRefused(aiohttp.ClientError):
    pass


@pytest.fixture
def egress() -> Egress:
    return Egress()


@pytest.fixture
async def http(egress: Egress) -> AsyncIterator[aiohttp.ClientSession]:
    """The app's shared session, as ``brm-bot serve`` makes it, that can only reach 127.0.0.1."""

    async def on_start(_: aiohttp.ClientSession, __: object, params: aiohttp.TraceRequestStartParams) -> None:
        egress.append(str(params.url))
        if params.url.host != "127.0.0.1":
            raise EgressRefused(f"a test tried to reach {params.url.host}")

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_start)
    async with aiohttp.ClientSession(trace_configs=[trace]) as session:
        yield session


@pytest.fixture
async def teams(
    engine: Engine, demo_db: Database, fake: tuple[FakeConnector, str], http: aiohttp.ClientSession
) -> AsyncIterator[TeamsHarness]:
    harness, client = await open_harness(engine, demo_db, fake, http=http)
    try:
        yield harness
    finally:
        await harness.adapter.close()
        await client.close()


@pytest.fixture
async def login() -> AsyncIterator[FakeLogin]:
    """Microsoft's Bot Framework login metadata and signing keys, on 127.0.0.1."""
    fake_login = FakeLogin()
    server = TestServer(fake_login.app(), host="127.0.0.1")
    await server.start_server()
    fake_login.base = str(server.make_url("")).rstrip("/")
    try:
        yield fake_login
    finally:
        await server.close()
