"""The Teams findings of the hardening review, each as a person or an attacker would meet it.

Tokens, the OpenID metadata and the Bot Connector are local fakes on 127.0.0.1; the bot is the
real aiohttp server with botbuilder's CloudAdapter.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from adapters.teams import TeamsAdapter, TeamsConfig
from adapters.teams.render import render
from bot.web import build_web_app
from conversations.engine import Engine
from conversations.messages import Choices, Facts, Option, Reply, Text
from storage.db import Database
from tests.teams.conftest import (
    ALICE,
    DANA,
    NORA,
    TENANT,
    TeamsHarness,
    TeamsUser,
    open_harness,
)
from tests.teams.fake_connector import FakeConnector, FakeLogin
from tests.teams.test_conversations import _requests

APP_ID = "9e2b0f6a-0c5d-4b3e-8d1a-6f7e5c4b3a21"
PASSWORD = "s3cret-teams-password-value"
OTHER_TENANT = "0badc0de-0000-4000-8000-0000000000ff"
# Someone in another organisation whose directory also says alice@example.com.
MALLORY = TeamsUser(
    "29:1Mallory_other_tenant", "6d6c1a3e-0000-4000-8000-0000000bad00", "Alice Moreno", "alice@example.com",
    "a:1Xx5malloryPersonalChat",
)


# --- fakes of Microsoft's login ----------------------------------------------------------------


class Tarpit:
    """An HTTP server (in its own thread) that accepts and then says nothing until released.

    A thread, not the test's event loop: a bot that blocks its loop on the fetch must not
    also block the server it waits for.
    """

    def __init__(self, hold_seconds: float = 15.0) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.holding = threading.Event()
        self.release = threading.Event()
        self.hold_seconds = hold_seconds
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/.well-known/openidconfiguration"

    def _run(self) -> None:
        held: list[socket.socket] = []
        deadline: float | None = None
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
                self.connections += 1
                held.append(conn)
                self.holding.set()
                deadline = deadline or time.monotonic() + self.hold_seconds
            except TimeoutError:
                pass
            if self.release.is_set() or (deadline is not None and time.monotonic() > deadline):
                self.holding.clear()
                for conn in held:
                    conn.close()
                held.clear()
        for conn in held:
            conn.close()
        self.sock.close()


@pytest.fixture
def tarpit() -> Iterator[Tarpit]:
    pit = Tarpit()
    pit.thread.start()
    try:
        yield pit
    finally:
        pit.release.set()
        pit.stopped.set()
        pit.thread.join(5)


def _claims(service_url: str, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {"iss": "https://api.botframework.com", "aud": APP_ID, "serviceurl": service_url,
              "nbf": now - 10, "exp": now + 3600}
    claims.update(extra)
    return claims


@pytest.fixture
async def authed(
    engine: Engine, demo_db: Database, fake: tuple[FakeConnector, str], http: aiohttp.ClientSession,
    login: FakeLogin,
) -> AsyncIterator[TeamsHarness]:
    config = TeamsConfig(app_id=APP_ID, app_password=PASSWORD, openid_metadata_url=login.metadata_url)
    harness, client = await open_harness(engine, demo_db, fake, config, http=http)
    try:
        yield harness
    finally:
        await harness.adapter.close()
        await client.close()


def _quiet_channel_message(teams: TeamsHarness) -> dict[str, Any]:
    """Channel talk not addressed to the bot: a turn that sends nothing."""
    return teams.channel(DANA, "lunch at noon?", mention=False)


# --- 1: forged tokens are 401, not 500 -----------------------------------------------------------


async def test_forged_and_malformed_tokens_answer_401_and_a_real_one_passes(
    authed: TeamsHarness, login: FakeLogin
) -> None:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    activity = _quiet_channel_message(authed)
    url = activity["serviceUrl"]
    stranger_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = {
        "garbage": "Bearer not-a-jwt-at-all",
        "alg none": "Bearer " + jwt.encode(_claims(url), None, algorithm="none"),
        "unknown key": "Bearer " + login.mint(_claims(url), key=stranger_key, kid="who-knows"),
        "our kid, another key": "Bearer " + login.mint(_claims(url), key=stranger_key),
        "HS256 with the app password": "Bearer " + jwt.encode(
            _claims(url), PASSWORD, algorithm="HS256", headers={"kid": login.kid}
        ),
        "expired": "Bearer " + login.mint(_claims(url, exp=int(time.time()) - 3600)),
        "another bot's": "Bearer " + login.mint(_claims(url, aud="another-app")),
        "another issuer": "Bearer " + login.mint(_claims(url, iss="https://evil.example")),
        "another service url": "Bearer " + login.mint(_claims("https://smba.example.net/")),
        "no scheme": login.mint(_claims(url)),
    }
    for what, header in forged.items():
        answer = await authed.post(activity, headers={"Authorization": header})
        assert answer.status == 401, (what, answer.status, await answer.text())
        assert PASSWORD not in await answer.text()

    good = "Bearer " + login.mint(_claims(url))
    answer = await authed.post(activity, headers={"Authorization": good})
    assert answer.status == 201, await answer.text()
    assert login.fetches == 1  # fetched at start; ten bad tokens fetched nothing more


# --- 2: a slow metadata endpoint never freezes the process ----------------------------------------


async def test_a_silent_metadata_endpoint_never_blocks_health_or_other_requests(
    engine: Engine, demo_db: Database, fake: tuple[FakeConnector, str], tarpit: Tarpit
) -> None:
    from bot.web import build_web_app
    from tests.teams.conftest import TeamsAdapter  # the real adapter, served as serve serves it

    config = TeamsConfig(app_id=APP_ID, app_password=PASSWORD, openid_metadata_url=tarpit.url)
    async with aiohttp.ClientSession() as session:
        adapter = TeamsAdapter(engine=engine, db=demo_db, config=config, http=session)
        client = TestClient(TestServer(build_web_app(demo_db, [adapter]), host="127.0.0.1"))
        await client.start_server()
        starting = asyncio.create_task(adapter.start())  # the first fetch hangs in the tarpit
        try:
            maker = TeamsHarness(client, fake[0], adapter, fake[1])
            activity = maker.personal(DANA, "hello")
            header = {"Authorization": "Bearer " + FakeLogin().mint(_claims(activity["serviceUrl"]))}
            for _ in range(20):
                answer = await maker.post(activity, headers=header)
                assert answer.status in (401, 503), await answer.text()
            health = await client.get("/healthz")
            assert health.status == 200
            # All of this was answered while the metadata endpoint still held the one fetch.
            assert tarpit.holding.is_set() and tarpit.connections == 1
        finally:
            starting.cancel()
            await asyncio.gather(starting, return_exceptions=True)
            await adapter.close()
            await client.close()
    assert fake[0].calls == []


# --- 3: email matches only within the configured tenants --------------------------------------------


def _in_tenant(activity: dict[str, Any], tenant: str) -> dict[str, Any]:
    activity["conversation"]["tenantId"] = tenant
    activity["channelData"]["tenant"]["id"] = tenant
    return activity


@pytest.fixture
async def tenants(
    engine: Engine, demo_db: Database, http: aiohttp.ClientSession
) -> AsyncIterator[tuple[TeamsHarness, TeamsHarness]]:
    """A multi-tenant bot that trusts TENANT, and a single-tenant one; both know Mallory's roster entry."""
    connector = FakeConnector(members={u.id: u.roster() for u in (DANA, ALICE, NORA, MALLORY)})
    server = TestServer(connector.app(), host="127.0.0.1")
    await server.start_server()
    fake = (connector, str(server.make_url("/")).rstrip("/") + "/")
    multi, multi_client = await open_harness(
        engine, demo_db, fake, TeamsConfig(local_mode=True, allowed_tenants=frozenset({TENANT})), http=http
    )
    single, single_client = await open_harness(
        engine, demo_db, fake,
        TeamsConfig(local_mode=True, app_type="SingleTenant", tenant_id=TENANT), http=http,
    )
    try:
        yield multi, single
    finally:
        for harness, client in ((multi, multi_client), (single, single_client)):
            await harness.adapter.close()
            await client.close()
        await server.close()


