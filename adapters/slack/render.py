"""Neutral replies as Block Kit, always inside Slack's limits.

Everything here is a pure function of its arguments, so the rules are tested without a
server: a reply that would break a limit is split (long text) or truncated with a visible
note (too many blocks), never sent to be refused by Slack. User text is escaped (``&``,
``<``, ``>``) so a request title cannot ping ``<!channel>`` or hide a fake link, and every
``mrkdwn`` text is ``verbatim`` so Slack does not turn a typed "@channel" or "#general" into
a live mention or link either; the ``*bold*`` marks the flows use still work.

Example::

    blocks = render(Reply.text("Submitted as DR-42."))
    view = render_modal(form, private_metadata="{}")
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from conversations.messages import Choices, Facts, Field, Form, Link, Option, Reply, Text, TextStyle

MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100
SECTION_CHARS = 3000
CONTEXT_CHARS = 2000
HEADER_CHARS = 150
BUTTON_LABEL_CHARS = 75
BUTTON_VALUE_CHARS = 2000
ACTION_ID_CHARS = 255
BUTTONS_PER_ACTIONS = 25
FALLBACK_CHARS = 3000
MODAL_TITLE_CHARS = 24
INPUT_CHARS = 3000
LABEL_CHARS = 2000
PLACEHOLDER_CHARS = 150
OPTION_TEXT_CHARS = 75
OPTION_VALUE_CHARS = 150
SELECT_OPTIONS = 100
METADATA_CHARS = 3000

ACTION_SEPARATOR = "|"
CHOICES_BLOCK = "choices"
ELLIPSIS = "…"

_CHOICE_BLOCK_IDS = (CHOICES_BLOCK, CHOICES_BLOCK + "+")
_STYLE_PREFIX = {TextStyle.WARNING: "⚠️ ", TextStyle.SUCCESS: "✅ "}
_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"))
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_URL = re.compile(r"^https?://[^\s<>|]+$")

Block = dict[str, Any]


def escape(text: str) -> str:
    """Slack's three control characters as entities: ``<!channel>`` stays plain text."""
    for raw, entity in _ESCAPES:
        text = text.replace(raw, entity)
    return text


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, with an ellipsis when something was cut."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def _mrkdwn(text: str) -> dict[str, Any]:
    """Already escaped mrkdwn; ``verbatim`` stops Slack's automatic parsing of "@here" and the like."""
    return {"type": "mrkdwn", "text": text or " ", "verbatim": True}


def _plain(text: str, limit: int) -> dict[str, Any]:
    return {"type": "plain_text", "text": clip(text, limit) or " ", "emoji": True}


def _chunks(text: str, limit: int) -> list[str]:
    """``text`` in pieces of at most ``limit`` characters, cut at a line end or a space if possible.

    A hard cut never splits an entity such as ``&amp;``.
    """
    pieces: list[str] = []
    while len(text) > limit:
        cut = text.rfind("\n", 0, limit)
        if cut < limit // 2:
            cut = text.rfind(" ", 0, limit)
        if cut >= limit // 2:
            pieces.append(text[:cut])
            text = text[cut + 1 :]
            continue
        cut = limit
        amp = text.rfind("&", cut - 5, cut)
        if amp != -1 and ";" not in text[amp:cut]:
            cut = amp
        pieces.append(text[:cut])
        text = text[cut:]
    pieces.append(text)
    return pieces


def _sections(mrkdwn: str) -> list[Block]:
    """Already escaped mrkdwn as sections of at most 3,000 characters."""
    pieces = _chunks(mrkdwn, SECTION_CHARS)
    return [{"type": "section", "text": _mrkdwn(piece)} for piece in pieces]


def _text(block: Text) -> list[Block]:
    if block.style == TextStyle.HEADING and len(block.text) <= HEADER_CHARS and "\n" not in block.text:
        return [{"type": "header", "text": _plain(block.text.replace("*", ""), HEADER_CHARS)}]
    if block.style == TextStyle.HEADING:
        return _sections(f"*{escape(block.text)}*")
    if block.style == TextStyle.MUTED and len(block.text) <= CONTEXT_CHARS:
        return [{"type": "context", "elements": [_mrkdwn(escape(block.text))]}]
    return _sections(_STYLE_PREFIX.get(block.style, "") + escape(block.text))


def _facts(block: Facts) -> list[Block]:
    lines = [f"*{escape(block.title)}*"] if block.title else []
    for label, value in block.items:
        shown = _url(value) or escape(value)
        long = "\n" in value or len(value) > 60
        lines.append(f"*{escape(label)}*\n{shown}" if long else f"*{escape(label)}:* {shown}")
    return _sections("\n".join(lines))


def _url(value: str) -> str | None:
    """A value that is exactly one web address, as a link (``verbatim`` text links nothing by itself)."""
    if not _URL.match(value):
        return None
    return f"<{escape(value)}>"


def _button(option: Option, action_id: str) -> Block:
    button: Block = {
        "type": "button",
        "text": _plain(option.label, BUTTON_LABEL_CHARS),
        "action_id": action_id[:ACTION_ID_CHARS],
        "value": option.id[:BUTTON_VALUE_CHARS],
    }
    if option.primary:
        button["style"] = "primary"
    elif option.danger:
        button["style"] = "danger"
    return button


