"""Helpers shared by the flows: reading a choice, checking a field."""

from __future__ import annotations

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


def check_text(label: str, text: str, *, minimum: int, maximum: int) -> str | None:
    """An error message, or None when ``text`` fits."""
    if not text:
        return f"The {label} can't be empty."
    if len(text) > maximum:
        return too_long(label, text, maximum)
    if len(text) < minimum:
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