async def test_a_user_of_another_tenant_with_a_brms_email_is_not_that_brm(
    tenants: tuple[TeamsHarness, TeamsHarness], demo_db: Database
) -> None:
    multi, _ = tenants
    await multi.send(multi.personal(ALICE, "my requests"))
    alices_view = multi.fake.text()
    assert "DR-" in alices_view  # the real Alice sees her partners' demand

    multi.fake.calls.clear()
    await multi.send(_in_tenant(multi.personal(MALLORY, "my requests"), OTHER_TENANT))
    assert multi.fake.messages and "DR-" not in multi.fake.text()
    async with demo_db.transaction() as store:
        alice = await store.people.by_email("alice@example.com")
        assert alice is not None
        identity = await store.people.by_identity(platform="teams", workspace=OTHER_TENANT, user_id=MALLORY.id)
        assert identity is not None and identity.id != alice.id


async def test_a_single_tenant_app_refuses_strangers_politely_and_writes_nothing(
    tenants: tuple[TeamsHarness, TeamsHarness], demo_db: Database
) -> None:
    _, single = tenants
    await single.send(_in_tenant(single.personal(MALLORY, "new request"), OTHER_TENANT))
    [answer] = single.fake.messages
    assert "serves only its own organisation" in answer.text
    async with demo_db.transaction() as store:
        assert await store.people.by_identity(platform="teams", workspace=OTHER_TENANT, user_id=MALLORY.id) is None
    from adapters.teams import references

    assert await references.load(demo_db, tenant=OTHER_TENANT, scope=references.USER, target=MALLORY.id) is None


