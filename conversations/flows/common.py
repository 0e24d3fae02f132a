"""Helpers shared by the flows: reading a choice, checking a field."""

from __future__ import annotations

import calendar
import re
import unicodedata
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from rapidfuzz import fuzz, utils

from conversations.messages import Choices, Option, Reply, Text, TextStyle

SKIP_WORDS = frozenset({"skip", "none", "no", "n/a", "na", "-", "nothing", "not sure"})
USE_SCORE = 85.0  # a typo this close is simply read as what it resembles
OFFER_SCORE = 70.0  # this close, it is offered ("did you mean …?")
DATE_FORMAT = "%d %b %Y"
TIME_FORMAT = "%d %b %Y %H:%M %Z"


def show_date(day: date) -> str:
    """The one way a date is written to a person: ``31 Mar 2027``."""
    return day.strftime(DATE_FORMAT)


def show_time(moment: datetime, tz: ZoneInfo) -> str:
    """The one way a moment is written to a person: ``31 Mar 2027 14:05 CEST``, in their zone."""
    return moment.astimezone(tz).strftime(TIME_FORMAT)


def _said(text: str) -> str:
    return " ".join(text.casefold().split()).rstrip(".!")


def closest(text: str, candidates: Iterable[str]) -> tuple[str, float] | None:
    """The candidate ``text`` most resembles and how closely (0-100), ignoring case and spacing.

    Short words are left alone: ``no`` and ``on`` are too close to mean a typo.
    """
    said = _said(text)
    if len(said) < 4:
        return None
    best: tuple[str, float] | None = None
    for candidate in candidates:
        if len(candidate) < 4:
            continue
        score = fuzz.ratio(said, candidate.casefold(), processor=utils.default_process)
        if best is None or score > best[1]:
            best = (candidate, score)
    return best


def pick(text: str, options: tuple[Option, ...]) -> Option | None:
    """The option the person meant: its number, its label, its id, a unique label prefix, or a
    label typed with a small typo (``projcet``)."""
    said = _said(text)
    if said.isascii() and said.isdigit():  # "²" is a digit to Python, not a number to int()
        n = int(said)
        return options[n - 1] if 1 <= n <= len(options) else None
    for option in options:
        if said in (option.label.casefold(), option.id.casefold()):
            return option
    starts = [o for o in options if len(said) >= 2 and o.label.casefold().startswith(said)]
    if len(starts) == 1:
        return starts[0]
    near = closest(said, [o.label for o in options])
    if near is not None and near[1] >= USE_SCORE:
        return next(o for o in options if o.label == near[0])
    return None


def not_an_option(text: str, options: tuple[Option, ...]) -> str:
    said = text if len(text) <= 40 else text[:40] + "…"
    if text.strip().isdigit():
        return f"There is no option {said}: pick a number from 1 to {len(options)}, or press a button."
    near = closest(text, [o.label for o in options])
    if near is not None and near[1] >= OFFER_SCORE:
        return f"“{said}” is not one of the options. Did you mean *{near[0]}*? Type it, its number or press a button."
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


MONTHS = {m.casefold(): n for n, m in enumerate(calendar.month_name) if m} | {
    m.casefold(): n for n, m in enumerate(calendar.month_abbr) if m
}
WEEKDAYS = {d.casefold(): n for n, d in enumerate(calendar.day_name)} | {
    d.casefold(): n for n, d in enumerate(calendar.day_abbr)
}
_IN = re.compile(r"^in\s+(\d{1,3}|a|an|one|two|three|four|six)\s+(day|week|month)s?$")
_END_OF = re.compile(r"^(?:the\s+)?end\s+of\s+([a-z]+)(?:\s+(\d{4}))?$")
_MONTH = re.compile(r"^([a-z]+)(?:\s+(\d{4}))?$")
_QUARTER = re.compile(r"^q([1-4])\s*(\d{4})?$")
_NEXT_DAY = re.compile(r"^(?:next|this|on)\s+([a-z]+)$")
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "six": 6}


def _month_end(year: int, month: int) -> date:
    return date(year, month, calendar.monthrange(year, month)[1])


MONTH_FIRST_REGIONS = frozenset({"us", "ph", "fm", "mh", "pw", "as", "gu", "mp", "um", "vi"})
DATE_WORDS = re.compile(r"^(?:by|before|until|till|for|due|around|on|at\s+the|at)\s+", re.IGNORECASE)


def day_first(locale: str | None) -> bool:
    """Whether ``01/02/2027`` reads as 1 February for someone with ``locale`` (``en-US``: no)."""
    if not locale:
        return True
    region = locale.replace("_", "-").split("-")[-1].casefold() if "-" in locale or "_" in locale else ""
    return region not in MONTH_FIRST_REGIONS