def _choices(block: Choices) -> list[Block]:
    out = _sections(escape(block.prompt)) if block.prompt else []
    buttons = [
        _button(option, f"{block.id}{ACTION_SEPARATOR}{n}") for n, option in enumerate(block.options)
    ]
    for start in range(0, len(buttons), BUTTONS_PER_ACTIONS):
        block_id = CHOICES_BLOCK if start == 0 else CHOICES_BLOCK + "+"
        elements = buttons[start : start + BUTTONS_PER_ACTIONS]
        out.append({"type": "actions", "block_id": block_id, "elements": elements})
    return out


def _link(block: Link) -> list[Block]:
    if not block.url.startswith(("https://", "http://")):
        return _sections(f"{escape(block.label)}: {escape(block.url)}")
    label = escape(block.label).replace("|", "¦")
    return _sections(f"<{escape(block.url).replace('|', '%7C')}|{label}>")


def _form_note(block: Form) -> list[Block]:
    return _sections(escape(f"“{block.title}” is a form: open it with */brm request*."))


def _blocks(reply: Reply) -> list[Block]:
    out: list[Block] = []
    for block in reply.blocks:
        match block:
            case Text():
                out.extend(_text(block))
            case Facts():
                out.extend(_facts(block))
            case Choices():
                out.extend(_choices(block))
            case Link():
                out.extend(_link(block))
            case Form():
                out.extend(_form_note(block))
    return out


def _note(text: str) -> Block:
    return {"type": "context", "elements": [_mrkdwn(f"_{escape(text)}_")]}


def _limit(blocks: list[Block], limit: int) -> list[Block]:
    if len(blocks) <= limit:
        return blocks
    hidden = len(blocks) - (limit - 1)
    note = _note(f"{hidden} more parts are not shown: this is longer than Slack allows.")
    return [*blocks[: limit - 1], note]


def _unique_ids(blocks: list[Block], owner: str | None = None) -> list[Block]:
    """Number every button and actions block of one message or view, so no id repeats.

    A question's actions blocks become ``choices|<question>|<part>`` (``|<owner>`` added when
    the question belongs to one person, see :func:`owner_of`); its buttons
    ``<choices id>|<n>`` with ``n`` counting every button of the message.
    """
    tail = f"{ACTION_SEPARATOR}{owner}" if owner else ""
    question = -1
    part = 0
    button = 0
    for block in blocks:
        if block.get("type") != "actions" or block.get("block_id") not in _CHOICE_BLOCK_IDS:
            continue
        if block["block_id"] == CHOICES_BLOCK:
            question, part = question + 1, 0
        else:
            part += 1
        block["block_id"] = f"{CHOICES_BLOCK}{ACTION_SEPARATOR}{question}{ACTION_SEPARATOR}{part}{tail}"
        for element in block["elements"]:
            choice_id = element["action_id"].rpartition(ACTION_SEPARATOR)[0]
            suffix = f"{ACTION_SEPARATOR}{button}"
            element["action_id"] = choice_id[: ACTION_ID_CHARS - len(suffix)] + suffix
            button += 1
    return blocks


def render(reply: Reply, *, limit: int = MESSAGE_BLOCKS, owner: str | None = None) -> list[Block]:
    """The reply as Block Kit blocks: at most ``limit`` blocks, every id unique.

    Example::

        render(Reply.text("a <!channel> & b"))
        # [{"type": "section", "text": {"type": "mrkdwn", "text": "a &lt;!channel&gt; &amp; b", "verbatim": True}}]
    """
    return _unique_ids(_limit(_blocks(reply), limit), owner)


@dataclass(frozen=True, slots=True)
class Message:
    """One Slack message: its blocks and its notification text."""

    blocks: list[Block]
    text: str


def messages(replies: Sequence[Reply], *, owner: str | None = None) -> list[Message]:
    """The replies of one turn packed into as few messages as fit (each at most 50 blocks).

    ``owner`` is the person whose conversation asks the questions: in a channel thread,
    somebody else's press on those buttons is then recognised (:func:`owner_of`).

    One message per turn keeps the channel tidy and spends one ``chat.postMessage`` call
    where three would hit Slack's per-channel rate limit sooner.
    """
    out: list[Message] = []
    current: list[Block] = []
    texts: list[Reply] = []
    for reply in replies:
        blocks = _limit(_blocks(reply), MESSAGE_BLOCKS)
        if not blocks:
            continue
        if current and len(current) + len(blocks) > MESSAGE_BLOCKS:
            out.append(Message(_unique_ids(current, owner), fallback_text(texts)))
            current, texts = [], []
        current.extend(blocks)
        texts.append(reply)
    if current:
        out.append(Message(_unique_ids(current, owner), fallback_text(texts)))
    return out


def fallback_text(replies: Iterable[Reply]) -> str:
    """The notification text of a message (what a phone shows), escaped and short."""
    text = "\n".join(reply.plain_text() for reply in replies).strip()
    return escape(clip(text, FALLBACK_CHARS)) or "Message"