# --- 5: local mode's service URLs --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path", ["v3/conversations/x/activities?", "admin/reset?x=", "anything/", "_connector#frag"]
)
async def test_local_mode_refuses_loopback_service_urls_with_other_paths(teams: TeamsHarness, path: str) -> None:
    activity = teams.personal(DANA, "help")
    activity["serviceUrl"] = teams.service_url + path
    answer = await teams.post(activity)
    assert answer.status == 403
    assert teams.fake.calls == []


# --- 6: channel cards belong to their owner -----------------------------------------------------------


async def test_another_member_cannot_press_or_submit_someone_elses_channel_card(
    teams: TeamsHarness, demo_db: Database
) -> None:
    await teams.send(teams.personal(NORA, "hello"))  # Nora has a personal chat with the bot
    teams.fake.calls.clear()

    question = await teams.send(teams.channel(DANA, "new request"))
    thread = question["conversation"]["id"].split("=")[1]
    await teams.send(teams.channel(DANA, "Supplier portal logins", thread=thread))
    await teams.send(teams.channel(DANA, "skip", thread=thread))
    await teams.send(teams.channel(DANA, "Suppliers log in without calling us", thread=thread))
    card_call = next(c for c in reversed(teams.fake.messages) if c.card)
    button = next(a for a in _actions(card_call.card) if a.get("data"))
    assert button["data"]["brm"]["owner"]
    sent_before = len(teams.fake.messages)

    pressed = teams.submit(NORA, "bot-card", button["data"], personal=False, thread=thread)
    await teams.send(pressed)
    assert teams.fake.of("update") == []  # Dana's card is untouched
    [private] = teams.fake.messages[sent_before:]
    assert private.conversation == NORA.conversation and "belongs to someone else" in private.text

    # Dana's own press still works.
    await teams.send(teams.submit(DANA, "bot-card", button["data"], personal=False, thread=thread))
    assert len(teams.fake.of("update")) == 1
    assert "✓" in teams.fake.of("update")[0].text


async def test_another_member_cannot_file_someone_elses_form_card(teams: TeamsHarness, demo_db: Database) -> None:
    question = await teams.send(teams.channel(DANA, "form"))
    thread = question["conversation"]["id"].split("=")[1]
    card_call = next(c for c in reversed(teams.fake.messages) if c.card)
    [submit] = [a for a in _actions(card_call.card) if a.get("data", {}).get("brm", {}).get("kind") == "form"]
    values = {"title": "Supplier portal logins", "description": "", "category": "idea",
              "outcome": "Suppliers log in without calling us", "urgency": "low", "partner": "1",
              "desired_date": ""}
    before = await _count_requests(demo_db)
    await teams.send(teams.submit(NORA, "bot-1", {**submit["data"], **values}, personal=False, thread=thread))
    assert await _count_requests(demo_db) == before
    await teams.send(teams.submit(DANA, "bot-1", {**submit["data"], **values}, personal=False, thread=thread))
    assert await _count_requests(demo_db) == before + 1


# --- 11: throttled replies survive a stop ------------------------------------------------------------


async def test_replies_teams_throttled_are_kept_in_the_outbox_when_the_adapter_stops(
    engine: Engine, demo_db: Database, fake: tuple[FakeConnector, str], http: aiohttp.ClientSession
) -> None:
    connector, _ = fake
    adapter = TeamsAdapter(engine=engine, db=demo_db, config=TeamsConfig(local_mode=True), http=http)
    client = TestClient(TestServer(build_web_app(demo_db, [adapter]), host="127.0.0.1"))
    await client.start_server()
    harness = TeamsHarness(client, connector, adapter, fake[1])
    try:
        for _ in range(4):
            connector.fail_next(429, times=5, retry_after="60")  # every attempt inside the turn is throttled
            await harness.send(harness.personal(DANA, "cancel"))
            connector.failures.clear()
        assert connector.messages == []
        await asyncio.wait_for(adapter.close(), 5)  # what SIGTERM does: nothing to wait for
    finally:
        await client.close()
    async with demo_db.transaction() as store:
        kept = [m for m in await store.outbox.all() if m.kind == "reply"]
    assert len(kept) == 4 and all(m.status == "pending" for m in kept)
    assert all("nothing to cancel" in json.dumps(m.payload) for m in kept)


