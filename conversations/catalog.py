"""What the flows say about themselves, read by the menu, ``help`` and every adapter.

A flow declares its commands (the words that start it, the ``/brm`` verbs, a help line and
the roles it is for), whether it has a button on the home screen, and whether it has a form.
The menu, ``help``, Slack's ``/brm`` verbs and their help, the Teams welcome and command
list, and the App Home are all generated from these declarations, so adding a flow touches
the flow and the list of flows, nothing else.

Example::

    catalog = Catalog(default_flows())
    catalog.help_lines("brm")      # ["*new request* … to file a demand request", …]
    catalog.slash("new")           # SlashVerb(flow="intake", form=True)
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from conversations.messages import Option

if TYPE_CHECKING:
    from conversations.engine import Flow

ROLES = frozenset({"requester", "brm", "leader", "admin"})
GLOBAL_CANCEL = frozenset({"cancel", "stop", "quit", "abort", "exit"})
GLOBAL_HELP = frozenset({"help", "?", "menu", "commands"})
FORM_OPEN = "open"
FORM_SUBMIT = "submit"
SHORTCUT_ID = re.compile(r"^[A-Za-z][A-Za-z_]{0,63}$")
# What a message shortcut hands the flow's ``open_form`` (besides the form's own fields).
QUOTED_TEXT = "quoted_text"  # the message's text, read out of the platform's markup
QUOTED_LINK = "quoted_link"  # a link to the message (Slack permalink, Teams linkToMessage)
QUOTED_PLACE = "quoted_place"  # the name of the channel or chat it was in, when the platform says


@dataclass(frozen=True, slots=True)
class MessageShortcut:
    """An action on any message: Slack's message shortcut, Teams' message extension action.

    It opens the declaring flow's form prefilled from the message (``QUOTED_TEXT``,
    ``QUOTED_LINK``, ``QUOTED_PLACE``). ``id`` is Slack's ``callback_id`` and Teams' command
    id (letters and underscores, at most 64); ``label`` is the menu entry (at most 32 characters,
    Teams' limit); ``roles`` are who it is for (the flow still refuses others itself).
    """

    id: str
    label: str
    description: str
    roles: frozenset[str] = ROLES


@dataclass(frozen=True, slots=True)
class Command:
    """One way to start a flow.

    ``words`` are typed triggers (the first is the one shown); ``help`` is the line ``help``
    shows, for ``roles``; ``slash`` are ``/brm`` verbs ("" is ``/brm`` alone); ``form`` makes
    those verbs open the flow's form rather than a chat; ``example`` is what a command list
    (Teams' bot commands) offers; ``shortcut`` offers the flow's form on any message.
    """

    words: tuple[str, ...]
    help: str
    roles: frozenset[str] = ROLES
    slash: tuple[str, ...] = ()
    form: bool = False
    example: str = ""
    shortcut: MessageShortcut | None = None


@dataclass(frozen=True, slots=True)
class HomeButton:
    label: str
    primary: bool = False
    roles: frozenset[str] = ROLES


@dataclass(frozen=True, slots=True)
class SlashVerb:
    flow: str
    form: bool
    word: str  # the typed command the verb stands for


@dataclass(frozen=True, slots=True)
class CommandLine:
    """A command as a list shows it: its word, what it does, an example."""

    word: str
    description: str
    example: str = ""


@dataclass
class Catalog:
    """The declarations of a set of flows, checked once: no word or verb claimed twice."""

    flows: Sequence[Flow]
    triggers: list[tuple[str, str]] = field(init=False)  # (words, flow), longest first
    _slash: dict[str, SlashVerb] = field(init=False)
    _shortcuts: dict[str, tuple[str, MessageShortcut]] = field(init=False)

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        slash: dict[str, SlashVerb] = {}
        shortcuts: dict[str, tuple[str, MessageShortcut]] = {}
        for flow in self.flows:
            if ":" in flow.name:
                raise ValueError(f"flow name {flow.name!r} must not contain ':'")
            for command in flow.commands:
                for word in command.words:
                    if word in seen and seen[word] != flow.name:
                        raise ValueError(f"trigger {word!r} is claimed by both {seen[word]} and {flow.name}")
                    if word in GLOBAL_CANCEL or word in GLOBAL_HELP:
                        raise ValueError(f"trigger {word!r} of {flow.name} is a global command")
                    seen[word] = flow.name
                for verb in command.slash:
                    if verb in slash:
                        raise ValueError(f"/brm {verb!r} is claimed by both {slash[verb].flow} and {flow.name}")
                    if command.form and flow.form_id is None:
                        raise ValueError(f"{flow.name} declares a form command but has no form")
                    slash[verb] = SlashVerb(flow.name, command.form, command.words[0] if command.words else "")
                shortcut = command.shortcut
                if shortcut is not None:
                    if flow.form_id is None:
                        raise ValueError(f"{flow.name} declares a message shortcut but has no form")
                    if shortcut.id in shortcuts:
                        raise ValueError(f"shortcut {shortcut.id!r} is claimed by {shortcuts[shortcut.id][0]} too")
                    if not SHORTCUT_ID.match(shortcut.id) or len(shortcut.label) > 32:
                        raise ValueError(f"shortcut {shortcut.id!r}: an id of letters and _, a label of 32 at most")
                    shortcuts[shortcut.id] = (flow.name, shortcut)
        self.triggers = sorted(seen.items(), key=lambda kv: -len(kv[0]))
        self._slash = slash
        self._shortcuts = shortcuts

    # --- typed commands ------------------------------------------------------------------------

    def trigger_of(self, words: str) -> tuple[str, str] | None:
        """(flow, the trigger word) for text (casefolded) that starts a flow."""
        for trigger, flow_name in self.triggers:
            if words == trigger or words.startswith(trigger + " "):
                return flow_name, trigger
        return None

    def command_words(self) -> frozenset[str]:
        return frozenset(w for w, _ in self.triggers) | GLOBAL_CANCEL | GLOBAL_HELP

    def help_lines(self, role: str) -> list[str]:
        lines = [c.help for f in self.flows for c in f.commands if c.help and role in c.roles]
        return [*lines, "*cancel* to stop what we are doing, *help* for this list"]

    def help_text(self, role: str) -> str:
        return "I capture demand requests and keep you posted on them. You can type:\n" + "\n".join(
            f"• {line}" for line in self.help_lines(role)
        )

    def command_list(self, role: str = "requester") -> list[CommandLine]:
        """The commands a platform's command menu offers (Teams' ``commandLists``)."""
        out: list[CommandLine] = []
        for flow in self.flows:
            for command in flow.commands:
                if command.words and command.help and role in command.roles:
                    out.append(CommandLine(command.words[0], _plain(command.help), command.example))
        return out

    # --- /brm ------------------------------------------------------------------------------------

    def slash(self, verb: str) -> SlashVerb | None:
        return self._slash.get(verb.casefold())

    def slash_verbs(self) -> frozenset[str]:
        return frozenset(self._slash)

    def slash_help(self, command: str = "/brm") -> str:
        """One line per flow with a ``/brm`` verb: the verb, an example argument, what it does."""
        lines: list[str] = []
        for flow in self.flows:
            for c in flow.commands:
                verbs = [v for v in c.slash if v]
                if not verbs or not c.help:
                    continue
                word = c.words[0] if c.words else ""
                argument = c.example[len(word) :].strip() if c.example.startswith(word) else ""
                if c.form:
                    shown, what = f"{command} {verbs[0]} [title]", f"opens the {flow.title} form"
                else:
                    shown = f"{command} {verbs[0]} {argument}".strip()
                    what = _plain(c.help).split(" to ", 1)[-1]
                lines.append(f"• `{shown}`: {what}")
        return f"Use `{command}` with one of:\n" + "\n".join(lines)

    # --- the home screen and forms ---------------------------------------------------------------

    def home_options(self, role: str = "requester") -> tuple[Option, ...]:
        return tuple(
            Option(f.name, f.home.label, primary=f.home.primary)
            for f in self.flows
            if f.home is not None and role in f.home.roles
        )

    def flow(self, name: str) -> Flow:
        return next(f for f in self.flows if f.name == name)

    def form_flows(self) -> list[str]:
        return [f.name for f in self.flows if f.form_id is not None]

    def shortcuts(self) -> list[MessageShortcut]:
        """The message shortcuts the flows declare, in the order of the flows."""
        return [shortcut for _, shortcut in self._shortcuts.values()]

    def shortcut_flow(self, shortcut_id: str) -> str | None:
        """The flow whose form a message shortcut opens (None for an id no flow declared)."""
        found = self._shortcuts.get(shortcut_id)
        return found[0] if found is not None else None

    def form_words(self) -> frozenset[str]:
        """Typed words that open a form (Teams: "form")."""
        return frozenset(w for f in self.flows if f.form_id is not None for w in f.form_words)

    def welcome(self, *, personal: bool, role: str = "requester") -> str:
        """The first message after the app is installed, from what the flows offer."""
        lines = self.help_lines(role)[:-1]
        if personal:
            forms = [f for f in self.flows if f.form_id is not None and f.form_words]
            form_line = [f"*{sorted(f.form_words)[0]}* for the {f.title} form at once" for f in forms]
            intro = "Hi! I capture demand requests for the BRM team and keep you posted on them. You can type:\n"
            return intro + "\n".join(f"• {line}" for line in [*lines, *form_line, "*help* at any time"])
        intro = "Hi! I capture demand requests for the BRM team. Mention me with one of these, or *help*:\n"
        return intro + "\n".join(f"• {line}" for line in lines)


def _plain(text: str) -> str:
    return text.replace("*", "")


def flows_named(flows: Iterable[Flow]) -> dict[str, Flow]:
    return {f.name: f for f in flows}
