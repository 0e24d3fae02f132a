"""Retention: processed event ids, expired drafts and delivered messages go after BRM_BOT_RETENTION_DAYS."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from bot.delivery import DeliveryWorker
from bot.runtime import sweep
from bot.settings import SettingsError, load_settings
from conversations import codec
from conversations.engine import Engine
from conversations.messages import Address, Delivered, Platform, Reply
from storage.db import Database
from storage.models import ConversationState, OutboxMessage, OutboxStatus, ProcessedEvent
from tests.conftest import FakeClock
from tests.helpers import Chat, rows_of


class Printer:
    platform: Platform = "console"

    async def send(self, to: Address, reply: Reply) -> Delivered:
        return Delivered(message_id="m")


async def test_old_events_drafts_and_delivered_messages_are_deleted_and_recent_ones_kept(
    engine: Engine, demo_db: Database, clock: FakeClock
) -> None:
    keep = timedelta(days=30)
    # 31 days ago: a draft abandoned, and a message delivered.
    old = Chat(engine, email="dana@example.com")
    await old.say("new request")
    await old.say("An abandoned idea")
    async with demo_db.transaction() as store:
        dana = await store.people.by_email("dana@example.com")
        assert dana is not None and dana.id is not None
        for subject in ("old", "failed"):
            await store.outbox.enqueue(kind="note", subject=subject, recipient_id=dana.id,
                                       payload=codec.reply_to_json(Reply.text(subject)), now=clock())
    worker = DeliveryWorker(demo_db, {}, clock=clock, fallback=Printer())
    assert await worker.run_once() == 2
    async with demo_db.transaction() as store:
        (failed,) = [m for m in await store.outbox.all() if m.subject == "failed"]
        assert failed.id is not None
        table = OutboxMessage.__table__  # type: ignore[attr-defined]
        await store.rows(  # as the worker leaves a message it gave up on
            sa.update(table)
            .where(table.c.id == failed.id)
            .values(status=OutboxStatus.FAILED.value, last_error="gave up")
        )

    clock.advance(timedelta(days=31))
    # Today: another conversation and another delivered message.
    recent = Chat(engine, email="priya@example.com")
    await recent.say("new request")
    async with demo_db.transaction() as store:
        await store.outbox.enqueue(kind="note", subject="new", recipient_id=dana.id,
                                   payload=codec.reply_to_json(Reply.text("new")), now=clock())
    assert await worker.run_once() == 1

    swept = await sweep(demo_db, now=clock(), keep=keep)
    assert swept.states == 1 and swept.outbox == 1 and swept.events >= 2

    states = await rows_of(demo_db, ConversationState)
    assert [s.user_id for s in states] == ["priya@example.com"]
    left = {m.subject: m.status for m in await rows_of(demo_db, OutboxMessage)}
    assert left == {"failed": "failed", "new": "sent"}  # failures stay for the operator to look at
    events = await rows_of(demo_db, ProcessedEvent)
    assert events and all(e.at >= clock() - keep for e in events)

    # Dana comes back: her draft expired and is gone; she starts afresh without an error.
    assert "title" in (await old.say("new request")).lower()
    assert await sweep(demo_db, now=clock(), keep=keep) == type(swept)(events=0, states=0, outbox=0)


def test_retention_days_default_to_30_and_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BRM_BOT_RETENTION_DAYS", raising=False)
    assert load_settings().retention_days == 30
    monkeypatch.setenv("BRM_BOT_RETENTION_DAYS", "7")
    assert load_settings().retention_days == 7
    monkeypatch.setenv("BRM_BOT_RETENTION_DAYS", "0")
    with pytest.raises(SettingsError, match="BRM_BOT_RETENTION_DAYS"):
        load_settings()
