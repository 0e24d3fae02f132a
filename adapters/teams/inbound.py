"""Teams activities (the JSON Teams posts to ``/api/messages``) read into neutral terms.

Pure functions over the activity JSON exactly as it arrives (camelCase keys), so they are
tested with literal Teams payloads and never need the SDK.

Conversation keys: a personal chat is channel ``"personal"`` (one per person and bot); a
channel or group chat is its conversation id, and a channel thread (``;messageid=...``) is
the key's ``thread``. Event ids join the conversation to the activity id, because Teams
message ids are only unique within a conversation.

Example::

    key = key_of(activity)          # ConversationKey("teams", tenant, "personal", "29:1abc")
    text = message_text(activity)   # "<at>BRM Bot</at> new request" -> "new request"
"""

from __future__ import annotations

import hashlib
import html
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

from adapters.teams.render import DATA_KEY
from conversations.catalog import QUOTED_LINK, QUOTED_PLACE, QUOTED_TEXT
from conversations.messages import ConversationKey, Sender

JSON = Mapping[str, Any]
PERSONAL = "personal"
MAX_KEY_PART = 120

_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9:-]*(?:\s[^<>]*)?/?>")
# Teams' own markup inside plain-text messages: mentions and the formatting its compose box adds.
_TEAMS_TAG = re.compile(
    r"</?(?:at|b|i|u|s|strike|strong|em|p|br|div|span|a|ul|ol|li|code|pre|blockquote|h[1-6]|emoji|img|systemtag)"
    r"(?:\s[^<>]*)?/?>",
    re.IGNORECASE,
)
_BREAK = re.compile(r"<\s*(?:br|/p|/div|/li)\b[^<>]*>", re.IGNORECASE)
_AT = re.compile(r"<at[^>]*>(.*?)</at>", re.IGNORECASE | re.DOTALL)
MARKUP_FORMATS = frozenset({"xml", "html"})
_AMBIGUOUS = re.compile(r"[\\@\s\x00-\x1f\x7f]")


def _short(value: str, limit: int = MAX_KEY_PART) -> str:
    """Ids as they are when short; long ones hashed, so they fit the database columns."""
    if len(value) <= limit:
        return value
    return "h:" + hashlib.sha256(value.encode()).hexdigest()[:40]


def shape_problem(activity: JSON) -> str | None:
    """What makes ``activity`` unusable (answered 400, nothing written), or None.

    The fields the adapter reads must have the types the Bot Framework schema gives them.
    """
    objects = ("channelData", "from", "recipient", "conversation")
    for name in objects:
        if activity.get(name) is not None and not isinstance(activity.get(name), Mapping):
            return f"{name} is not an object"
    data = activity.get("channelData") or {}
    for name in ("tenant", "channel", "team"):
        if data.get(name) is not None and not isinstance(data.get(name), Mapping):
            return f"channelData.{name} is not an object"
    entities = activity.get("entities")
    if entities is not None and (
        not isinstance(entities, list) or not all(isinstance(e, Mapping) for e in entities)
    ):
        return "entities is not a list of objects"
    for entity in entities or ():
        if entity.get("mentioned") is not None and not isinstance(entity.get("mentioned"), Mapping):
            return "a mention's mentioned is not an object"
    for name in ("membersAdded", "membersRemoved"):
        members = activity.get(name)
        if members is not None and (not isinstance(members, list) or not all(isinstance(m, Mapping) for m in members)):
            return f"{name} is not a list of objects"
    kind = activity.get("type")
    if kind in ("message", "invoke", "conversationUpdate"):
        if not (activity.get("from") or {}).get("id"):
            return "from.id is missing"
        if not (activity.get("conversation") or {}).get("id"):
            return "conversation.id is missing"
    value = activity.get("value")
    if kind == "invoke" and value is not None and not isinstance(value, Mapping):
        return "value is not an object"
    if kind == "message" and value is not None and not isinstance(value, Mapping):
        return "value is not an object"
    for name in ("text", "serviceUrl", "textFormat", "replyToId", "name", "id"):
        if activity.get(name) is not None and not isinstance(activity.get(name), str):
            return f"{name} is not a string"
    return None


def tenant_of(activity: JSON) -> str:
    tenant = ((activity.get("channelData") or {}).get("tenant") or {}).get("id")
    return str(tenant or (activity.get("conversation") or {}).get("tenantId") or "unknown")


