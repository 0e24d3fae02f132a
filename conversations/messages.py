"""Platform-neutral message types.

Adapters turn platform traffic into :class:`Inbound` and render :class:`Reply` back into
Block Kit, Adaptive Cards or terminal text. Nothing in here knows a platform: flows that
build replies from these blocks run unchanged on Slack, Teams and the terminal.

Example::

    reply = Reply.of(
        Text("Which category fits best?"),
        Choices(id="intake:category", prompt="Category", options=(Option("idea", "Idea"),)),
    )
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Literal

Platform = Literal["slack", "teams", "console"]
PLATFORMS: tuple[Platform, ...] = ("slack", "teams", "console")


@dataclass(frozen=True, slots=True)
class ConversationKey:
    """Who is talking where. Also the primary key of the conversation state row."""

    platform: Platform
    workspace: str
    channel: str
    user: str
    thread: str | None = None


@dataclass(frozen=True, slots=True)
class Sender:
    """What the platform told us about the person writing, used on first contact."""

    name: str | None = None
    email: str | None = None
    directory_id: str | None = None  # e.g. the Azure AD object id on Teams
    time_zone: str | None = None
    locale: str | None = None  # e.g. "en-US": how the person writes dates (month first)


@dataclass(frozen=True, slots=True)
class Action:
    """A pressed button or a submitted form: ``id`` names what, ``value`` which option."""

    id: str
    value: str = ""


@dataclass(frozen=True, slots=True)
class Source:
    """Where a request came from, for the record (a channel and a link to the message)."""

    channel: str | None = None
    link: str | None = None


@dataclass(frozen=True, slots=True)
class Inbound:
    """One thing a person did: typed text, pressed a button or submitted a form."""

    key: ConversationKey
    event_id: str
    text: str = ""
    action: Action | None = None
    form: Mapping[str, str] | None = None
    sender: Sender | None = None
    source: Source | None = None


class TextStyle(StrEnum):
    PLAIN = "plain"
    HEADING = "heading"
    MUTED = "muted"
    WARNING = "warning"
    SUCCESS = "success"


@dataclass(frozen=True, slots=True)
class Text:
    text: str
    style: TextStyle = TextStyle.PLAIN


@dataclass(frozen=True, slots=True)
class Facts:
    """Label/value pairs, e.g. a request summary."""

    items: tuple[tuple[str, str], ...]
    title: str | None = None


@dataclass(frozen=True, slots=True)
class Option:
    id: str
    label: str
    primary: bool = False
    danger: bool = False


@dataclass(frozen=True, slots=True)
class Choices:
    """A question with options. ``id`` (``flow:step``) comes back as :attr:`Action.id`."""

    id: str
    prompt: str
    options: tuple[Option, ...]


FieldKind = Literal["text", "multiline", "number", "date", "select"]


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    label: str
    kind: FieldKind = "text"
    required: bool = False
    options: tuple[Option, ...] = ()
    initial: str | None = None
    max_length: int | None = None
    placeholder: str | None = None
    hint: str | None = None


@dataclass(frozen=True, slots=True)
class Form:
    """A whole form submitted in one step (a Slack modal, an Adaptive Card with inputs).

    ``id`` comes back as the :attr:`Action.id` of the submission; ``errors`` maps field
    names to messages when a submission was refused.
    """

    id: str
    title: str
    fields: tuple[Field, ...]
    submit_label: str = "Submit"
    errors: Mapping[str, str] = field(default_factory=dict)
    context: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Link:
    url: str
    label: str


Block = Text | Facts | Choices | Form | Link


@dataclass(frozen=True, slots=True)
class Reply:
    """What the bot says. ``ignored_action``: this answers a button that belonged to an earlier
    question, so adapters must not show that press as accepted ("✓ label"). ``refused_action``:
    this refuses a press the person may not make (a requester pressing *Accept* in the BRM team's
    channel), so adapters leave the buttons for the others and tell the presser alone where they can."""

    blocks: tuple[Block, ...]
    replaces_previous: bool = False
    ignored_action: bool = False
    refused_action: bool = False

    @classmethod
    def of(cls, *blocks: Block, replaces_previous: bool = False) -> Reply:
        return cls(blocks=tuple(blocks), replaces_previous=replaces_previous)

    @classmethod
    def text(cls, text: str, style: TextStyle = TextStyle.PLAIN) -> Reply:
        return cls(blocks=(Text(text, style),))

    @property
    def form(self) -> Form | None:
        """The form in this reply, if any (adapters open it as a modal or card)."""
        return next((b for b in self.blocks if isinstance(b, Form)), None)

    def plain_text(self) -> str:
        """A text-only rendering, for notifications' fallback text and logs of tests."""
        parts: list[str] = []
        for block in self.blocks:
            match block:
                case Text(text=t):
                    parts.append(t)
                case Facts(items=items, title=title):
                    if title:
                        parts.append(title)
                    parts.extend(f"{k}: {v}" for k, v in items)
                case Choices(prompt=p, options=opts):
                    parts.append(p)
                    parts.extend(f"{i}. {o.label}" for i, o in enumerate(opts, 1))
                case Form(title=t):
                    parts.append(t)
                case Link(url=u, label=lbl):
                    parts.append(f"{lbl}: {u}")
        return "\n".join(parts)


@dataclass(frozen=True, slots=True)
class Address:
    """Where a proactive message goes: a person's DM (``user``) or a channel."""

    platform: Platform
    workspace: str
    user: str | None = None
    channel: str | None = None
    email: str | None = None  # a person the platform has not linked yet (Slack finds them by email)
    # The queued (outbox) message this send delivers. A platform that can read its own messages
    # back tags the message with it and, when ``maybe_sent_since`` is set (an earlier attempt,
    # begun no earlier than that moment, may have posted it), looks for it before posting again.
    outbox_id: int | None = None
    maybe_sent_since: datetime | None = None


@dataclass(frozen=True, slots=True)
class Delivered:
    """What an adapter's ``send`` returns: the platform's id of the message it posted."""

    message_id: str | None = None
