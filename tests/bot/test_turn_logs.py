"""A turn's log lines carry its context: platform, event id, a hash of the conversation, duration."""

from __future__ import annotations

import json
import logging

import pytest

from bot.logs import JsonFormatter, conversation_hash
from conversations.engine import Engine
from tests.helpers import Chat


async def test_each_turn_logs_one_debug_line_with_its_context_and_duration(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    chat = Chat(engine, email="dana@example.com")
    with caplog.at_level(logging.DEBUG, logger="conversations.engine"):
        await chat.say("new request")
        await chat.say("A new invoice scanner for the finance team")
    turns = [r for r in caplog.records if r.name == "conversations.engine" and r.getMessage().startswith("turn ok")]
    assert len(turns) == 2
    assert all(r.levelno == logging.DEBUG for r in turns)
    line = json.loads(JsonFormatter().format(turns[1]))
    assert line["platform"] == "console"
    assert line["event_id"].startswith("test-")
    assert line["conversation"] == conversation_hash(chat.key)
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert "invoice" not in json.dumps(line).lower()  # no message text
    assert "dana@example.com" not in json.dumps(line)


async def test_nothing_about_an_ordinary_turn_is_logged_at_info(
    engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        await Chat(engine).say("help")
    assert [r for r in caplog.records if r.name == "conversations.engine"] == []