def conversation_type(activity: JSON) -> str:
    """``personal``, ``channel`` or ``groupChat``."""
    conversation = activity.get("conversation") or {}
    kind = conversation.get("conversationType")
    if kind:
        return str(kind)
    return "groupChat" if conversation.get("isGroup") else PERSONAL


def is_personal(activity: JSON) -> bool:
    return conversation_type(activity) == PERSONAL


def split_conversation(conversation_id: str) -> tuple[str, str | None]:
    """``19:x@thread.tacv2;messageid=17`` -> (``19:x@thread.tacv2``, ``17``)."""
    base, _, rest = conversation_id.partition(";messageid=")
    return base, (rest or None)


def key_of(activity: JSON) -> ConversationKey:
    user = str((activity.get("from") or {}).get("id") or "")
    conversation_id = str((activity.get("conversation") or {}).get("id") or "")
    if is_personal(activity):
        channel, thread = PERSONAL, None
    else:
        channel, thread = split_conversation(conversation_id)
    return ConversationKey(
        "teams", _short(tenant_of(activity), 60), _short(channel), _short(user), _short(thread, 60) if thread else None
    )


def event_id_of(activity: JSON) -> str:
    """A globally unique id of this activity (Teams repeats it when it resends)."""
    conversation_id = str((activity.get("conversation") or {}).get("id") or "")
    digest = hashlib.sha256(conversation_id.encode()).hexdigest()[:16]
    return f"{_short(str(activity.get('id') or ''), 150)}@{digest}"


def sender_of(activity: JSON, *, email: str | None = None, trusted: bool = True) -> Sender:
    """The neutral sender; without email or directory id for a person of an untrusted tenant."""
    person = activity.get("from") or {}
    return Sender(
        name=(person.get("name") or None),
        email=email if trusted else None,
        directory_id=(person.get("aadObjectId") or None) if trusted else None,
        time_zone=activity.get("localTimezone") or None,
        locale=activity.get("locale") or None,
    )


def mentions_bot(activity: JSON) -> bool:
    bot_id = (activity.get("recipient") or {}).get("id")
    for entity in activity.get("entities") or ():
        if entity.get("type") == "mention" and (entity.get("mentioned") or {}).get("id") == bot_id:
            return True
    return False


def is_addressed(activity: JSON) -> bool:
    """Whether the bot should answer this message: always in a personal chat, else when @mentioned."""
    return is_personal(activity) or mentions_bot(activity)


def message_text(activity: JSON) -> str:
    """The typed text with the bot's @mention removed and other mentions as plain names.

    Markup is removed only where it is markup: everything in an ``xml``/``html`` message,
    and Teams' own mention and formatting tags in a plain one. "Cost must stay < 5000 EUR
    and > 1000 EUR" stays as typed; entities are decoded once; line breaks are kept.
    """
    text = str(activity.get("text") or "")
    bot_id = (activity.get("recipient") or {}).get("id")
    for entity in activity.get("entities") or ():
        if entity.get("type") == "mention" and (entity.get("mentioned") or {}).get("id") == bot_id:
            mention = entity.get("text") or ""
            if mention:
                text = text.replace(mention, " ")
    text = _AT.sub(lambda m: m.group(1), text)
    if "<" in text:
        text = _BREAK.sub("\n", text)
        markup = str(activity.get("textFormat") or "").lower() in MARKUP_FORMATS
        text = (_TAG if markup else _TEAMS_TAG).sub(" ", text)
    text = html.unescape(text).replace("\u00a0", " ")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(line for line in lines if line)


def html_to_text(content: str) -> str:
    """A message body (Teams sends HTML) as plain text, paragraphs kept."""
    text = re.sub(r"<\s*(br|/p|/div|/li)\b[^>]*>", "\n", content, flags=re.IGNORECASE)
    text = _AT.sub(lambda m: m.group(1), text)
    text = _TAG.sub("", text)
    text = html.unescape(text).replace("\u00a0", " ")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return "\n".join(line for line in lines if line).strip()


LOCAL_CLIENT_PATHS = frozenset({"", "/", "/_connector", "/_connector/"})


