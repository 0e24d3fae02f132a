"""Slack payloads as neutral :class:`Inbound`: pure functions, no network, no SDK.

Slack sends five shapes to one URL: an Events API envelope (``event_callback``), a slash
command (form fields), and interactivity payloads (``block_actions``, ``view_submission``,
``message_action``). ``to_inbound`` reads any of them; the adapter adds what a payload
does not carry (the sender's email from ``users.info``, a permalink, a DM channel).

Example::

    inbound = to_inbound({"type": "event_callback", "event_id": "Ev1", "team_id": "T1",
                          "event": {"type": "message", "channel_type": "im", "channel": "D1",
                                    "user": "U1", "text": "new request", "ts": "1.0"}})
    assert inbound.text == "new request"
"""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

from conversations.catalog import FORM_OPEN, QUOTED_LINK, QUOTED_PLACE, QUOTED_TEXT, Catalog
from conversations.messages import Action, ConversationKey, Inbound, Platform, Source

PLATFORM: Platform = "slack"
COMMAND = "/brm"
CAPTURE_SHORTCUT = "capture_demand_request"
COMMAND_THREAD = "/brm"
"""The conversation ``/brm`` runs in: one per person and channel, apart from chat and threads."""
ACTION_SEPARATOR = "|"
TEXT_SUBTYPES = frozenset({None, "file_share", "thread_broadcast"})
TITLE_PREFILL_CHARS = 150
DESCRIPTION_PREFILL_CHARS = 3000

_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")
_CHANNEL = re.compile(r"<#([A-Z0-9]+)(?:\|([^>]*))?>")
_SPECIAL = re.compile(r"<!([a-z]+)(?:\^[^|>]*)?(?:\|([^>]*))?>")
_LINK = re.compile(r"<((?:https?|mailto):[^|>]+)(?:\|([^>]*))?>")
"""The ``/brm`` words the adapter hands to the engine; anything else gets the command's help."""


def slack_text(raw: str, *, bot_user_id: str | None = None) -> str:
    """What the person typed, from Slack's markup: the bot's mention dropped, links read out.

    ``<@U1>`` becomes ``@U1``, ``<#C1|general>`` ``#general``, ``<https://x|label>``
    ``label (https://x)``, and ``&amp;``/``&lt;``/``&gt;`` their characters.
    """
    text = raw
    if bot_user_id:
        text = re.sub(rf"<@{re.escape(bot_user_id)}(?:\|[^>]*)?>:?", "", text)
    text = _MENTION.sub(lambda m: f"@{m.group(1)}", text)
    text = _CHANNEL.sub(lambda m: f"#{m.group(2) or m.group(1)}", text)
    text = _SPECIAL.sub(lambda m: f"@{m.group(2) or m.group(1)}", text)
    text = _LINK.sub(lambda m: f"{m.group(2)} ({m.group(1)})" if m.group(2) else m.group(1), text)
    text = text.replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    return text.strip()


def malformed(payload: object) -> str | None:
    """Why ``payload`` is not something Slack sends (None when it looks right)."""
    if not isinstance(payload, dict) or not payload:
        return "not an object"
    if "ssl_check" in payload:
        return None
    if "command" in payload:
        missing = [k for k in ("team_id", "user_id", "channel_id", "trigger_id") if not payload.get(k)]
        return f"command without {', '.join(missing)}" if missing else None
    kind = payload.get("type")
    if not isinstance(kind, str):
        return "no type"
    if kind == "event_callback":
        event = payload.get("event")
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return "event_callback without an event"
        if not isinstance(payload.get("event_id"), str):
            return "event_callback without an event_id"
    if kind in ("block_actions", "view_submission", "message_action", "shortcut", "view_closed"):
        if not isinstance(payload.get("user"), dict) or not isinstance(payload.get("team"), dict | None):
            return f"{kind} without a user"
    if kind == "block_actions" and not (isinstance(payload.get("actions"), list) and payload["actions"]):
        return "block_actions without actions"
    if kind in ("view_submission", "view_closed") and not isinstance(payload.get("view"), dict):
        return f"{kind} without a view"
    if kind == "message_action" and not isinstance(payload.get("message"), dict):
        return "message_action without a message"
    return None


def event_id(payload: Mapping[str, Any]) -> str:
    """The id a retry of this payload repeats: the Events API ``event_id``, else the trigger."""
    if payload.get("type") == "event_callback":
        return str(payload["event_id"])
    kind = payload.get("type") or "command"
    trigger = payload.get("trigger_id")
    if trigger:
        return f"{kind}:{trigger}"
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:32]
    return f"{kind}:{digest}"