# --- 14: malformed activities are 400 and write nothing ----------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"channelData": "tenant"},
        {"entities": {"type": "mention"}},
        {"entities": ["mention"]},
        {"from": None},
        {"from": "29:someone"},
        {"value": "submit"},
        {"conversation": ["a:1"]},
        {"text": {"html": "hi"}},
        {"channelData": {"tenant": "t"}},
    ],
)
async def test_malformed_activities_answer_400_and_change_nothing(
    teams: TeamsHarness, demo_db: Database, change: dict[str, Any]
) -> None:
    activity = {**teams.personal(NORA, "new request"), **change}
    answer = await teams.post(activity)
    assert answer.status == 400, await answer.text()
    assert "malformed" in (await answer.json())["error"] or "activity" in (await answer.json())["error"]
    assert teams.fake.calls == []
    async with demo_db.transaction() as store:
        assert await store.people.by_email(NORA.email) is None


# --- 21: deliveryMode expectReplies ---------------------------------------------------------------------


async def test_expect_replies_answers_the_replies_in_the_body(teams: TeamsHarness, demo_db: Database) -> None:
    activity = {**teams.personal(DANA, "help"), "deliveryMode": "expectReplies"}
    answer = await teams.post(activity)
    assert answer.status == 200, await answer.text()
    body = await answer.json()
    texts = " ".join(str(a.get("text") or a.get("attachments")) for a in body["activities"])
    assert "new request" in texts
    assert teams.fake.messages == []  # the replies went in the response, not to the connector


# --- 22: typed text is kept ---------------------------------------------------------------------------


async def test_text_between_angle_brackets_is_kept_as_typed(teams: TeamsHarness, demo_db: Database) -> None:
    typed = "Cost must stay &lt; 5000 EUR and &gt; 1000 EUR, says &lt;b&gt;"  # as Teams sends "<" and ">"
    for line in ("new request", "Keep supplier costs in range", typed, "Costs stay inside the agreed range",
                 "Idea", "High", "1", "skip", "submit"):
        await teams.send(teams.personal(DANA, line))
    assert "Submitted as DR-13" in teams.fake.messages[-1].text
    [request] = [r for r in await _requests(demo_db) if r.id == 13]
    assert request.description == "Cost must stay < 5000 EUR and > 1000 EUR, says <b>"
    raw = teams.personal(DANA, "a < b and c > d")
    from adapters.teams.inbound import message_text

    assert message_text(raw) == "a < b and c > d"
    mention = teams.channel(DANA, "request <b>Faster</b> scans <at>Alice Moreno</at>")
    assert message_text(mention) == "request Faster scans Alice Moreno"
    html = {**teams.personal(DANA, "<p>one</p><p>two &amp;lt; three</p>"), "textFormat": "xml"}
    assert message_text(html) == "one\ntwo &lt; three"


# --- 23: what people typed is shown as typed ----------------------------------------------------------


def test_cards_keep_line_breaks_and_stars_and_label_the_drop_down() -> None:
    facts = Facts(title="Your request", items=(("Title", "A *star* title"), ("Description", "line one\nline two")))
    [message] = render(Reply(blocks=(facts,)))
    card = message["attachments"][0]["content"]
    values = {f["title"]: f["value"] for e in card["body"] if e["type"] == "FactSet" for f in e["facts"]}
    assert values["Title"] == "A \\*star\\* title"  # escaped: a star, not bold
    assert values["Description"] == "line one\n\nline two"  # a line break in card markdown

    many = Choices(id="intake:partner", prompt="Which *business partner*?",
                   options=tuple(Option(str(i), f"Partner {i}") for i in range(8)))
    [message] = render(Reply(blocks=(Text("Pick one"), many)))
    body = message["attachments"][0]["content"]["body"]
    [picker] = [e for e in body if e["type"] == "Input.ChoiceSet"]
    assert picker["isRequired"] and picker["label"] == "Which business partner?"


# --- helpers --------------------------------------------------------------------------------------------


def _actions(card: dict[str, Any] | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def walk(element: Any) -> None:
        if isinstance(element, dict):
            if str(element.get("type", "")).startswith("Action."):
                out.append(element)
            for key in ("body", "items", "actions", "columns"):
                for child in element.get(key, ()) or ():
                    walk(child)

    walk(card)
    return out


async def _count_requests(db: Database) -> int:
    return len(await _requests(db))