def render_home(reply: Reply) -> dict[str, Any]:
    """The App Home tab: at most 100 blocks."""
    return {"type": "home", "blocks": render(reply, limit=VIEW_BLOCKS)}


def answered(blocks: Sequence[Block], block_id: str, note: str) -> list[Block]:
    """The blocks of a message after a button press: that question's buttons become ``note``
    ("✓ label", or "No longer active" for a press the engine ignored).

    Every actions block of the same question (a long question uses several) goes, so none
    of its buttons can be pressed a second time; the rest of the message stays as it was.
    """
    parts = block_id.split(ACTION_SEPARATOR)
    ours = parts[0] == CHOICES_BLOCK and len(parts) in (3, 4)

    def same(block: Block) -> bool:
        bid = str(block.get("block_id", ""))
        if block.get("type") != "actions":
            return False
        return bid.split(ACTION_SEPARATOR)[:2] == parts[:2] if ours else bid == block_id

    out: list[Block] = []
    replaced = False
    for block in blocks:
        if not same(block):
            out.append(block)
        elif not replaced:
            out.append(_note_plain(note))
            replaced = True
    return out


def owner_of(block_id: str) -> str | None:
    """The person a question's buttons belong to, read from its actions block id (None: anyone)."""
    parts = block_id.split(ACTION_SEPARATOR)
    if parts[0] == CHOICES_BLOCK and len(parts) == 4 and parts[3]:
        return parts[3]
    return None


def _note_plain(text: str) -> Block:
    return {"type": "context", "elements": [_mrkdwn(escape(clip(text, CONTEXT_CHARS)))]}


# --- modals ---------------------------------------------------------------------------------------


def _select_option(option: Option) -> dict[str, Any]:
    return {"text": _plain(option.label, OPTION_TEXT_CHARS), "value": option.id[:OPTION_VALUE_CHARS]}


def _element(field: Field) -> dict[str, Any]:
    name = field.name
    if field.kind == "select":
        options = [_select_option(o) for o in field.options[:SELECT_OPTIONS]]
        element: dict[str, Any] = {"type": "static_select", "action_id": name, "options": options}
        initial = next((o for o in options if o["value"] == field.initial), None)
        if initial is not None:
            element["initial_option"] = initial
    elif field.kind == "date":
        element = {"type": "datepicker", "action_id": name}
        if field.initial and _DATE.match(field.initial):
            element["initial_date"] = field.initial
    elif field.kind == "number":
        element = {"type": "number_input", "action_id": name, "is_decimal_allowed": True}
        if field.initial:
            element["initial_value"] = field.initial
    else:
        limit = min(field.max_length or INPUT_CHARS, INPUT_CHARS)
        element = {"type": "plain_text_input", "action_id": name, "max_length": limit}
        if field.kind == "multiline":
            element["multiline"] = True
        if field.initial:
            element["initial_value"] = field.initial[:limit]
    if field.placeholder:
        element["placeholder"] = _plain(field.placeholder, PLACEHOLDER_CHARS)
    return element


def render_modal(form: Form, *, private_metadata: str, show_errors: bool = False) -> dict[str, Any]:
    """A form as a modal view. Input block ids are the field names (see ``form_values``).

    With ``show_errors`` the form's errors are written under their fields, for the times a
    view is replaced rather than answered with ``response_action: errors``.
    """
    blocks: list[Block] = []
    for field in form.fields:
        block: Block = {
            "type": "input",
            "block_id": field.name,
            "label": _plain(field.label, LABEL_CHARS),
            "element": _element(field),
            "optional": not field.required,
        }
        if field.hint:
            block["hint"] = _plain(field.hint, LABEL_CHARS)
        blocks.append(block)
        if show_errors and field.name in form.errors:
            blocks.append(_note_plain(f"⚠️ {form.errors[field.name]}"))
    if len(blocks) > VIEW_BLOCKS:
        note = _note("Some fields are not shown: this form is longer than Slack allows.")
        blocks = [*blocks[: VIEW_BLOCKS - 1], note]
    return {
        "type": "modal",
        "callback_id": form.id,
        "title": _plain(form.title, MODAL_TITLE_CHARS),
        "submit": _plain(form.submit_label, MODAL_TITLE_CHARS),
        "close": _plain("Cancel", MODAL_TITLE_CHARS),
        "private_metadata": private_metadata[:METADATA_CHARS],
        "blocks": blocks,
    }


def field_errors(form: Form) -> dict[str, str]:
    """The form's errors keyed by input block id, as ``response_action: errors`` wants them."""
    names = {f.name for f in form.fields}
    return {name: clip(message, 300) for name, message in form.errors.items() if name in names}


def errors_fit(form: Form, submitted: Mapping[str, str]) -> bool:
    """Whether ``response_action: errors`` can show this refusal (every error on a field shown)."""
    return bool(form.errors) and all(name in {f.name for f in form.fields} for name in form.errors) and all(
        submitted.get(k) == v for k, v in form.context.items()
    )
