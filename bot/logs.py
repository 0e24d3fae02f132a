"""Logging that never prints a secret.

Every record passes a filter that masks the configured secret values and anything shaped
like a Slack token, whatever the message or its arguments contain. The same filter escapes
line breaks (``\n`` is written as ``\\n``) and cuts a message past :data:`MAX_MESSAGE`
characters, so text from outside (a message, a header) can never forge a log line of its own
nor flood the log; a traceback still spans its lines.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

TOKEN_PATTERN = re.compile(
    r"\b(xox[abposr]-[A-Za-z0-9-]+|xapp-[A-Za-z0-9-]+)|(?<=Bearer )[A-Za-z0-9._~+/=-]{16,}", re.IGNORECASE
)
MASK = "[redacted]"
MAX_MESSAGE = 8000
BREAKS = str.maketrans({"\n": "\\n", "\r": "\\r", "\u2028": "\\u2028", "\u2029": "\\u2029",
                        "\x0b": "\\x0b", "\x0c": "\\x0c", "\x1c": "\\x1c", "\x1d": "\\x1d",
                        "\x1e": "\\x1e", "\x85": "\\x85"})


def one_line(text: str) -> str:
    """``text`` on one line, at most ``MAX_MESSAGE`` characters."""
    text = text.translate(BREAKS)
    if len(text) > MAX_MESSAGE:
        text = f"{text[:MAX_MESSAGE]}…[{len(text) - MAX_MESSAGE} more characters]"
    return text


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
        cleaned = one_line(self.redact(message))
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def configure(level: str, secrets: Iterable[str]) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactSecrets(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("aiosqlite", "sqlalchemy.engine", "asyncio", "alembic"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