def natural_date(text: str, *, today: date, day_first: bool = True) -> date | None:
    """A date as people write it: "end of March", "by March", "31/03/2027" (day first unless
    ``day_first`` is False, or only the other reading is a date), "next Friday", "in 3 weeks",
    "Q1 2027" (its last day), "tomorrow"; None otherwise.

    A month or quarter without a year is the next one that has not ended yet.
    """
    said = " ".join(text.casefold().replace(",", " ").split()).rstrip(".")
    said = DATE_WORDS.sub("", said)
    if said == "today":
        return today
    if said == "tomorrow":
        return today + timedelta(days=1)
    if match := re.fullmatch(r"(\d{1,2})[/.-](\d{1,2})[/.-](\d{4})", said):
        first, second, year = (int(g) for g in match.groups())
        readings = [(first, second), (second, first)] if day_first else [(second, first), (first, second)]
        for day, month in readings:
            try:
                return date(year, month, day)
            except ValueError:
                continue
        return None
    if match := _IN.match(said):
        amount = int(match.group(1)) if match.group(1).isdigit() else _NUMBERS[match.group(1)]
        unit = match.group(2)
        if unit == "day":
            return today + timedelta(days=amount)
        if unit == "week":
            return today + timedelta(weeks=amount)
        month_index = today.month - 1 + amount
        year, month = today.year + month_index // 12, month_index % 12 + 1
        return date(year, month, min(today.day, calendar.monthrange(year, month)[1]))
    month_only = _MONTH.match(said)
    if month_only and month_only.group(1) not in MONTHS:
        month_only = None
    if match := _END_OF.match(said) or month_only:
        word, year_text = match.groups()
        if word == "month":
            return _month_end(today.year, today.month)
        if word == "year":
            return date(today.year, 12, 31)
        if word not in MONTHS:
            return None
        month = MONTHS[word]
        year = int(year_text) if year_text else today.year
        if not year_text and _month_end(year, month) < today:
            year += 1
        return _month_end(year, month)
    if match := _QUARTER.match(said):
        quarter = int(match.group(1))
        year = int(match.group(2)) if match.group(2) else today.year
        if not match.group(2) and _month_end(year, quarter * 3) < today:
            year += 1
        return _month_end(year, quarter * 3)
    if match := _NEXT_DAY.match(said) or re.fullmatch(r"([a-z]+)", said):
        if match.group(1) not in WEEKDAYS:
            return None
        ahead = (WEEKDAYS[match.group(1)] - today.weekday()) % 7 or 7
        return today + timedelta(days=ahead)
    return None


DATE_HINT = "2027-03-31, 31/03/2027, end of March, next Friday, in 3 weeks or Q1 2027"


def parse_date(text: str, *, today: date, day_first: bool = True) -> tuple[date | None, str | None]:
    """(date, None), or (None, error). Accepts ISO (2026-12-31), 31 Dec 2026, Dec 31 2026, and the
    forms of :func:`natural_date` ("end of March", "31/03/2027", "next Friday", "in 3 weeks", "Q1 2027")."""
    cleaned = DATE_WORDS.sub("", " ".join(text.replace(",", " ").split()))
    natural = natural_date(cleaned, today=today, day_first=day_first)
    for fmt in ("%Y-%m-%d", "%d %b %Y", "%d %B %Y", "%b %d %Y", "%B %d %Y", "%Y/%m/%d", "natural"):
        if fmt == "natural":
            if natural is None:
                continue
            value = natural
        else:
            try:
                value = datetime.strptime(cleaned, fmt).date()
            except ValueError:
                continue
        if value < today:
            return None, f"{show_date(value)} is in the past. Give a date from today on, or type *skip*."
        if value.year > today.year + 10:
            return (
                None,
                f"{show_date(value)} is more than ten years away. Give a nearer date, or type *skip*.",
            )
        return value, None
    return None, f"I couldn't read that date. Try {DATE_HINT}, or type *skip*."


_TRAILING_DATE = re.compile(r"\s+(?:by|before|until|till|due|for|in|on|next|end|q[1-4])\b", re.IGNORECASE)


def split_date(sentence: str, *, today: date, day_first: bool = True) -> tuple[str, date | None]:
    """``("CRM dashboard for sales", 31 Mar)`` from ``"CRM dashboard for sales by March"``: the
    longest tail that reads as a future date is taken off; otherwise the sentence and None."""
    text = sentence.strip().rstrip(".!")
    for match in _TRAILING_DATE.finditer(text):
        head, tail = text[: match.start()].rstrip(" ,;-–—"), text[match.start() :].strip()
        value, error = parse_date(tail, today=today, day_first=day_first)
        if value is not None and error is None and head:
            return head, value
    return text, None


def question(choice_id: str, prompt: str, options: tuple[Option, ...], *intro: str) -> Reply:
    blocks = [Text(t) for t in intro]
    return Reply(blocks=(*blocks, Choices(id=choice_id, prompt=prompt, options=options)))


def warn(text: str) -> Reply:
    return Reply.text(text, TextStyle.WARNING)


def refuse(text: str) -> Reply:
    """A warning that refuses what the person may not do; a pressed button stays for others."""
    return Reply(blocks=(Text(text, TextStyle.WARNING),), refused_action=True)
