"""``brm-bot serve`` with Teams, run as an admin runs it: the installed command on a free port."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import jwt

from tests.bot.test_cli import _brm_bot
from tests.teams.conftest import DANA, TeamsHarness
from tests.teams.fake_connector import FakeConnector, FakeLogin

APP_ID = "9e2b0f6a-0c5d-4b3e-8d1a-6f7e5c4b3a21"
PASSWORD = "s3cret-teams-password-value"


@dataclass
class Served:
    url: str
    process: asyncio.subprocess.Process
    log: Path

    def output(self) -> str:
        return self.log.read_text()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@asynccontextmanager
async def serving(tmp_path: Path, env: dict[str, str]) -> AsyncIterator[Served]:
    """``brm-bot serve`` in a subprocess, up once ``/healthz`` answers; stopped with SIGTERM."""
    port = _free_port()
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MICROSOFT_", "TEAMS_", "BRM_BOT_"))
    }
    environment.update(DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", HOME=str(tmp_path), PORT=str(port))
    environment.update(env)
    environment = {k: v for k, v in environment.items() if v}  # HOST="" leaves HOST unset
    log = tmp_path / "serve.log"
    with log.open("wb") as sink:
        process = await asyncio.create_subprocess_exec(
            *_brm_bot(), "serve", cwd=tmp_path, env=environment, stdout=sink, stderr=sink
        )
    served = Served(f"http://127.0.0.1:{port}", process, log)
    try:
        async with aiohttp.ClientSession() as http:
            for _ in range(300):  # up to ~30 s for the interpreter and the database to start
                assert process.returncode is None, served.output()
                try:
                    async with http.get(served.url + "/healthz") as answer:
                        if answer.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("brm-bot serve did not come up:\n" + served.output())
        yield served
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), 30)
            except TimeoutError:
                process.kill()
                await process.wait()


def _listening_addresses(port: int) -> set[str]:
    """The local addresses this machine's TCP sockets listen on for ``port`` (from /proc)."""
    found: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if not os.path.exists(table):
            continue
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


async def test_local_mode_serves_teams_and_health_warns_loudly_and_stops_on_sigterm(
    tmp_path: Path, fake: tuple[FakeConnector, str]
) -> None:
    connector, service_url = fake
    async with serving(tmp_path, {"TEAMS_LOCAL_MODE": "true", "HOST": ""}) as served, aiohttp.ClientSession() as http:
        # Without HOST, local mode listens on loopback only: nobody else on the network reaches it.
        assert _listening_addresses(int(served.url.rsplit(":", 1)[1])) == {"0100007F"}
        async with http.get(served.url + "/healthz") as health:
            assert health.status == 200 and (await health.json())["status"] == "ok"
        maker = TeamsHarness(None, connector, None, service_url)  # type: ignore[arg-type]
        activity = maker.personal(DANA, "help")
        async with http.post(served.url + "/api/messages", json=activity) as answer:
            assert answer.status == 201, await answer.text()
        assert connector.messages, served.output()
        assert connector.messages[0].conversation == DANA.conversation
        assert "new request" in connector.text()

        activity = maker.personal(DANA, "help")
        activity["serviceUrl"] = "http://10.0.0.1/"
        async with http.post(served.url + "/api/messages", json=activity) as answer:
            assert answer.status == 403
            assert "loopback" in (await answer.json())["error"]

        served.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(served.process.wait(), 30) == 0
    output = served.output()
    assert "TEAMS_LOCAL_MODE is on" in output and "UNAUTHENTICATED" in output and "WARNING" in output
    assert "on http://127.0.0.1:" in output
    assert "shutting down" in output and "Traceback" not in output


async def test_with_an_app_id_serve_refuses_requests_without_a_token_and_never_logs_the_password(
    tmp_path: Path, fake: tuple[FakeConnector, str], login: FakeLogin
) -> None:
    connector, service_url = fake
    env = {"MICROSOFT_APP_ID": APP_ID, "MICROSOFT_APP_PASSWORD": PASSWORD, "BRM_BOT_LOG_LEVEL": "DEBUG",
           "HOST": "127.0.0.1", "TEAMS_OPENID_METADATA_URL": login.metadata_url}
    async with serving(tmp_path, env) as served, aiohttp.ClientSession() as http:
        activity = TeamsHarness(None, connector, None, service_url).personal(DANA, "hello")  # type: ignore[arg-type]
        async with http.post(served.url + "/api/messages", json=activity) as answer:
            assert answer.status == 401
            assert PASSWORD not in await answer.text()
        async with http.post(
            served.url + "/api/messages", json=activity, headers={"Authorization": "Basic " + PASSWORD}
        ) as answer:
            assert answer.status == 401
        for forged in ("Bearer garbage", "Bearer " + jwt.encode({"aud": APP_ID}, PASSWORD, algorithm="HS256")):
            async with http.post(
                served.url + "/api/messages", json=activity, headers={"Authorization": forged}
            ) as answer:
                assert answer.status == 401
        async with http.get(served.url + "/healthz") as health:
            assert health.status == 200
        served.process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(served.process.wait(), 30) == 0
    assert connector.calls == []  # nothing was answered
    output = served.output()
    assert "serving teams" in output and "TEAMS_LOCAL_MODE is on" not in output
    assert PASSWORD not in output and "Traceback" not in output
    assert login.fetches == 1  # the signing keys, fetched once at start from the configured URL


async def test_an_app_id_together_with_local_mode_is_refused_at_start(tmp_path: Path) -> None:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MICROSOFT_", "TEAMS_", "BRM_BOT_"))
    }
    environment.update(
        DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", MICROSOFT_APP_ID=APP_ID,
        MICROSOFT_APP_PASSWORD=PASSWORD, TEAMS_LOCAL_MODE="true",
    )
    process = await asyncio.create_subprocess_exec(
        *_brm_bot(), "serve", cwd=tmp_path, env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    message = err.decode().strip()
    assert message.startswith("brm-bot: ") and "TEAMS_LOCAL_MODE" in message and "MICROSOFT_APP_ID" in message
    assert PASSWORD not in message + out.decode() and "Traceback" not in message
