"""``brm-bot serve`` with the Slack variables set: the installed command, as an admin runs it.

The real command runs in a subprocess against the fake Slack Web API (``SLACK_API_URL``),
serves ``POST /slack/events`` and ``GET /healthz`` on the port it is given, answers Slack's
URL check and a direct message, and stops cleanly on SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from tests.slack.conftest import BOT_TOKEN, DANA, SIGNING_SECRET, dm_of, envelope, sign
from tests.slack.fake_slack import FakeSlack

START_SECONDS = 60.0


def _brm_bot() -> list[str]:
    found = shutil.which("brm-bot")
    return [found] if found else [sys.executable, "-c", "from bot.cli import main; main()"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Served:
    """The running command: its address, and what it printed."""

    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self.process = process
        self.url = url
        self.output: list[str] = []

    async def read_until(self, needle: str) -> None:
        assert self.process.stderr is not None
        async with asyncio.timeout(START_SECONDS):
            while True:
                line = (await self.process.stderr.readline()).decode(errors="replace")
                if not line:
                    raise AssertionError("brm-bot serve ended early:\n" + "".join(self.output))
                self.output.append(line)
                if needle in line:
                    return

    async def stop(self) -> int:
        """SIGTERM, then everything it printed until it exited."""
        self.process.send_signal(signal.SIGTERM)
        assert self.process.stderr is not None
        async with asyncio.timeout(START_SECONDS):
            rest = await self.process.stderr.read()
            code = await self.process.wait()
        self.output.append(rest.decode(errors="replace"))
        return code


@pytest.fixture
async def served(fake_slack: FakeSlack, tmp_path: Path) -> AsyncIterator[Served]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MICROSOFT_", "TEAMS_", "BRM_BOT_"))}
    env.update({
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": fake_slack.api_url,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", "HOST": "127.0.0.1", "PORT": str(port),
        "HOME": str(tmp_path), "BRM_BOT_LOG_LEVEL": "DEBUG",
    })
    process = await asyncio.create_subprocess_exec(
        *_brm_bot(), "serve", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    server = Served(process, f"http://127.0.0.1:{port}")
    try:
        await server.read_until("serving slack on")
        yield server
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


async def test_serve_answers_slack_and_the_health_check_then_stops_cleanly(
    served: Served, fake_slack: FakeSlack
) -> None:
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{served.url}/healthz") as health:
            assert health.status == 200
            assert (await health.json())["database"] == "ok"

        check = json.dumps({"token": "unused", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P",
                            "type": "url_verification"})
        headers = {"Content-Type": "application/json", **sign(check)}
        async with http.post(f"{served.url}/slack/events", data=check, headers=headers) as verified:
            assert verified.status == 200
            assert "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" in await verified.text()

        forged = {"Content-Type": "application/json", **sign(check, secret="not-the-secret")}
        async with http.post(f"{served.url}/slack/events", data=check, headers=forged) as refused:
            assert refused.status == 401

        dm = json.dumps(envelope({"type": "message", "channel_type": "im", "user": DANA, "channel": dm_of(DANA),
                                  "text": "hello", "ts": "1700000000.000100", "team": "T0FAKE"}))
        async with http.post(f"{served.url}/slack/events", data=dm,
                             headers={"Content-Type": "application/json", **sign(dm)}) as answered:
            assert answered.status == 200
    (reply,) = await fake_slack.wait_for("chat.postMessage")
    assert reply.args["channel"] == dm_of(DANA)
    assert "What would you like to do?" in reply.text
    assert reply.token == BOT_TOKEN

    assert await served.stop() == 0
    printed = "".join(served.output)
    assert "shutting down" in printed
    assert "Traceback" not in printed
    assert BOT_TOKEN not in printed and SIGNING_SECRET not in printed


async def test_serve_stops_with_one_line_when_slack_refuses_the_token(fake_slack: FakeSlack, tmp_path: Path) -> None:
    fake_slack.fail_once("auth.test", 200, {"ok": False, "error": "invalid_auth"})
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MICROSOFT_", "TEAMS_", "BRM_BOT_"))}
    env.update({
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": fake_slack.api_url,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", "HOST": "127.0.0.1", "PORT": str(_free_port()),
        "HOME": str(tmp_path),
    })
    process = await asyncio.create_subprocess_exec(
        *_brm_bot(), "serve", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(START_SECONDS):
        _, err = await process.communicate()
    assert process.returncode == 2
    message = err.decode().strip().splitlines()[-1]
    assert message == "brm-bot: SLACK_BOT_TOKEN: Slack refused the token (invalid_auth); see docs/slack.md"
    assert "Traceback" not in err.decode() and BOT_TOKEN not in err.decode()


def _env(fake_slack: FakeSlack, tmp_path: Path, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MICROSOFT_", "TEAMS_", "BRM_BOT_"))}
    env.update({
        "SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": SIGNING_SECRET, "SLACK_API_URL": fake_slack.api_url,
        "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", "HOST": "127.0.0.1", "PORT": str(port),
        "HOME": str(tmp_path), "BRM_BOT_STATE_DIR": str(tmp_path / "state"),
    })
    return env


async def _serve(env: dict[str, str], cwd: Path) -> Served:
    process = await asyncio.create_subprocess_exec(
        *_brm_bot(), "serve", cwd=cwd, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    server = Served(process, f"http://127.0.0.1:{env['PORT']}")
    await server.read_until("serving slack on")
    return server


@pytest.mark.parametrize("stalled", ["users.info", "chat.postMessage"], ids=["before-the-turn", "while-posting"])
async def test_acknowledged_messages_survive_a_kill_and_are_answered_once_after_restart(
    fake_slack: FakeSlack, tmp_path: Path, stalled: str
) -> None:
    people = ("U0DANA", "U0ALICE", "U0NEW")
    env = _env(fake_slack, tmp_path, _free_port())
    fake_slack.hold(stalled)
    first = await _serve(env, tmp_path)
    try:
        async with aiohttp.ClientSession() as http:
            for n, person in enumerate(people):
                dm = json.dumps(envelope({"type": "message", "channel_type": "im", "user": person,
                                          "channel": dm_of(person), "text": "help", "ts": f"1700000000.00010{n}",
                                          "team": "T0FAKE"}))
                async with http.post(f"{first.url}/slack/events", data=dm,
                                     headers={"Content-Type": "application/json", **sign(dm)}) as answered:
                    assert answered.status == 200
        await fake_slack.wait_held(len(people))
    finally:
        first.process.kill()
        await first.process.wait()
    fake_slack.release(stalled)
    assert not fake_slack.called("chat.postMessage"), "the killed process posted nothing"

    second = await _serve(env, tmp_path)
    try:
        await fake_slack.wait_for("chat.postMessage", len(people), within=START_SECONDS)
    finally:
        assert await second.stop() == 0
    replies = fake_slack.called("chat.postMessage")
    assert sorted(r.args["channel"] for r in replies) == sorted(dm_of(p) for p in people), "exactly one reply each"
    assert all("Sorry" not in r.text for r in replies)
    journal = tmp_path / "state" / "slack-journal.jsonl"
    assert journal.exists() and journal.stat().st_size == 0, "the journal is emptied once the work is done"
    assert BOT_TOKEN not in "".join(second.output)
