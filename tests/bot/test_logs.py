"""Secrets never reach the log, whatever carries them."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

from bot.logs import JsonFormatter, OneLineFormatter, RedactSecrets
from conversations.messages import ConversationKey
from tests.bot.test_cli import INTAKE, _brm_bot, run


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


def _lines(formatter: logging.Formatter, emit: Callable[[logging.Logger], None]) -> list[str]:
    """What one handler with this formatter writes, split into physical lines."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RedactSecrets(["s3cr3t-signing-value"]))
    logger = logging.getLogger("test.format")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    emit(logger)
    return stream.getvalue().splitlines()


KEY = ConversationKey(platform="slack", workspace="T0SECRETTEAM", channel="D0CHANNEL", user="U0PERSON")


def test_json_lines_carry_the_context_and_only_a_hash_of_the_conversation() -> None:
    [line] = _lines(
        JsonFormatter(),
        lambda log: log.warning(
            "turn took %d ms",
            12,
            extra={"platform": "slack", "event_id": "Ev01", "conversation_key": KEY, "duration_ms": 12.5},
        ),
    )
    entry = json.loads(line)
    assert entry["level"] == "WARNING" and entry["logger"] == "test.format" and entry["message"] == "turn took 12 ms"
    assert (entry["platform"], entry["event_id"], entry["duration_ms"]) == ("slack", "Ev01", 12.5)
    assert entry["time"].endswith("Z") and datetime.fromisoformat(entry["time"]).tzinfo is not None
    assert len(entry["conversation"]) == 16
    assert not any(part in line for part in ("T0SECRETTEAM", "D0CHANNEL", "U0PERSON"))
    [again] = _lines(JsonFormatter(), lambda log: log.info("x", extra={"conversation_key": KEY}))
    assert json.loads(again)["conversation"] == entry["conversation"]  # the same conversation, the same hash


@pytest.mark.parametrize("formatter", [OneLineFormatter(), JsonFormatter()], ids=["text", "json"])
def test_line_breaks_from_input_cannot_forge_a_log_line(formatter: logging.Formatter) -> None:
    forged = "nice\n2025-01-01 00:00:00,000 ERROR brm_bot: forged\rline\u2028too"
    lines = _lines(formatter, lambda log: log.info("Slack said %s", forged))
    assert len(lines) == 1
    message = json.loads(lines[0])["message"] if isinstance(formatter, JsonFormatter) else lines[0]
    assert "nice\\n2025" in message and "forged\\rline\\u2028too" in message


@pytest.mark.parametrize("formatter", [OneLineFormatter(), JsonFormatter()], ids=["text", "json"])
def test_a_traceback_never_starts_a_line_of_its_own_and_hides_secrets(formatter: logging.Formatter) -> None:
    def emit(log: logging.Logger) -> None:
        try:
            raise RuntimeError("bad input\nERROR brm_bot: forged, key s3cr3t-signing-value")
        except RuntimeError:
            log.exception("handling failed")

    lines = _lines(formatter, emit)
    assert "s3cr3t-signing-value" not in "\n".join(lines)
    if isinstance(formatter, JsonFormatter):
        [line] = lines
        assert "RuntimeError" in json.loads(line)["exception"]
    else:
        assert lines[0].endswith("ERROR test.format: handling failed")
        assert len(lines) > 1 and all(line.startswith("  ") for line in lines[1:])


def test_json_logs_of_a_chat_are_one_object_a_line_without_what_people_typed(tmp_path: Path) -> None:
    typed = "Quarterly roadmap for the confidential merger"
    script = [*INTAKE[:1], typed, *INTAKE[2:]]
    result = run(
        ["chat", "--demo"],
        tmp_path,
        stdin="\n".join(script) + "\n",
        env={"BRM_BOT_LOG_FORMAT": "json", "BRM_BOT_LOG_LEVEL": "INFO"},
    )
    assert result.returncode == 0, result.stderr
    assert "Submitted as DR-13" in result.stdout
    assert typed not in result.stderr
    for line in result.stderr.splitlines():
        assert json.loads(line)["level"]


def test_serve_logs_json_lines_from_start_to_shutdown(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MICROSOFT_", "TEAMS_", "BRM_BOT_"))}
    env |= {
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
        "HOME": str(tmp_path),
        "TEAMS_LOCAL_MODE": "true",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "BRM_BOT_LOG_FORMAT": "json",
    }
    server = subprocess.Popen(
        [*_brm_bot(), "serve"], cwd=tmp_path, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    assert server.stderr is not None
    try:
        seen: list[dict[str, object]] = []
        while not any(str(entry["message"]).startswith("serving teams") for entry in seen):
            line = server.stderr.readline()
            assert line, f"serve stopped early: {seen}"
            seen.append(json.loads(line))
        server.send_signal(signal.SIGTERM)
        _, rest = server.communicate(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()
    seen += [json.loads(line) for line in rest.splitlines()]
    assert {"level": "WARNING", "logger": "adapters.teams.adapter"}.items() <= seen[0].items()
    assert any(entry["message"] == "shutting down" for entry in seen)
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in seen)


def test_an_unknown_log_format_stops_the_start_naming_the_variable(tmp_path: Path) -> None:
    result = run(["chat"], tmp_path, env={"BRM_BOT_LOG_FORMAT": "xml"})
    assert result.returncode == 2
    assert result.stderr.strip() == "brm-bot: BRM_BOT_LOG_FORMAT: 'xml' is not a log format (use text or json)"
    assert run(["db", "upgrade"], tmp_path, env={"BRM_BOT_LOG_FORMAT": "JSON"}).returncode == 0


def test_a_huge_message_is_cut_and_stays_on_one_line() -> None:
    lines = _lines(OneLineFormatter(), lambda log: log.info("%s", "x\n" * 1_000_000))
    assert len(lines) == 1 and len(lines[0]) < 20_000 and lines[0].endswith("more characters]")
