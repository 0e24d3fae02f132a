"""The app removed (Slack ``app_uninstalled`` / ``tokens_revoked``, Teams uninstall): nothing more is
sent there, and what was queued for those people ends as ``unreachable`` without retries."""

from __future__ import annotations

from typing import Any

from bot.delivery import DeliveryWorker
from conversations import codec
from conversations.messages import Reply
from storage.db import Database
from storage.models import OutboxMessage
from tests.conftest import FakeClock
from tests.helpers import rows_of
from tests.slack.conftest import DANA as SLACK_DANA
from tests.slack.conftest import SlackHarness
from tests.slack.conftest import fake_slack as fake_slack
from tests.slack.conftest import slack as slack
from tests.teams.conftest import BOT_ID, TeamsHarness
from tests.teams.conftest import DANA as TEAMS_DANA
from tests.teams.conftest import egress as egress
from tests.teams.conftest import fake as fake
from tests.teams.conftest import http as http
from tests.teams.conftest import teams as teams


async def _queue(db: Database, clock: FakeClock, subject: str) -> None:
    async with db.transaction() as store:
        dana = await store.people.by_email("dana@example.com")
        assert dana is not None and dana.id is not None
        await store.outbox.enqueue(kind="status", subject=subject, recipient_id=dana.id,
                                   payload=codec.reply_to_json(Reply.text(f"{subject} was approved")), now=clock())


async def _status(db: Database, subject: str) -> OutboxMessage:
    (message,) = [m for m in await rows_of(db, OutboxMessage) if m.subject == subject]
    return message


async def test_slack_app_uninstalled_stops_deliveries_and_marks_them_unreachable(
    slack: SlackHarness, clock: FakeClock
) -> None:
    await slack.dm("hello", user=SLACK_DANA)
    await slack.settle()
    worker = DeliveryWorker(slack.db, {"slack": slack.adapter}, clock=clock)
    await _queue(slack.db, clock, "DR-1")
    assert await worker.run_once() == 1  # installed: delivered
    posted = slack.fake.count("chat.postMessage")

    response, _ = await slack.event({"type": "app_uninstalled"})
    assert response.status == 200
    await slack.settle()
    await _queue(slack.db, clock, "DR-2")
    assert await worker.run_once() == 0
    assert slack.fake.count("chat.postMessage") == posted  # nothing more was sent
    message = await _status(slack.db, "DR-2")
    assert (message.status, message.attempts) == ("unreachable", 1)
    assert await worker.run_once() == 0  # and it is not tried again
    assert (await _status(slack.db, "DR-2")).attempts == 1


async def test_slack_tokens_revoked_for_the_bot_marks_the_workspace_unreachable(
    slack: SlackHarness, clock: FakeClock
) -> None:
    await slack.dm("hello", user=SLACK_DANA)
    await slack.settle()
    response, _ = await slack.event({"type": "tokens_revoked", "tokens": {"oauth": [], "bot": ["B0BOT"]}})
    assert response.status == 200
    await slack.settle()
    posted = slack.fake.count("chat.postMessage")
    await _queue(slack.db, clock, "DR-3")
    assert await DeliveryWorker(slack.db, {"slack": slack.adapter}, clock=clock).run_once() == 0
    assert slack.fake.count("chat.postMessage") == posted
    assert (await _status(slack.db, "DR-3")).status == "unreachable"


def _uninstall(teams: TeamsHarness) -> dict[str, Any]:
    activity = teams.personal(TEAMS_DANA, "")
    for key in ("text", "textFormat", "entities"):
        activity.pop(key, None)
    activity.update(type="installationUpdate", action="remove")
    return activity


async def test_teams_uninstall_stops_deliveries_until_the_app_is_installed_again(
    teams: TeamsHarness, demo_db: Database, clock: FakeClock
) -> None:
    await teams.send(teams.personal(TEAMS_DANA, "hello"))
    worker = DeliveryWorker(demo_db, {"teams": teams.adapter}, clock=clock)
    await teams.send(_uninstall(teams))
    sent = len(teams.fake.messages)
    await _queue(demo_db, clock, "DR-4")
    assert await worker.run_once() == 0
    assert len(teams.fake.messages) == sent
    assert (await _status(demo_db, "DR-4")).status == "unreachable"

    await teams.send(teams.install_personal(TEAMS_DANA))  # installed again
    await _queue(demo_db, clock, "DR-5")
    assert await worker.run_once() == 1
    assert "DR-5 was approved" in teams.fake.messages[-1].text


async def test_teams_bot_removed_from_the_members_counts_as_an_uninstall(
    teams: TeamsHarness, demo_db: Database, clock: FakeClock
) -> None:
    await teams.send(teams.personal(TEAMS_DANA, "hello"))
    removed = teams.install_personal(TEAMS_DANA)
    removed.pop("membersAdded")
    removed["membersRemoved"] = [{"id": BOT_ID}]
    await teams.send(removed)
    await _queue(demo_db, clock, "DR-6")
    sent = len(teams.fake.messages)
    assert await DeliveryWorker(demo_db, {"teams": teams.adapter}, clock=clock).run_once() == 0
    assert len(teams.fake.messages) == sent
    assert (await _status(demo_db, "DR-6")).status == "unreachable"
