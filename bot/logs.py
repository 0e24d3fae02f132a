"""Logging that never prints a secret, and never lets input forge a log line.

Every record passes a filter that masks the configured secret values and anything shaped
like a Slack token, whatever the message or its arguments contain. Both formats write one
record per line: line breaks that arrive inside a message or its arguments (a Slack user's
text in an error, a header) are escaped, so no input can start a line of its own.

``BRM_BOT_LOG_FORMAT=text`` (the default)::

    2025-01-31 09:12:03,120 INFO brm_bot: serving slack on http://0.0.0.0:3978 (health: /healthz)

``BRM_BOT_LOG_FORMAT=json``, one object a line, for a log collector::

    {"time": "2025-01-31T09:12:03.120Z", "level": "INFO", "logger": "brm_bot", "message": "..."}

A call site adds context with ``extra=`` and these names, which JSON lines carry as fields:
``platform``, ``event_id``, ``conversation_key`` (written only as a short hash, never the
ids it holds), ``duration_ms``::

    log.info("turn handled", extra={"platform": "slack", "event_id": eid, "conversation_key": key,
                                    "duration_ms": 3.2})
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Literal

TOKEN_PATTERN = re.compile(
    r"\b(xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+)|(?<=Bearer )[A-Za-z0-9._~+/=-]{16,}", re.IGNORECASE
)
MASK = "[redacted]"
LogFormat = Literal["text", "json"]
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Every character str.splitlines() breaks on: a log reader may split on any of them.
LINE_BREAKS = {ord(c): f"\\x{ord(c):02x}" for c in "\x0b\x0c\x1c\x1d\x1e\x85"} | {
    ord("\n"): "\\n",
    ord("\r"): "\\r",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}
CONTEXT_FIELDS = ("platform", "event_id", "duration_ms")


MAX_MESSAGE = 8000


def one_line(text: str) -> str:
    """``text`` with every line break written as an escape (``\\n``, ``\\r``, ...), and at most
    :data:`MAX_MESSAGE` characters, so input can neither forge a line nor flood the log."""
    text = text.translate(LINE_BREAKS)
    if len(text) > MAX_MESSAGE:
        text = f"{text[:MAX_MESSAGE]}…[{len(text) - MAX_MESSAGE} more characters]"
    return text


def conversation_hash(key: object) -> str:
    """A short, stable stand-in for a conversation key: the same conversation gives the same
    hash in every line, but the line holds no workspace, channel or user id."""
    if dataclasses.is_dataclass(key) and not isinstance(key, type):
        text = "|".join("" if v is None else str(v) for v in dataclasses.astuple(key))
    else:
        text = str(key)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class RedactSecrets(logging.Filter):
    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 6}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return TOKEN_PATTERN.sub(MASK, text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        cleaned = self.redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


class OneLineFormatter(logging.Formatter):
    """The text format: one line a record, input's line breaks escaped.

    A traceback keeps its lines, each indented, so that no line of it can pass for a record.
    """

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def message(self, record: logging.LogRecord) -> str:
        return one_line(record.getMessage())

    def exception(self, record: logging.LogRecord) -> str | None:
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        return record.exc_text or None

    def format(self, record: logging.LogRecord) -> str:
        record.message = self.message(record)
        record.asctime = self.formatTime(record, self.datefmt)
        line = self.formatMessage(record)
        trace = self.exception(record)
        if trace:
            line += "".join("\n  " + one_line(part) for part in trace.splitlines())
        return line


class JsonFormatter(OneLineFormatter):
    """The JSON format: one object a line with the time (UTC), level, logger, message, the
    context a call site passed with ``extra=``, and a traceback as one string field."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        entry: dict[str, Any] = {
            "time": when.removesuffix("+00:00") + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": self.message(record),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                entry[name] = value if isinstance(value, int | float) else one_line(str(value))
        key = getattr(record, "conversation_key", None)
        if key is not None:
            entry["conversation"] = conversation_hash(key)
        trace = self.exception(record)
        if trace:
            entry["exception"] = trace
        return json.dumps(entry, default=str)  # ASCII only: no character a reader splits lines on


def formatter(fmt: LogFormat) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else OneLineFormatter()


def configure(level: str, secrets: Iterable[str], fmt: LogFormat = "text") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiosqlite", "sqlalchemy.engine", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
