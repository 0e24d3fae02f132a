"""Proactive messages, throttling, and who gets in: the bot speaking first, and staying safe."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import aiohttp
import pytest

from adapters.teams import RetryPolicy, TeamsAdapter, TeamsConfig, references, unreachable
from bot.delivery import DeliveryWorker
from conversations.engine import Engine
from conversations.flows import default_flows
from conversations.messages import Address, Reply
from conversations.ports import DeliveryError, Unreachable
from storage.db import Database
from storage.models import OutboxStatus
from tests.teams.conftest import ALICE, BOT_ID, CHANNEL_ID, DANA, NORA, TENANT, Egress, TeamsHarness, open_harness
from tests.teams.fake_connector import FakeConnector

APP_ID = "9e2b0f6a-0c5d-4b3e-8d1a-6f7e5c4b3a21"


async def _file_request_for_finance(teams: TeamsHarness) -> None:
    for line in ("new request", "Invoice OCR for accounts payable", "skip",
                 "Invoices are booked without manual typing", "Project", "High", "Finance", "skip", "submit"):
        await teams.send(teams.personal(DANA, line))
    assert "Submitted as DR-13" in teams.fake.messages[-1].text


async def test_a_brm_is_notified_in_teams_after_a_restart_through_the_stored_reference(
    engine: Engine, demo_db: Database, fake: tuple[FakeConnector, str], http: aiohttp.ClientSession
) -> None:
    first, client = await open_harness(engine, demo_db, fake, http=http)
    await first.send(first.personal(ALICE, "hello"))  # Alice (Finance's BRM) has talked to the bot
    await _file_request_for_finance(first)
    await first.adapter.close()
    await client.close()

    # A new process: nothing in memory, only the database.
    fresh = Engine(demo_db, default_flows(), clock=lambda: datetime(2026, 11, 23, 9, 5, tzinfo=UTC),
                   default_timezone="UTC")
    restarted = TeamsAdapter(engine=fresh, db=demo_db, config=TeamsConfig(local_mode=True), http=http)
    connector = fake[0]
    before = len(connector.calls)
    worker = DeliveryWorker(demo_db, {"teams": restarted}, clock=lambda: datetime(2026, 11, 23, 9, 5, tzinfo=UTC))
    assert await worker.run_once() == 1
    [note] = connector.calls[before:]
    assert note.kind == "send" and note.conversation == ALICE.conversation
    assert "New demand request DR-13 from Dana Whitfield" in note.text
    assert note.body["channelData"]["tenant"]["id"] == TENANT
    assert note.body["recipient"]["id"] == ALICE.id
    await restarted.close()


async def test_someone_the_bot_never_met_is_reported_unreachable(teams: TeamsHarness, demo_db: Database) -> None:
    with pytest.raises(Unreachable, match="install the app or write to the bot once"):
        await teams.adapter.send(Address("teams", TENANT, user=NORA.id), Reply.text("Hi"))
    assert teams.fake.messages == []

    await teams.send(teams.channel(DANA, "my requests"))  # Dana: only in a channel so far
    await teams.send(teams.personal(ALICE, "hello"))
    found = {p.email: p.reason for p in await unreachable(demo_db)}
    assert found["dana@example.com"] == "seen in Teams, but not in a personal chat with the bot"
    assert found["ben@example.com"] == "never seen in Teams"
    assert "alice@example.com" not in found


async def test_a_channel_can_be_messaged_after_the_app_is_added_to_the_team(teams: TeamsHarness) -> None:
    await teams.send(teams.install_team(ALICE))
    assert "Mention me" in teams.fake.messages[-1].text
    team_channel = teams.fake.messages[-1].conversation
    delivered = await teams.adapter.send(Address("teams", TENANT, channel=team_channel), Reply.text("Digest"))
    assert delivered.message_id is not None
    assert teams.fake.messages[-1].text == "Digest" and teams.fake.messages[-1].kind == "send"

    await teams.send(teams.channel(DANA, "help"))
    await teams.adapter.send(Address("teams", TENANT, channel=CHANNEL_ID), Reply.text("A new post"))
    last = teams.fake.messages[-1]
    assert last.conversation == CHANNEL_ID  # a new post, not a reply in an old thread


async def test_throttled_replies_are_retried_honouring_retry_after(teams: TeamsHarness) -> None:
    teams.fake.fail_next(429, 2, retry_after="3")
    await teams.send(teams.personal(DANA, "hello"))
    assert [c.body["status"] for c in teams.fake.of("refused")] == [429, 429]
    assert "What would you like to do?" in teams.fake.text()  # delivered in the end
    assert len(teams.sleeps) == 2 and all(s >= 3 for s in teams.sleeps)


async def test_a_reply_throttled_for_long_follows_after_the_turn_instead_of_holding_teams(
    teams: TeamsHarness, demo_db: Database
) -> None:
    teams.fake.fail_next(429, retry_after="40")  # far longer than a turn may take
    response = await teams.post(teams.personal(DANA, "hello"))
    assert response.status == 201  # Teams got its answer in time
    assert teams.fake.messages == []  # the replies wait in the outbox, not in the process's memory
    later = datetime.now(UTC) + timedelta(seconds=41)
    worker = DeliveryWorker(demo_db, {"teams": teams.adapter}, clock=lambda: later)
    assert await worker.run_once() == 1
    texts = [m.text for m in teams.fake.messages]
    assert texts[0].startswith("Hi Dana Whitfield!") and "What would you like to do?" in texts[1]
    assert all(m.kind == "send" and m.conversation == DANA.conversation for m in teams.fake.messages)


async def test_server_errors_are_retried_with_backoff(teams: TeamsHarness) -> None:
    teams.fake.fail_next(503)
    teams.fake.fail_next(502)
    teams.fake.fail_next(412)
    await teams.send(teams.personal(DANA, "hello"))
    assert len(teams.fake.of("refused")) == 3
    assert "What would you like to do?" in teams.fake.text()
    assert all(0 <= s <= 5 for s in teams.sleeps)


async def test_a_proactive_send_still_throttled_goes_back_to_the_outbox_with_retry_after(
    teams: TeamsHarness, demo_db: Database
) -> None:
    await teams.send(teams.personal(ALICE, "hello"))
    teams.fake.fail_next(429, 10, retry_after="30")
    with pytest.raises(DeliveryError) as caught:
        await teams.adapter.send(Address("teams", TENANT, user=ALICE.id), Reply.text("Nudge"))
    assert not isinstance(caught.value, Unreachable)
    assert caught.value.retryable and caught.value.retry_after == 30


async def test_a_failed_delivery_is_marked_unreachable_in_the_outbox(teams: TeamsHarness, demo_db: Database) -> None:
    await teams.send(teams.channel(ALICE, "help"))  # Alice: a Teams identity, no personal chat
    await _file_request_for_finance(teams)
    worker = DeliveryWorker(demo_db, {"teams": teams.adapter}, clock=lambda: datetime(2026, 11, 23, 9, 5, tzinfo=UTC))
    assert await worker.run_once() == 0
    async with demo_db.transaction() as store:
        [row] = await store.outbox.all()
    assert row.status == OutboxStatus.UNREACHABLE
    assert "install the app" in (row.last_error or "")


async def test_with_an_app_id_a_request_without_a_token_is_refused(
    engine: Engine, demo_db: Database, fake: tuple[FakeConnector, str], http: aiohttp.ClientSession
) -> None:
    config = TeamsConfig(app_id=APP_ID, app_password="not-a-real-secret")
    teams, client = await open_harness(engine, demo_db, fake, config, http=http)
    try:
        response = await teams.post(teams.personal(DANA, "hello"))
        assert response.status == 401
        response = await teams.post(teams.personal(DANA, "hello"), headers={"Authorization": ""})
        assert response.status == 401
        assert teams.fake.calls == []
        async with demo_db.transaction() as store:
            assert await store.people.by_identity(platform="teams", workspace=TENANT, user_id=DANA.id) is None
    finally:
        await teams.adapter.close()
        await client.close()
    assert "not-a-real-secret" not in repr(config)


async def test_local_mode_answers_only_service_urls_on_this_machine(
    teams: TeamsHarness, demo_db: Database, egress: Egress
) -> None:
    for elsewhere in (
        "https://smba.trafficmanager.net/emea/",
        "http://169.254.169.254/latest/",
        "http://10.0.0.1/",
        "http://example.com/",
        "http://example.com\\@127.0.0.1/",  # 127.0.0.1 to urlsplit, example.com to urllib3
        "http://127.0.0.1:80@example.com/",
        "ftp://127.0.0.1/",
    ):
        activity = teams.personal(DANA, "hello")
        activity["serviceUrl"] = elsewhere
        response = await teams.post(activity)
        assert response.status == 403, elsewhere
        assert "loopback" in (await response.json())["error"]
    assert teams.fake.calls == [] and egress == []
    async with demo_db.transaction() as store:  # the turn never ran: nobody was created or remembered
        assert await store.people.by_identity(platform="teams", workspace=TENANT, user_id=DANA.id) is None

    await teams.send(teams.personal(DANA, "hello"))  # the same bot still answers its own machine
    assert "What would you like to do?" in teams.fake.text()
    assert egress and all(url.startswith(teams.service_url) for url in egress)


async def test_local_mode_never_sends_to_a_stored_reference_off_this_machine(
    teams: TeamsHarness, demo_db: Database, egress: Egress
) -> None:
    # e.g. a database that once served production, reused to try the bot locally
    for where in ("http://10.0.0.1/", "http://example.com/"):
        reference = {
            "user": {"id": NORA.id}, "bot": {"id": BOT_ID}, "channelId": "msteams", "serviceUrl": where,
            "conversation": {"id": NORA.conversation, "conversationType": "personal", "tenantId": TENANT},
        }
        await references.save(demo_db, tenant=TENANT, scope=references.USER, target=NORA.id, reference=reference)
        with pytest.raises(Unreachable, match="local mode"):
            await teams.adapter.send(Address("teams", TENANT, user=NORA.id), Reply.text("Nudge"))
    assert teams.fake.calls == [] and egress == []


async def test_a_request_without_json_content_type_gets_a_clear_answer(teams: TeamsHarness) -> None:
    response = await teams.http.post("/api/messages", data=b'{"type": "message"}')
    assert response.status == 415
    response = await teams.http.post(
        "/api/messages", data=b"not json", headers={"Content-Type": "application/json"}
    )
    assert response.status == 400


async def test_without_a_shared_session_the_sdk_transport_is_used_and_retried_the_same_way(
    engine: Engine, demo_db: Database, fake: tuple[FakeConnector, str]
) -> None:
    teams, client = await open_harness(engine, demo_db, fake, http=None)
    try:
        teams.fake.fail_next(429, retry_after="2")
        teams.fake.fail_next(504)
        await teams.send(teams.personal(DANA, "hello"))
        assert [c.body["status"] for c in teams.fake.of("refused")] == [429, 504]
        assert "What would you like to do?" in teams.fake.text()
        assert teams.sleeps[0] >= 2
    finally:
        await teams.adapter.close()
        await client.close()


def test_retry_delays_never_undercut_retry_after() -> None:
    policy = RetryPolicy()
    assert all(policy.delay(attempt, 7.0) >= 7.0 for attempt in range(5))
    assert all(0 <= policy.delay(attempt, None) <= policy.cap for attempt in range(10))