def is_local_service_url(url: str | None) -> bool:
    """Whether ``url`` is a local client's Bot Connector (local mode sends nowhere else).

    A loopback host, and the paths the local clients use: none (Bot Framework Emulator,
    ``http://localhost:PORT``) or ``/_connector`` (Agents Playground,
    ``http://localhost:56150/_connector``); no query or fragment, which could swallow the
    path the SDK appends and aim the bot's request at another local service's endpoint.
    Strict on purpose: URL parsers disagree about backslashes, user info and control
    characters (``http://example.com\\@127.0.0.1/`` is 127.0.0.1 to ``urlsplit`` but
    example.com to urllib3), so any URL using them is refused rather than interpreted.
    """
    if not url or not isinstance(url, str) or _AMBIGUOUS.search(url) or "?" in url or "#" in url:
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a port out of range
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or parts.path not in LOCAL_CLIENT_PATHS:
        return False
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


# --- card submissions -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Pressed:
    """A button of a Choices card (or its drop-down), by choices id and option id."""

    choice_id: str
    value: str
    label: str
    prompt: str
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class Submitted:
    """A form card's inputs, with the form's round-tripped context merged in."""

    form_id: str
    title: str
    values: dict[str, str] = field(default_factory=dict)
    owner: str | None = None


@dataclass(frozen=True, slots=True)
class OpenForm:
    form_id: str
    owner: str | None = None


Submission = Pressed | Submitted | OpenForm


def _string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_card_value(value: Any) -> Submission | None:
    """What a card submission means, from the ``value`` (or task-module ``data``) Teams sends."""
    if not isinstance(value, Mapping):
        return None
    data = value.get(DATA_KEY)
    if not isinstance(data, Mapping):
        return None
    kind = data.get("kind")
    form_id = str(data.get("id") or "")
    if not form_id:
        return None
    owner = str(data["owner"]) if data.get("owner") else None
    if kind == "choice":
        prompt = str(data.get("prompt") or "")
        if data.get("input"):
            chosen = _string(value.get(str(data["input"])))
            found = data.get("labels")
            labels: Mapping[Any, Any] = found if isinstance(found, Mapping) else {}
            return Pressed(form_id, chosen, str(labels.get(chosen, chosen)), prompt, owner)
        return Pressed(form_id, _string(data.get("value")), str(data.get("label") or ""), prompt, owner)
    if kind == "form":
        values = {
            str(k): _string(v) for k, v in value.items() if k != DATA_KEY and not str(k).startswith("msteams")
        }
        found = data.get("context")
        context: Mapping[Any, Any] = found if isinstance(found, Mapping) else {}
        values.update({str(k): _string(v) for k, v in context.items()})
        return Submitted(form_id, str(data.get("title") or ""), values, owner)
    if kind == "open":
        return OpenForm(form_id, owner)
    return None


# --- message extension ------------------------------------------------------------------------


def _quoted_message(activity: JSON) -> tuple[str, str | None]:
    """The text of the message an action was picked on, and its ``linkToMessage``."""
    payload = (activity.get("value") or {}).get("messagePayload") or {}
    body = payload.get("body") or {}
    content = str(body.get("content") or "")
    text = html_to_text(content) if body.get("contentType", "html") == "html" else content.strip()
    link = payload.get("linkToMessage")
    return text, str(link) if link else None


def quoted_prefill(activity: JSON) -> dict[str, str]:
    """What a flow's message action (say "Log as touchpoint") gets: the message's text, its
    link, and the name of the channel it was in when Teams says (``channelData.channel.name``)."""
    text, link = _quoted_message(activity)
    place = ((activity.get("channelData") or {}).get("channel") or {}).get("name")
    prefill = {QUOTED_TEXT: text[:4000], QUOTED_LINK: (link or "")[:1000], QUOTED_PLACE: str(place or "")[:200]}
    return {k: v for k, v in prefill.items() if v}


def capture_prefill(activity: JSON) -> dict[str, str]:
    """The intake form's prefill for "Capture as demand request" on a message.

    Title: the message's first line (shortened); description: the whole message; the link
    to the message becomes the request's ``source_link``.
    """
    text, link = _quoted_message(activity)
    first = text.split("\n", 1)[0] if text else ""
    title = first if len(first) <= 80 else first[:79].rstrip() + "…"
    prefill = {"title": title, "description": text[:4000]}
    if link:
        prefill["source_link"] = str(link)[:1000]
    channel = ((activity.get("channelData") or {}).get("channel") or {}).get("id")
    conversation_id = str((activity.get("conversation") or {}).get("id") or "")
    source_channel = channel or split_conversation(conversation_id)[0]
    if source_channel:
        prefill["source_channel"] = str(source_channel)[:128]
    return {k: v for k, v in prefill.items() if v}
