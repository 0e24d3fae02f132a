"""Where a request came from: form metadata is the client's to forge, so only what the platform's
own permalinks and channel ids look like is stored; anything else is dropped, never an apology."""

from __future__ import annotations

import pytest

from conversations.engine import Engine
from storage.models import DemandRequest
from tests.helpers import Chat, rows_of

VALUES = {
    "title": "Quarterly forecast template",
    "outcome": "Controllers stop rebuilding the same sheet",
    "category": "enhancement",
    "urgency": "medium",
}


async def _file(engine: Engine, platform: str, **meta: str) -> DemandRequest:
    chat = Chat(engine, platform=platform, channel="D0CHAT")
    replies = await chat.submit("intake:submit", {**VALUES, **meta})
    text = "\n".join(r.plain_text() for r in replies)
    assert "Submitted as" in text and "Sorry" not in text, text
    return (await rows_of(engine.db, DemandRequest))[-1]


@pytest.mark.parametrize(
    "link",
    [
        "javascript:alert(1)",
        "http://acme.slack.com/archives/C1/p1",
        "https://evil.example/archives/C1/p1",
        "https://slack.com.evil.example/archives/C1/p1",
        "https://evilslack.com/archives/C1/p1",
        "https://user:pw@acme.slack.com/archives/C1/p1",
        "https://acme.slack.com:8443/archives/C1/p1",
        "https://acme.slack.com/archives/C1/p1\nX-Injected: 1",
        "https://acme.slack.com/archives/C1/p" + "1" * 2000,
        "data:text/html,<script>alert(1)</script>",
    ],
)
async def test_a_forged_source_link_is_dropped_and_the_request_filed(engine: Engine, link: str) -> None:
    stored = await _file(engine, "slack", source_link=link)
    assert stored.source_link is None


@pytest.mark.parametrize(
    ("platform", "link"),
    [
        ("slack", "https://acme.slack.com/archives/C1/p1700000000000100"),
        ("teams", "https://teams.microsoft.com/l/message/19:abc@thread.tacv2/1700000000000?tenantId=t1"),
        ("teams", "https://teams.cloud.microsoft/l/message/19:abc@thread.tacv2/1700000000000"),
        ("teams", "https://gov.teams.microsoft.com/l/message/19:abc@thread.tacv2/1"),
    ],
)
async def test_the_platforms_own_permalinks_are_kept(engine: Engine, platform: str, link: str) -> None:
    stored = await _file(engine, platform, source_link=link)
    assert stored.source_link == link


@pytest.mark.parametrize("channel", ["C" * 500, "C1\nforged", "<script>", "C1 C2"])
async def test_a_forged_source_channel_is_replaced_by_the_conversation(engine: Engine, channel: str) -> None:
    stored = await _file(engine, "slack", source_channel=channel)
    assert stored.source_channel == "D0CHAT"


async def test_a_real_channel_id_is_kept(engine: Engine) -> None:
    stored = await _file(engine, "teams", source_channel="19:abc123@thread.tacv2")
    assert stored.source_channel == "19:abc123@thread.tacv2"
