"""What people see in Teams: long content arrives whole and within Teams' size limit."""

from __future__ import annotations

import json

from adapters.teams.inbound import Pressed, message_text, read_card_value
from adapters.teams.render import MAX_MESSAGE_BYTES, TEAMS_LIMIT_BYTES, plain_text, render
from conversations.messages import Choices, Facts, Option, Reply, Text, TextStyle
from tests.teams.conftest import DANA, TeamsHarness


def _size(message: dict) -> int:
    """What Teams counts against its 40 KB: the JSON in UTF-16."""
    return len(json.dumps(message, ensure_ascii=False).encode("utf-16-le"))


def test_long_content_is_split_into_messages_teams_accepts() -> None:
    paragraph = "Ünïcödé paragraph about the invoice backlog, with details. " * 40
    long_text = "\n".join(f"{i}: {paragraph}" for i in range(30))  # ~75 KB of UTF-8
    reply = Reply.of(
        Text("Here is your request:", TextStyle.HEADING),
        Facts(items=(("Title", "Invoice OCR"), ("Description", long_text))),
        Choices(id="intake:confirm", prompt="Submit it?", options=(Option("submit", "Submit"),)),
    )
    messages = render(reply)
    assert len(messages) > 3
    assert all(_size(m) < MAX_MESSAGE_BYTES < TEAMS_LIMIT_BYTES for m in messages)
    shown = plain_text(messages)
    for i in range(30):
        assert f"{i}: Ünïcödé paragraph" in shown
    assert messages[-1]["attachments"][0]["content"]["body"][-1]["type"] == "ActionSet"  # buttons come last

    text_only = render(Reply.text(long_text))
    assert len(text_only) > 3 and all(_size(m) < MAX_MESSAGE_BYTES for m in text_only)
    assert "".join(m["text"] for m in text_only).replace("\n", "").replace(" ", "") == long_text.replace(
        "\n", ""
    ).replace(" ", "")


def test_bold_marks_and_warnings_read_as_teams_markdown() -> None:
    [message] = render(Reply.text("Type *status DR-42* to follow it.", TextStyle.WARNING))
    assert message["text"] == "⚠️ Type **status DR-42** to follow it."
    assert message["textFormat"] == "markdown"


def test_many_options_become_a_drop_down_that_answers_like_a_button() -> None:
    options = tuple(Option(str(i), f"Partner {i}") for i in range(1, 9))
    [message] = render(Reply.of(Choices(id="intake:partner", prompt="Which business partner?", options=options)))
    body = message["attachments"][0]["content"]["body"]
    [picker] = [e for e in body if e["type"] == "Input.ChoiceSet"]
    assert [c["title"] for c in picker["choices"]] == [o.label for o in options]
    [ok] = body[-1]["actions"]
    pressed = read_card_value({**ok["data"], picker["id"]: "7"})
    assert pressed == Pressed("intake:partner", "7", "Partner 7", "Which business partner?")


def test_other_mentions_stay_as_names() -> None:
    activity = {
        "text": "<at>BRM Bot</at> request help for <at>Alice Moreno</at>&nbsp;please",
        "recipient": {"id": "28:bot"},
        "entities": [
            {"type": "mention", "mentioned": {"id": "28:bot"}, "text": "<at>BRM Bot</at>"},
            {"type": "mention", "mentioned": {"id": "29:alice"}, "text": "<at>Alice Moreno</at>"},
        ],
    }
    assert message_text(activity) == "request help for Alice Moreno please"


async def test_a_long_reply_reaches_the_person_in_several_messages(teams: TeamsHarness) -> None:
    title = "Self-service analytics for " + "regional finance " * 10
    await teams.send(teams.personal(DANA, "new request"))
    await teams.send(teams.personal(DANA, title[:200]))
    description = "Context. " * 440  # just under the 4,000 character limit
    await teams.send(teams.personal(DANA, description))
    assert all(_size(c.body) < TEAMS_LIMIT_BYTES for c in teams.fake.messages)
    assert "What will be better for the business" in teams.fake.messages[-1].text


HOSTILE = (
    "[Reset your password](https://evil.example/login) ![](https://evil.example/p.png) <at>Everyone</at> <img src=x>"
)


def _links(message: dict) -> list[str]:
    """Markdown links and images Teams would render in the message (text and card texts)."""
    import re

    return re.findall(r"\]\s*\(", plain_text([message]))


def test_hostile_text_is_shown_as_typed_never_as_links_mentions_or_markup() -> None:
    [text] = render(Reply.text(f"Your request *{HOSTILE}* was filed."))
    assert _links(text) == [] and "<" not in text["text"]
    assert "&lt;at&gt;Everyone&lt;/at&gt;" in text["text"] and "**[Reset your password]" in text["text"]

    [card] = render(Reply.of(
        Text(HOSTILE, TextStyle.HEADING),
        Facts(title=HOSTILE, items=(("Title", HOSTILE),)),
        Choices(id="intake:confirm", prompt=HOSTILE, options=(Option("submit", "Submit"),)),
    ))
    assert _links(card) == []
    content = card["attachments"][0]["content"]
    assert "entities" not in content.get("msteams", {})  # an <at> in a card without an entity is text
    shown = plain_text([card]).replace("\u200b", "")
    assert shown.count("[Reset your password](https://evil.example/login)") == 4  # still readable as typed


async def test_a_hostile_title_reaches_teams_inert(teams: TeamsHarness) -> None:
    await teams.send(teams.personal(DANA, "new request"))
    await teams.send(teams.personal(DANA, HOSTILE[:120]))
    await teams.send(teams.personal(DANA, "skip"))
    await teams.send(teams.personal(DANA, "Nobody gets phished"))
    assert teams.fake.messages
    for call in teams.fake.messages:
        assert _links(call.body) == []
        assert "<at>" not in (call.body.get("text") or "") and "<img" not in (call.body.get("text") or "")
