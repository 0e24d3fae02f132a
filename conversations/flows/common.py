"""Helpers shared by the flows: reading a choice, checking a field."""

from __future__ import annotations

import unicodedata
from datetime import date, datetime

from conversations.messages import Choices, Option, Reply, Text, TextStyle

SKIP_WORDS = frozenset({"skip", "none", "no", "n/a", "na", "-", "nothing", "not sure"})


def pick(text: str, options: tuple[Option, ...]) -> Option | None:
    """The option the person meant: its number, its label, its id, or a unique label prefix."""
    said = " ".join(text.casefold().split()).rstrip(".")
    if said.isdigit():
        n = int(said)
        return options[n - 1] if 1 <= n <= len(options) else None
    for option in options:
        if said in (option.label.casefold(), option.id.casefold()):
            return option
    starts = [o for o in options if len(said) >= 2 and o.label.casefold().startswith(said)]
    return starts[0] if len(starts) == 1 else None


def not_an_option(text: str, options: tuple[Option, ...]) -> str:
    said = text if len(text) <= 40 else text[:40] + "…"
    if text.strip().isdigit():
        return f"There is no option {said}: pick a number from 1 to {len(options)}, or press a button."
    return f"“{said}” is not one of the options. Press a button, or type its number (1–{len(options)}) or its name."


def too_long(label: str, text: str, limit: int) -> str:
    return f"That {label} is {len(text):,} characters long; the limit is {limit:,}. Please shorten it."


# Characters that draw nothing although Unicode files them as letters or symbols: the Braille
# blank, Hangul fillers, the Khmer inherent vowels, the combining grapheme joiner.
BLANK_LOOKING = frozenset("\u2800\u3164\u115f\u1160\uffa0\u17b4\u17b5\u034f")


def _visible(ch: str) -> bool:
    if ch in BLANK_LOOKING or ch.isspace():
        return False
    code = ord(ch)
    if 0xFE00 <= code <= 0xFE0F or 0xE0100 <= code <= 0xE01EF or 0xE0000 <= code <= 0xE007F:
        return False  # variation selectors and tags modify what stands before them
    return unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn", "Zs", "Zl", "Zp")


def visible_length(text: str) -> int:
    """How many characters of ``text`` draw something (zero-width spaces, bidi marks, soft
    hyphens and blank-looking letters do not)."""
    return sum(1 for ch in text if _visible(ch))


def check_text(label: str, text: str, *, minimum: int, maximum: int) -> str | None:
    """An error message, or None when ``text`` fits. Only visible characters count towards ``minimum``."""
    if not text:
        return f"The {label} can't be empty."
    if len(text) > maximum:
        return too_long(label, text, maximum)
    visible = visible_length(text)
    if visible == 0:
        return f"That {label} shows as blank: it has no visible characters. Please type some words."
    if visible < minimum:
        return f"That {label} is a little short: please use at least {minimum} characters."
    return None


def parse_date(text: str, *, today: date) -> tuple[date | None, str | None]:
    """(date, None), or (None, error). Accepts ISO (2026-12-31), 31 Dec 2026, Dec 31 2026."""
    cleaned = " ".join(text.replace(",", " ").split())
    for fmt in ("%Y-%m-%d", "%d %b %Y", "%d %B %Y", "%b %d %Y", "%B %d %Y", "%Y/%m/%d"):
        try:
            value = datetime.strptime(cleaned, fmt).date()
        except ValueError:
            continue
        if value < today:
            return None, f"{value.isoformat()} is in the past. Give a date from today on, or type *skip*."
        if value.year > today.year + 10:
            return (
                None,
                f"{value.isoformat()} is more than ten years away. Give a nearer date, or type *skip*.",
            )
        return value, None
    return None, "I couldn't read that date. Use a form like 2026-12-31 or 31 Dec 2026, or type *skip*."


def question(choice_id: str, prompt: str, options: tuple[Option, ...], *intro: str) -> Reply:
    blocks = [Text(t) for t in intro]
    return Reply(blocks=(*blocks, Choices(id=choice_id, prompt=prompt, options=options)))


def warn(text: str) -> Reply:
    return Reply.text(text, TextStyle.WARNING)
