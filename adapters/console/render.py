"""Neutral replies as terminal text: choices become numbered options."""

from __future__ import annotations

from conversations.messages import Choices, Facts, Form, Link, Option, Reply, Text, TextStyle

_PREFIX = {TextStyle.WARNING: "⚠ ", TextStyle.SUCCESS: "✔ ", TextStyle.MUTED: "", TextStyle.PLAIN: ""}


def _plain(text: str) -> str:
    """Drop the *bold* marks the flows use; a terminal shows them as they are."""
    return text.replace("*", "")


def _numbers(options: tuple[Option, ...]) -> bool:
    """Whether the options are a scale of numbers (perhaps with a last "Skip")."""
    labels = [o.label for o in options]
    if labels and labels[-1] == "Skip":
        labels.pop()
    return bool(labels) and all(label.isdigit() for label in labels)


def render(reply: Reply) -> str:
    """The reply as lines of text. Example: ``render(Reply.text("hi")) == "hi"``."""
    out: list[str] = []
    for block in reply.blocks:
        match block:
            case Text(text=text, style=TextStyle.HEADING):
                heading = _plain(text)
                out.append(heading + "\n" + "─" * min(len(heading), 60))
            case Text(text=text, style=style):
                out.append(_PREFIX.get(style, "") + _plain(text))
            case Facts(items=items, title=title):
                if title:
                    out.append(_plain(title))
                width = max((len(k) for k, _ in items), default=0)
                for label, value in items:
                    lines = value.splitlines() or [""]
                    out.append(f"  {label.ljust(width)}  {lines[0]}")
                    out.extend(f"  {' ' * width}  {line}" for line in lines[1:])
            case Choices(prompt=prompt, options=options) if _numbers(options):
                # A scale (1-5, 0-10): typing the number means that number, so no list numbers.
                out.append(_plain(prompt))
                out.append("  " + " · ".join(o.label for o in options))
            case Choices(prompt=prompt, options=options):
                out.append(_plain(prompt))
                out.extend(f"  {n}. {o.label}" for n, o in enumerate(options, 1))
            case Form(title=title, fields=fields, errors=errors):
                out.append(f"{title} (a form; in the terminal I ask one question at a time)")
                out.extend(f"  ⚠ {f.label}: {errors[f.name]}" for f in fields if f.name in errors)
            case Link(url=url, label=label):
                out.append(f"{label}: {url}")
    return "\n".join(out)
