"""Rules on what people send: a title needs visible characters; a form token is its owner's."""

from __future__ import annotations

import pytest

from conversations.engine import Engine
from storage.models import DemandRequest, OutboxMessage
from tests.helpers import Chat, count_of, rows_of

INVISIBLE = [
    "\u200b\u200b\u200b\u200b",  # zero-width spaces
    "\u2800\u2800\u2800\u2800",  # Braille pattern blank
    "\u200e\u200f\u200e\u200f\u061c",  # bidi marks
    "\u00ad\u00ad\u00ad\u00ad",  # soft hyphens
    "\u3164\u3164\u3164",  # Hangul filler
    "\u2060\ufeff\u180e\u2061",  # word joiner, BOM, Mongolian vowel separator, function application
    "\u200b \u00a0\u2003\u3000\u200b",  # spaces of every width
    "\ufe0f\ufe0f\U000e0041\U000e0042",  # variation selectors and tags
]


@pytest.mark.parametrize("title", INVISIBLE)
async def test_an_invisible_title_is_refused_in_the_chat(engine: Engine, title: str) -> None:
    chat = Chat(engine)
    await chat.say("new request")
    text = await chat.say(title)
    assert "no visible characters" in text and "What do you need?" in text
    assert await count_of(engine.db, DemandRequest) == 12


@pytest.mark.parametrize("title", INVISIBLE[:4])
async def test_an_invisible_title_outcome_or_description_is_refused_in_the_form(engine: Engine, title: str) -> None:
    chat = Chat(engine, platform="slack")
    values = {"title": title, "description": title, "outcome": title * 5, "category": "idea", "urgency": "low"}
    (refused,) = await chat.submit("intake:submit", values)
    assert refused.form is not None
    assert set(refused.form.errors) == {"title", "description", "outcome"}
    assert all("no visible characters" in e for e in refused.form.errors.values())
    assert await count_of(engine.db, DemandRequest) == 12
    assert await count_of(engine.db, OutboxMessage) == 0, "nothing notified"


async def test_padding_with_invisible_characters_does_not_reach_a_minimum(engine: Engine) -> None:
    chat = Chat(engine)
    await chat.say("new request")
    text = await chat.say("a\u200b\u200b\u200bb")
    assert "at least 3 characters" in text
    await chat.say("Invoice OCR")
    await chat.say("skip")
    text = await chat.say("Faster\u200b\u200b\u200b\u200b\u200b")
    assert "at least 10 characters" in text


async def test_visible_titles_in_any_script_still_pass(engine: Engine) -> None:
    chat = Chat(engine)
    await chat.say("new request")
    text = await chat.say("नमस्ते दुनिया 👩‍💻")  # a conjunct with a ZWJ inside, an emoji ZWJ sequence
    assert "Describe it" in text


async def test_another_persons_form_token_does_not_spoil_the_owners_submission(engine: Engine) -> None:
    dana, eli = Chat(engine, platform="slack"), Chat(engine, email="eli@example.com", platform="slack")
    (opened,) = await dana.submit("intake:open", {})
    assert opened.form is not None
    token = opened.form.context["form_token"]
    values = {"outcome": "Controllers stop rebuilding the same sheet", "category": "idea", "urgency": "low",
              "form_token": token}
    (first,) = await eli.submit("intake:submit", {**values, "title": "Eli's forecast template"})
    assert "Submitted as DR-13" in first.plain_text()
    (owners,) = await dana.submit("intake:submit", {**values, "title": "Dana's forecast template"})
    assert "Submitted as DR-14" in owners.plain_text(), "the owner's own submission is filed"
    titles = [r.title for r in await rows_of(engine.db, DemandRequest)][-2:]
    assert titles == ["Eli's forecast template", "Dana's forecast template"]
    (again,) = await dana.submit("intake:submit", {**values, "title": "Dana's forecast template"})
    assert "already submitted" in again.plain_text(), "her own second submission still files once"
