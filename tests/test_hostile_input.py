"""What an attacker or a broken client can type, at every step of the intake and as a command, in
the terminal, in Slack and in Teams: every time a clean answer (no exception, no HTTP 500, no
apology), nothing half-written, and nothing in what the bot renders becomes an active mention."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from adapters.console.render import render as console_render
from adapters.slack.render import messages as slack_messages
from adapters.teams.render import render as teams_render
from conversations.codec import reply_from_json
from conversations.engine import Engine
from conversations.messages import Reply
from storage.db import Database
from storage.models import DemandRequest, OutboxMessage
from tests.helpers import Chat, count_of
from tests.slack.conftest import SlackHarness, fake_slack, slack  # noqa: F401  (the harnesses' fixtures)
from tests.teams.conftest import DANA, TeamsHarness, egress, fake, http, teams  # noqa: F401

CORPUS = [
    "",
    "   ",
    "x" * 50_000,
    "\x00\x01\x07\x08\x1b[31mred\x1b[0m\x7f",
    "\u202eexe.txt\u202c \u2066isolated\u2069",
    "\u200b\u200c\u200d\u2060\ufeff",
    "lone \ud800 surrogate \udfff",
    "<!channel> <!here> <!everyone> @here @channel <@U0ALICE> <!subteam^S123>",
    "<at>Alice Moreno</at> <at id=\"0\">everyone</at>",
    "*bold* _it_ ~strike~ `code` ```block``` [click](javascript:alert(1)) <https://evil.example|login>",
    "${user.email} {{title}} ${$root.secret} {{#each x}}",
    "<script>alert(1)</script> &amp; &lt;b&gt;",
]
# The intake's questions in order, and an answer that moves each on.
STEPS = ["Invoice OCR for accounts payable", "skip", "Invoices are booked without manual typing", "Project",
         "High", "1", "skip"]
ACTIVE_SLACK = re.compile(r"<[!@#]")
APOLOGY = "Sorry"


def _short(text: str) -> str:
    return text[:30].encode("unicode_escape").decode()


def _mrkdwn(node: Any) -> list[str]:
    """The texts Slack parses for mentions and links (``plain_text`` objects show as they are)."""
    if isinstance(node, dict):
        found = [node["text"]] if node.get("type") == "mrkdwn" and isinstance(node.get("text"), str) else []
        return found + [t for value in node.values() for t in _mrkdwn(value)]
    if isinstance(node, list):
        return [t for item in node for t in _mrkdwn(item)]
    return []


def _assert_inert(replies: list[Reply]) -> None:
    for reply in replies:
        assert APOLOGY not in reply.plain_text()
        for message in slack_messages([reply]):
            for text in [message.text, *_mrkdwn(message.blocks)]:
                assert not ACTIVE_SLACK.search(text), text[:300]
        for activity in teams_render(reply):
            assert "mention" not in json.dumps(activity.get("entities") or []), activity
            if isinstance(activity.get("text"), str):
                assert "<at" not in activity["text"], activity["text"][:300]
        console_render(reply)


async def _walk(say: Callable[[str], Awaitable[None]], *, items: list[str]) -> None:
    """Every item as a command, then at each step of the intake before the step's real answer,
    then at the confirmation; then cancel."""
    for item in items:
        await say(item)
        await say("cancel")
    await say("new request")
    for answer in STEPS:
        for item in items:
            await say(item)
        await say(answer)
    for item in items:
        await say(item)
    await say("cancel")


async def test_the_terminal_engine_answers_hostile_input_cleanly(engine: Engine) -> None:
    chat = Chat(engine)
    seen: list[Reply] = []

    async def say(text: str) -> None:
        await chat.say(text)
        assert chat.replies, f"no answer to {_short(text)}"
        seen.extend(chat.replies)

    await _walk(say, items=CORPUS)
    _assert_inert(seen)
    assert await count_of(engine.db, DemandRequest) == 12, "nothing filed"
    assert await count_of(engine.db, OutboxMessage) == 0, "nothing notified"


@pytest.mark.parametrize("item", CORPUS[2:], ids=lambda s: _short(s))
async def test_hostile_form_values_are_refused_or_kept_as_typed(engine: Engine, item: str) -> None:
    chat = Chat(engine, platform="slack")
    values = {"title": item, "description": item, "outcome": item, "category": item, "urgency": item,
              "partner": item, "desired_date": item, "source_link": item, "source_channel": item, "form_token": item}
    replies = await chat.submit("intake:submit", values)
    _assert_inert(replies)
    assert replies[0].form is not None and replies[0].form.errors, "refused with field errors"
    assert await count_of(engine.db, DemandRequest) == 12


async def test_injection_in_a_filed_request_stays_inert_everywhere_it_is_shown(engine: Engine) -> None:
    chat = Chat(engine)
    title = "<!channel> <at>Alice</at> ${x} {{y}} *z*"
    for line in ("new request", title, CORPUS[9], CORPUS[7] + " outcome", "Project", "High", "1", "skip"):
        await chat.say(line)
    done = await chat.say("submit")
    assert "Submitted as DR-13" in done
    seen = list(chat.replies)
    await chat.say("status DR-13")
    seen += chat.replies
    alice = Chat(engine, email="alice@example.com")
    await alice.say("my requests")
    seen += alice.replies
    async with engine.db.transaction() as store:
        (notification,) = await store.outbox.all()
    seen.append(reply_from_json(notification.payload))
    _assert_inert(seen)


async def _slack_posts_since(slack: SlackHarness, before: int) -> list[Any]:  # noqa: F811
    return [c for c in slack.fake.calls[before:] if c.method in ("chat.postMessage", "chat.update")
            or c.method.startswith("response:")]


async def test_slack_answers_hostile_input_cleanly(slack: SlackHarness) -> None:  # noqa: F811
    async def say(text: str) -> None:
        before = slack.fake.count("chat.postMessage")
        await slack.dm(text)
        await slack.fake.wait_for("chat.postMessage", before + 1)
        await slack.settle()

    await _walk(say, items=[c for c in CORPUS if c.strip()])
    for item in [c for c in CORPUS[2:] if "\ud800" not in c]:  # a form post is UTF-8: no lone surrogates
        response = await slack.command(item)
        assert response.status == 200
    await slack.settle()
    calls = await _slack_posts_since(slack, 0)
    assert calls and all(c.status == 200 for c in calls)
    for call in calls:
        assert APOLOGY not in json.dumps(call.args, ensure_ascii=False)
        for text in [str(call.args.get("text") or ""), *_mrkdwn(call.blocks)]:
            assert not ACTIVE_SLACK.search(text), text[:300]
    assert await count_of(slack.db, DemandRequest) == 12
    assert await count_of(slack.db, OutboxMessage) == 0


async def test_teams_answers_hostile_input_cleanly(teams: TeamsHarness, demo_db: Database) -> None:  # noqa: F811
    async def say(text: str) -> None:
        response = await teams.post(teams.personal(DANA, text))
        assert response.status in (200, 201), await response.text()

    await _walk(say, items=CORPUS)
    for item in CORPUS[2:]:
        response = await teams.post(teams.channel(DANA, item))
        assert response.status in (200, 201), await response.text()
        response = await teams.post(teams.submit(DANA, "1700000000001", {"action": "intake:submit", "title": item,
                                                                         "outcome": item, "category": item}))
        assert response.status in (200, 201), await response.text()
    assert teams.fake.messages
    for call in teams.fake.calls:
        rendered = json.dumps(call.body, ensure_ascii=False)
        assert APOLOGY not in rendered, rendered[:300]
        assert "mention" not in json.dumps(call.body.get("entities") or [])
        if isinstance(call.body.get("text"), str):
            assert "<at" not in call.body["text"], call.body["text"][:300]
    assert await count_of(demo_db, DemandRequest) == 12
