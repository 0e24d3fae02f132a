"""Neutral replies as Teams messages: markdown text, or Adaptive Cards (schema 1.5).

Pure functions from :class:`~conversations.messages.Reply` to the JSON of Bot Framework
message activities; nothing here talks to Teams. Choices become ``Action.Submit`` buttons
(a drop-down when there are many options), a :class:`Form` becomes one card with inputs, and
anything larger than a Teams message may be is split over several messages.

Every button carries its meaning in ``data["brm"]`` (read back by
:func:`adapters.teams.inbound.read_card_value`), so pressing it needs no server-side memory
of the card.

Example::

    [message] = render(Reply.text("Hello *there*"))
    assert message == {"type": "message", "text": "Hello **there**", "textFormat": "markdown"}
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

from conversations.messages import Choices, Facts, Field, Form, Link, Option, Reply, Text, TextStyle

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.5"
# Teams refuses a message over 40 KB, counted as UTF-16 (text, card and envelope together:
# HTTP 413 MessageSizeTooBig). Sizes here are UTF-16 bytes, with room for what the Bot
# Connector adds (addressing, ids, channel data).
TEAMS_LIMIT_BYTES = 40_000
MAX_MESSAGE_BYTES = 32_000
# Teams shows at most a handful of buttons side by side; longer option lists become a drop-down.
MAX_BUTTONS = 5
DATA_KEY = "brm"
CHOICE_INPUT = "brm_choice"

JSON = dict[str, Any]

_LINK = re.compile(r"\](?=\s*\()")
_BOLD = re.compile(r"(?<![*\w])\*(?=\S)([^*\n]+?)(?<=\S)\*(?![*\w])")
_PREFIX = {TextStyle.WARNING: "⚠️ ", TextStyle.SUCCESS: "✅ "}


def markdown(text: str, *, html: bool = False) -> str:
    """The flows' ``*bold*`` as Teams' ``**bold**`` (single stars are italics there), inert.

    Replies quote what people typed (titles, descriptions), so nothing in them may become a
    link, an image, a mention or markup: ``](`` is broken with an invisible zero-width space
    (no disguised ``[Sign in](https://...)`` links or ``![](...)`` images), and with ``html``
    (text messages, which Teams reads as markdown *and* HTML) ``&``, ``<`` and ``>`` are
    escaped, so ``<at>``, ``<img>`` or ``<a>`` show as typed. Adaptive Cards never render
    HTML, so cards keep ``<`` as it is.
    """
    text = _LINK.sub("]\u200b", text)
    if html:
        text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _BOLD.sub(r"**\1**", text)


def typed(text: str) -> str:
    """What a person typed, for a card: shown as typed, line breaks kept, nothing markup.

    A ``*`` stays a star (escaped, never the start of bold or italics), ``](`` cannot make a
    link, and a line break becomes the blank line Adaptive Card markdown needs for one.
    """
    text = _LINK.sub("]\u200b", text).replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_")
    return "\n\n".join(line.strip() for line in text.splitlines() if line.strip())


def _size(value: Any) -> int:
    """Bytes Teams counts: the JSON as UTF-16."""
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-16-le"))


def split_text(text: str, limit: int = MAX_MESSAGE_BYTES) -> list[str]:
    """``text`` in pieces of at most ``limit`` UTF-16 bytes, cut at line ends or spaces if possible."""
    if len(text.encode("utf-16-le")) <= limit:
        return [text]
    pieces: list[str] = []
    rest = text
    while rest:
        if len(rest.encode("utf-16-le")) <= limit:
            pieces.append(rest)
            break
        # The longest prefix that fits, in characters (never half a surrogate pair).
        cut = len(rest.encode("utf-16-le")[: limit - limit % 2].decode("utf-16-le", errors="ignore"))
        for sep in ("\n\n", "\n", " "):
            at = rest.rfind(sep, 0, cut)
            if at > cut // 2:
                cut = at + len(sep)
                break
        pieces.append(rest[:cut].rstrip())
        rest = rest[cut:].lstrip()
    return [p for p in pieces if p]


# --- card elements ----------------------------------------------------------------------------------


def _text_block(text: str, style: TextStyle = TextStyle.PLAIN) -> JSON:
    # Adaptive Card markdown needs a blank line for a line break.
    block: JSON = {"type": "TextBlock", "text": markdown(text).replace("\n", "\n\n"), "wrap": True}
    if style == TextStyle.HEADING:
        block.update(size="Medium", weight="Bolder")
    elif style == TextStyle.MUTED:
        block["isSubtle"] = True
    elif style == TextStyle.WARNING:
        block["color"] = "Attention"
    elif style == TextStyle.SUCCESS:
        block["color"] = "Good"
    return block


def _owned(data: JSON, owner: str | None) -> JSON:
    """``data`` bound to ``owner`` (a channel card answers only the person it was for)."""
    if owner:
        data[DATA_KEY]["owner"] = owner
    return data


def _choice_data(choices: Choices, option: Option, owner: str | None) -> JSON:
    data = {
        DATA_KEY: {
            "kind": "choice",
            "id": choices.id,
            "value": option.id,
            "label": option.label[:200],
            "prompt": choices.prompt[:500],
        }
    }
    return _owned(data, owner)


def _choices_elements(choices: Choices, owner: str | None = None) -> list[JSON]:
    prompt = _text_block(choices.prompt)
    if len(choices.options) <= MAX_BUTTONS:
        actions = []
        for option in choices.options:
            action: JSON = {
                "type": "Action.Submit", "title": option.label, "data": _choice_data(choices, option, owner)
            }
            if option.primary:
                action["style"] = "positive"
            elif option.danger:
                action["style"] = "destructive"
            actions.append(action)
        return [prompt, {"type": "ActionSet", "actions": actions}]
    picker = {
        "type": "Input.ChoiceSet",
        "id": CHOICE_INPUT,
        "label": choices.prompt.replace("*", "")[:200] or "Choose one",
        "style": "compact",
        "isRequired": True,
        "errorMessage": "Pick one of the options.",
        "choices": [{"title": o.label, "value": o.id} for o in choices.options],
    }
    data = {
        DATA_KEY: {
            "kind": "choice",
            "id": choices.id,
            "input": CHOICE_INPUT,
            "labels": {o.id: o.label[:200] for o in choices.options},
            "prompt": choices.prompt[:500],
        }
    }
    button = {"type": "Action.Submit", "title": "OK", "style": "positive", "data": _owned(data, owner)}
    # The prompt is the drop-down's label (read by screen readers), not a text block above it.
    return [picker, {"type": "ActionSet", "actions": [button]}]


def _facts_elements(facts: Facts) -> list[JSON]:
    out: list[JSON] = []
    if facts.title:
        out.append(_text_block(facts.title, TextStyle.HEADING))
    items = [{"title": label, "value": typed(value)} for label, value in facts.items]
    if items:
        out.append({"type": "FactSet", "facts": items})
    return out


def _elements(block: Text | Facts | Choices | Link, owner: str | None = None) -> list[JSON]:
    match block:
        case Text(text=text, style=style):
            return [_text_block(text, style)]
        case Facts():
            return _facts_elements(block)
        case Choices():
            return _choices_elements(block, owner)
        case Link(url=url, label=label):
            return [{"type": "ActionSet", "actions": [{"type": "Action.OpenUrl", "title": label, "url": url}]}]
    raise TypeError(f"not a card block: {block!r}")


def _fit(element: JSON, limit: int) -> Iterator[JSON]:
    """``element``, or pieces of it, each small enough for one message."""
    if _size(element) <= limit:
        yield element
        return
    if element["type"] == "TextBlock":
        for piece in split_text(element["text"], limit - 200):
            yield {**element, "text": piece}
        return
    if element["type"] == "FactSet":
        for fact in element["facts"]:
            single = {"type": "FactSet", "facts": [fact]}
            if _size(single) <= limit:
                yield single
            else:
                yield _text_block(f"**{fact['title']}**", TextStyle.PLAIN)
                for piece in split_text(fact["value"], limit - 200):
                    yield {"type": "TextBlock", "text": piece, "wrap": True}
        return
    yield element  # an action set of short labels: never this large in practice


def card(body: Sequence[JSON], actions: Sequence[JSON] = ()) -> JSON:
    """An Adaptive Card (schema 1.5), full width in Teams."""
    content: JSON = {
        "type": "AdaptiveCard",
        "$schema": CARD_SCHEMA,
        "version": CARD_VERSION,
        "body": list(body),
        "msteams": {"width": "Full"},
    }
    if actions:
        content["actions"] = list(actions)
    return content


def card_message(content: JSON, summary: str = "") -> JSON:
    message: JSON = {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "content": content}],
    }
    if summary:
        message["summary"] = summary[:200]
    return message


def _pack(elements: Iterable[JSON], limit: int) -> list[list[JSON]]:
    envelope = _size(card_message(card([]), "x" * 200))
    cards: list[list[JSON]] = [[]]
    size = envelope
    for element in elements:
        for piece in _fit(element, limit - envelope):
            piece_size = _size(piece) + 1
            if cards[-1] and size + piece_size > limit:
                cards.append([])
                size = envelope
            cards[-1].append(piece)
            size += piece_size
    return [c for c in cards if c]


def _text_messages(reply: Reply, limit: int) -> list[JSON]:
    # Teams markdown, like Adaptive Cards, needs a blank line for a line break.
    parts = [_PREFIX.get(b.style, "") + markdown(b.text, html=True) for b in reply.blocks if isinstance(b, Text)]
    text = "\n\n".join(p.replace("\n", "\n\n") for p in parts)
    return [{"type": "message", "text": piece, "textFormat": "markdown"} for piece in split_text(text, limit - 200)]


def render(reply: Reply, *, limit: int = MAX_MESSAGE_BYTES, owner: str | None = None) -> list[JSON]:
    """The Teams messages (activity JSON without addressing) that show ``reply``.

    Text-only replies are markdown messages; anything with facts, buttons or links is an
    Adaptive Card. A :class:`Form` is rendered on its own by :func:`form_card`. ``owner``
    (in channels and group chats): the person whose buttons and forms these are.
    """
    blocks = [b for b in reply.blocks if not isinstance(b, Form)]
    messages: list[JSON] = []
    if blocks and all(isinstance(b, Text) and b.style != TextStyle.HEADING for b in blocks):
        messages.extend(_text_messages(Reply(blocks=tuple(blocks)), limit))
    elif blocks:
        elements = [e for b in blocks for e in _elements(b, owner)]
        summary = reply.plain_text().split("\n", 1)[0]
        messages.extend(card_message(card(body), summary) for body in _pack(elements, limit))
    form = reply.form
    if form is not None:
        messages.append(card_message(form_card(form, owner=owner), form.title))
    return messages


# --- forms ---------------------------------------------------------------------------------------


def _input(field: Field, error: str | None) -> list[JSON]:
    base: JSON = {"id": field.name, "label": field.label, "isRequired": field.required}
    if field.required:
        base["errorMessage"] = f"{field.label} is required."
    if field.kind in ("text", "multiline"):
        element = {"type": "Input.Text", **base, "isMultiline": field.kind == "multiline"}
        if field.max_length:
            element["maxLength"] = field.max_length
        if field.placeholder:
            element["placeholder"] = field.placeholder
        if field.initial:
            element["value"] = field.initial
    elif field.kind == "number":
        element = {"type": "Input.Number", **base}
        if field.initial:
            element["value"] = field.initial
    elif field.kind == "date":
        element = {"type": "Input.Date", **base}
        if field.initial:
            element["value"] = field.initial
    else:
        element = {
            "type": "Input.ChoiceSet",
            **base,
            "style": "compact",
            "choices": [{"title": o.label, "value": o.id} for o in field.options],
        }
        if field.initial:
            element["value"] = field.initial
        if not field.required:
            element["placeholder"] = "(none)"
    out = [element]
    if field.hint:
        out.append({"type": "TextBlock", "text": field.hint, "wrap": True, "isSubtle": True, "size": "Small",
                    "spacing": "None"})
    if error:
        out.append({"type": "TextBlock", "text": f"⚠️ {error}", "wrap": True, "color": "Attention",
                    "spacing": "None"})
    return out


def form_card(form: Form, *, owner: str | None = None) -> JSON:
    """One card with every field of ``form``; validation messages sit under their fields.

    The submit button's data carries the form id, its title and ``form.context``, so a
    submission (from chat or from a task module) brings them back with the inputs.
    """
    body: list[JSON] = [_text_block(form.title, TextStyle.HEADING)]
    if form.errors:
        body.append(_text_block("Please check the fields marked below.", TextStyle.WARNING))
    for field in form.fields:
        body.extend(_input(field, form.errors.get(field.name)))
    data = {DATA_KEY: {"kind": "form", "id": form.id, "title": form.title[:200], "context": dict(form.context)}}
    submit = {"type": "Action.Submit", "title": form.submit_label, "style": "positive", "data": _owned(data, owner)}
    return card(body, [submit])


def open_form_button(title: str, form_id: str) -> JSON:
    """A button that asks for the form ``form_id`` (the engine's ``<flow>:open``)."""
    return {"type": "Action.Submit", "title": title, "data": {DATA_KEY: {"kind": "open", "id": form_id}}}


# --- after a press ------------------------------------------------------------------------------


def answered_card(prompt: str, note: str) -> JSON:
    """What a pressed choices card becomes: the question and ``note`` ("✓ answer"), no buttons."""
    return card([_text_block(prompt, TextStyle.MUTED), _text_block(note, TextStyle.PLAIN)])


def submitted_card(title: str, note: str = "Submitted") -> JSON:
    """What a submitted form card becomes, so it cannot be sent twice."""
    return card([_text_block(title, TextStyle.MUTED), _text_block(f"✓ {note}", TextStyle.PLAIN)])


def result_card(replies: Sequence[Reply]) -> JSON:
    """The engine's answer as one card (a task module's result): paragraphs and facts kept.

    Buttons are left out: in a task module they would submit into it, not into the chat.
    """
    body: list[JSON] = []
    for reply in replies:
        for block in reply.blocks:
            if isinstance(block, (Text, Facts, Link)):
                body.extend(_elements(block))
    return card(body or [_text_block("Done.")])


def welcome_card(text: str, *, form_button: str | None = None, form_id: str | None = None) -> JSON:
    if not form_button:
        return card([_text_block(text)], [])
    if not form_id:
        return card([_text_block(text)], [])
    button = open_form_button(form_button, form_id)
    return card([_text_block(text)], [button])


def plain_text(messages: Sequence[Mapping[str, Any]]) -> str:
    """The readable text of rendered messages (for logs and task-module answers)."""
    out: list[str] = []
    for message in messages:
        if message.get("text"):
            out.append(str(message["text"]))
        for attachment in message.get("attachments", ()):
            for element in attachment.get("content", {}).get("body", ()):
                if element.get("type") == "TextBlock":
                    out.append(element["text"])
                elif element.get("type") == "FactSet":
                    out.extend(f"{f['title']}: {f['value']}" for f in element["facts"])
    return "\n".join(out)
