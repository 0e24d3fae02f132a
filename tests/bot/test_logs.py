"""Secrets never reach the log, whatever carries them."""

from __future__ import annotations

import logging

import pytest

from bot.logs import RedactSecrets


@pytest.fixture
def captured() -> tuple[logging.Logger, list[str]]:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    handler = Collect()
    handler.addFilter(RedactSecrets(["s3cr3t-signing-value", "app-password-123"]))
    logger = logging.getLogger("test.redaction")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    return logger, lines


def test_configured_secrets_and_token_shapes_are_masked(captured: tuple[logging.Logger, list[str]]) -> None:
    logger, lines = captured
    logger.info("signing with %s", "s3cr3t-signing-value")
    logger.warning("token xoxb-1234-5678-abcdEFGH in a message, app token xapp-1-A0-999")
    logger.error("password=%s", "app-password-123")
    assert lines == [
        "signing with [redacted]",
        "token [redacted] in a message, app token [redacted]",
        "password=[redacted]",
    ]


def test_secrets_in_a_traceback_are_masked(captured: tuple[logging.Logger, list[str]]) -> None:
    logger, lines = captured
    try:
        raise RuntimeError("auth failed for xoxb-0000-1111-secret")
    except RuntimeError:
        logger.exception("call failed")
    assert "xoxb-0000-1111-secret" not in lines[0] and "[redacted]" in lines[0]


def test_bearer_tokens_are_masked(captured: tuple[logging.Logger, list[str]]) -> None:
    logger, lines = captured
    logger.debug("headers: Authorization: Bearer eyJ0eXAiOiJKV1QiLCJhbGciOi.payload.signature")
    assert lines == ["headers: Authorization: Bearer [redacted]"]


def test_no_log_line_holds_a_raw_line_break_from_input(captured: tuple[logging.Logger, list[str]]) -> None:
    logger, lines = captured
    forged = "hello\n2024-01-01 00:00:00 INFO brm_bot: admin logged in\r\u2028"
    logger.info("a message said %s", forged)
    logger.warning(forged)
    logger.info("%s", "x" * 2_000_000)
    assert len(lines) == 3
    assert not any(ch in line for line in lines for ch in "\n\r\u2028")
    assert lines[0] == "a message said hello\\n2024-01-01 00:00:00 INFO brm_bot: admin logged in\\r\\u2028"
    assert len(lines[2]) < 10_000 and lines[2].endswith("more characters]")