def team_of(payload: Mapping[str, Any]) -> str:
    """The workspace (team id) a payload came from."""
    team = payload.get("team")
    if isinstance(team, dict) and team.get("id"):
        return str(team["id"])
    user = payload.get("user")
    if isinstance(user, dict) and user.get("team_id"):
        return str(user["team_id"])
    return str(payload.get("team_id") or (payload.get("view") or {}).get("team_id") or "")


@dataclass(frozen=True, slots=True)
class ModalPlace:
    """Where a modal's conversation lives, kept in the view's ``private_metadata``."""

    channel: str
    thread: str | None
    context: Mapping[str, str]


def encode_metadata(place: ModalPlace, *, limit: int = 3000) -> str:
    """``private_metadata`` for a modal; context entries are dropped if it would not fit."""
    context = dict(place.context)
    while True:
        text = json.dumps({"ch": place.channel, "th": place.thread, "ctx": context}, separators=(",", ":"))
        if len(text) <= limit or not context:
            return text
        context.pop(max(context, key=lambda k: len(context[k])))


def decode_metadata(text: str) -> ModalPlace | None:
    try:
        data = json.loads(text or "")
    except ValueError:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("ch"), str):
        return None
    ctx = data.get("ctx")
    context: dict[Any, Any] = ctx if isinstance(ctx, dict) else {}
    thread = data.get("th") if isinstance(data.get("th"), str) else None
    return ModalPlace(data["ch"], thread, {str(k): str(v) for k, v in context.items()})


def form_values(view: Mapping[str, Any]) -> dict[str, str]:
    """A submitted modal's inputs by field name (input block ids are the field names)."""
    values: dict[str, str] = {}
    state = (view.get("state") or {}).get("values") or {}
    for block_id, actions in state.items():
        for value in (actions or {}).values():
            kind = value.get("type")
            if kind in ("static_select", "external_select", "radio_buttons"):
                chosen = value.get("selected_option") or {}
                values[block_id] = str(chosen.get("value") or "")
            elif kind == "datepicker":
                values[block_id] = str(value.get("selected_date") or "")
            else:
                values[block_id] = str(value.get("value") or "")
    return values


def capture_prefill(message: Mapping[str, Any], *, permalink: str | None, channel: str | None) -> dict[str, str]:
    """The intake form filled in from a captured message: its first line, its text, its link."""
    text = slack_text(str(message.get("text") or ""))
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    prefill = {"title": first[:TITLE_PREFILL_CHARS], "description": text[:DESCRIPTION_PREFILL_CHARS]}
    if permalink:
        prefill["source_link"] = permalink
    if channel:
        prefill["source_channel"] = channel
    return {k: v for k, v in prefill.items() if v}


def quoted_prefill(message: Mapping[str, Any], *, permalink: str | None, place: str | None) -> dict[str, str]:
    """What a flow's message shortcut gets: the message's text, its link, its channel's name."""
    prefill = {QUOTED_TEXT: slack_text(str(message.get("text") or "")), QUOTED_LINK: permalink or "",
               QUOTED_PLACE: place or ""}
    return {k: v for k, v in prefill.items() if v}


def command_words(text: str) -> tuple[str, str]:
    """``/brm`` text as (verb, rest): ``"status DR-42"`` -> ``("status", "DR-42")``."""
    verb, _, rest = html.unescape(text).strip().partition(" ")
    return verb.casefold(), rest.strip()


def to_inbound(
    payload: Mapping[str, Any],
    *,
    bot_user_id: str | None = None,
    channel: str | None = None,
    permalink: str | None = None,
    catalog: Catalog | None = None,
) -> Inbound | None:
    """The neutral inbound for a Slack payload, or None when it is nothing for the engine.

    ``channel`` stands in for payloads that carry none (a button on App Home: the person's
    DM); ``permalink`` is the captured message's link for the message shortcut; ``catalog``
    (the engine's) maps ``/brm`` verbs to the flows that declared them.
    """
    kind = payload.get("type")
    if kind == "event_callback":
        return _event(payload, bot_user_id)
    if "command" in payload:
        return _command(payload, catalog)
    if kind == "block_actions":
        return _action(payload, channel)
    if kind == "view_submission":
        return _submission(payload)
    if kind == "message_action":
        return _capture(payload, permalink, catalog)
    return None


def _event(payload: Mapping[str, Any], bot_user_id: str | None) -> Inbound | None:
    event = payload["event"]
    team = str(payload.get("team_id") or event.get("team") or "")
    user, where, text = event.get("user"), event.get("channel"), str(event.get("text") or "")
    if not user or not where or event.get("bot_id") or user == bot_user_id:
        return None
    if event["type"] == "message":
        if event.get("channel_type") != "im" or event.get("subtype") not in TEXT_SUBTYPES:
            return None
        key = ConversationKey(PLATFORM, team, where, user)
    elif event["type"] == "app_mention":
        key = ConversationKey(PLATFORM, team, where, user, str(event.get("thread_ts") or event.get("ts") or ""))
    else:
        return None
    return Inbound(
        key=key,
        event_id=event_id(payload),
        text=slack_text(text, bot_user_id=bot_user_id),
        source=Source(channel=where),
    )


class _CommandBase(TypedDict):
    """What every ``/brm`` inbound shares."""

    key: ConversationKey
    event_id: str
    source: Source


def _command(payload: Mapping[str, Any], catalog: Catalog | None) -> Inbound:
    """``/brm <verb> <rest>``: the verbs are the flows' own (the catalog); a form verb opens the form."""
    team, where, user = str(payload["team_id"]), str(payload["channel_id"]), str(payload["user_id"])
    key = ConversationKey(PLATFORM, team, where, user, COMMAND_THREAD)
    verb, rest = command_words(str(payload.get("text") or ""))
    base: _CommandBase = {"key": key, "event_id": event_id(payload), "source": Source(channel=where)}
    target = catalog.slash(verb) if catalog is not None else None
    if target is not None and target.form:
        return Inbound(**base, action=Action(f"{target.flow}:{FORM_OPEN}"), form={"title": rest} if rest else {})
    if target is not None and target.word:
        return Inbound(**base, text=f"{target.word} {rest}".strip())
    return Inbound(**base, text=f"{verb} {rest}".strip())


def _action(payload: Mapping[str, Any], fallback_channel: str | None) -> Inbound | None:
    pressed = payload["actions"][0]
    action_id = str(pressed.get("action_id") or "")
    choice_id, separator, number = action_id.rpartition(ACTION_SEPARATOR)
    if not separator or not number.isdigit() or "value" not in pressed:
        return None
    container = payload.get("container") or {}
    where = (payload.get("channel") or {}).get("id") or container.get("channel_id") or fallback_channel
    if not where:
        return None
    message = payload.get("message") or {}
    if container.get("is_ephemeral"):
        thread: str | None = COMMAND_THREAD  # only /brm answers are ephemeral
    else:
        thread = message.get("thread_ts") if not str(where).startswith("D") else None
    key = ConversationKey(PLATFORM, team_of(payload), str(where), str(payload["user"]["id"]), thread)
    return Inbound(key=key, event_id=event_id(payload), action=Action(choice_id, str(pressed["value"])))


def _submission(payload: Mapping[str, Any]) -> Inbound | None:
    view = payload["view"]
    place = decode_metadata(str(view.get("private_metadata") or ""))
    if place is None:
        return None
    values = {**place.context, **form_values(view)}
    key = ConversationKey(PLATFORM, team_of(payload), place.channel, str(payload["user"]["id"]), place.thread)
    return Inbound(
        key=key,
        event_id=event_id(payload),
        action=Action(str(view.get("callback_id") or "")),
        form=values,
        source=Source(channel=place.context.get("source_channel"), link=place.context.get("source_link")),
    )


def _capture(payload: Mapping[str, Any], permalink: str | None, catalog: Catalog | None) -> Inbound:
    """A message shortcut: the form of the flow that declared it, prefilled from the message.

    ``capture_demand_request`` opens the first form (the intake's) with a title and description;
    a shortcut a flow declares (``Command.shortcut``) gets the message as ``quoted_*`` values.
    """
    channel = payload.get("channel") or {}
    where = str(channel.get("id") or "")
    key = ConversationKey(PLATFORM, team_of(payload), where, str(payload["user"]["id"]))
    declared = catalog.shortcut_flow(str(payload.get("callback_id") or "")) if catalog is not None else None
    if declared is not None:
        flow = declared
        prefill = quoted_prefill(payload["message"], permalink=permalink, place=str(channel.get("name") or ""))
    else:
        forms = catalog.form_flows() if catalog is not None else []
        flow = forms[0] if forms else ""
        prefill = capture_prefill(payload["message"], permalink=permalink, channel=where or None)
    return Inbound(
        key=key,
        event_id=event_id(payload),
        action=Action(f"{flow}:{FORM_OPEN}" if flow else ""),
        form=prefill,
        source=Source(channel=where or None, link=permalink),
    )
