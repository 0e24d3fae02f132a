"""Teams benchmark: activities through ``POST /api/messages``, end to end, ours vs a bare echo bot.

Run by hand (not part of the test suite)::

    python bench/teams.py                      # 2,000 activities, 32 at a time, each bot
    python bench/teams.py --activities 5000 --concurrency 64

In one run, with the same load, it measures:

- **ours**: ``brm-bot serve`` itself (``TEAMS_LOCAL_MODE=true``, SQLite, the demo organisation),
  every activity a full engine turn (event claimed, person resolved, state saved) whose
  replies are posted to the connector;
- **echo**: a bare botbuilder 4.17 bot (``CloudAdapter`` + ``ActivityHandler`` echoing the
  text), the SDK's defaults, which build new connector clients every turn.

Both post their replies to the same fake Bot Connector (an aiohttp server on 127.0.0.1 that
answers at once), each bot in its own process, the load from this one. Personal-chat
activities shaped like Teams' come from 200 different users; each user's first message is
sent (unmeasured) before the run, so first-contact look-ups are not in the figures. The
botbuilder imports below are the baseline's, not the product's (those stay in
``adapters/teams/``).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
BOT_ID = "28:bench-bot"
USERS = 200
HERE = Path(__file__).resolve()


# --- the processes under test ---------------------------------------------------------------------


def serve_connector(port: int) -> None:
    """A Bot Connector that accepts everything at once (the other side of both bots)."""
    ids = itertools.count(1)

    async def accept(request: web.Request) -> web.Response:
        await request.read()
        return web.json_response({"id": f"m{next(ids)}"})

    async def member(request: web.Request) -> web.Response:
        user = request.match_info["member"]
        return web.json_response({"id": user, "name": user, "email": f"{user[3:]}@bench.example"})

    app = web.Application()
    app.router.add_post("/v3/conversations/{c}/activities", accept)
    app.router.add_post("/v3/conversations/{c}/activities/{a}", accept)
    app.router.add_put("/v3/conversations/{c}/activities/{a}", accept)
    app.router.add_get("/v3/conversations/{c}/members/{member}", member)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def serve_echo(port: int) -> None:
    """The baseline: botbuilder's own echo bot on CloudAdapter, with the SDK's defaults."""
    from botbuilder.core import ActivityHandler, TurnContext
    from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication

    class Config:
        APP_ID = None
        APP_PASSWORD = None

    class Echo(ActivityHandler):
        async def on_message_activity(self, turn_context: TurnContext) -> None:
            await turn_context.send_activity(f"echo: {turn_context.activity.text}")

    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(Config()))
    bot = Echo()

    async def messages(request: web.Request) -> web.Response:
        return await adapter.process(request, bot)

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _spawn(args: Sequence[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        list(args), env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )


async def _wait_ready(port: int, process: subprocess.Popen[bytes]) -> None:
    for _ in range(200):
        if process.poll() is not None:
            raise RuntimeError(f"the server exited: {process.stderr.read().decode()[-2000:] if process.stderr else ''}")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            await asyncio.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()


# --- the load ---------------------------------------------------------------------------------------


def activity(n: int, user: int, text: str, service_url: str) -> dict[str, Any]:
    user_id = f"29:bench-user-{user}"
    return {
        "type": "message",
        "id": f"{1_700_000_000_000 + n}",
        "timestamp": "2026-11-23T09:00:00.000Z",
        "serviceUrl": service_url,
        "channelId": "msteams",
        "from": {"id": user_id, "name": f"User {user}", "aadObjectId": f"aad-{user}"},
        "conversation": {"conversationType": "personal", "tenantId": TENANT, "id": f"a:1bench-{user}"},
        "recipient": {"id": BOT_ID, "name": "BRM Bot"},
        "text": text,
        "textFormat": "plain",
        "locale": "en-US",
        "channelData": {"tenant": {"id": TENANT}},
    }


async def load(url: str, activities: list[dict[str, Any]], concurrency: int) -> tuple[float, list[float], int]:
    """Post every activity (``concurrency`` at a time); (seconds, latencies, failures)."""
    latencies: list[float] = []
    failures = 0
    queue = iter(activities)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            nonlocal failures
            for item in queue:
                started = time.perf_counter()
                async with http.post(url, json=item, headers={"Content-Type": "application/json"}) as response:
                    await response.read()
                    if response.status not in (200, 201):
                        failures += 1
                latencies.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, latencies, failures


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def measure(name: str, port: int, service_url: str, args: argparse.Namespace, text: str) -> dict[str, Any]:
    url = f"http://127.0.0.1:{port}/api/messages"
    counter = itertools.count()
    warmup = [activity(next(counter), u, "hello", service_url) for u in range(USERS)]
    await load(url, warmup, args.concurrency)
    run = [activity(next(counter), n % USERS, text, service_url) for n in range(args.activities)]
    seconds, latencies, failures = await load(url, run, args.concurrency)
    return {
        "bot": name,
        "text": text,
        "activities": len(run),
        "per_second": len(run) / seconds,
        "p50_ms": _percentile(latencies, 50) * 1000,
        "p99_ms": _percentile(latencies, 99) * 1000,
        "failures": failures,
    }


async def main(args: argparse.Namespace) -> int:
    here = HERE
    connector_port = _free_port()
    connector = _spawn([sys.executable, str(here), "--serve-connector", str(connector_port)])
    results: list[dict[str, Any]] = []
    workdir = Path(tempfile.mkdtemp(prefix="brm-bench-"))
    try:
        await _wait_ready(connector_port, connector)
        service_url = f"http://127.0.0.1:{connector_port}/"
        for text in args.texts:
            port = _free_port()
            echo = _spawn([sys.executable, str(here), "--serve-echo", str(port)])
            try:
                await _wait_ready(port, echo)
                results.append(await measure("bare botbuilder echo", port, service_url, args, text))
            finally:
                _stop(echo)

            port = _free_port()
            database = workdir / f"bench-{len(results)}.db"
            env = {
                "DATABASE_URL": f"sqlite+aiosqlite:///{database}",
                "TEAMS_LOCAL_MODE": "true",
                "PORT": str(port),
                "HOST": "127.0.0.1",
                "BRM_BOT_LOG_LEVEL": "WARNING",
            }
            for key in ("MICROSOFT_APP_ID", "MICROSOFT_APP_PASSWORD", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
                env[key] = ""
            brm_bot = shutil.which("brm-bot")
            command = [brm_bot] if brm_bot else [sys.executable, "-c", "from bot.cli import main; main()"]
            demo = await asyncio.to_thread(
                subprocess.run, [*command, "chat", "--demo"], input="quit\n", env={**os.environ, **env},
                capture_output=True, text=True, cwd=workdir, timeout=120,
            )
            if demo.returncode:
                raise RuntimeError(demo.stderr)
            ours = _spawn([*command, "serve"], env)
            try:
                await _wait_ready(port, ours)
                results.append(await measure("brm-bot (ours)", port, service_url, args, text))
            finally:
                _stop(ours)
    finally:
        _stop(connector)
        shutil.rmtree(workdir, ignore_errors=True)

    print(f"{os.cpu_count()} CPUs, {args.activities} activities per bot and text, {args.concurrency} concurrent")
    print(f"{'bot':<24}{'text':<10}{'activities/s':>14}{'p50 ms':>10}{'p99 ms':>10}{'failed':>8}")
    for r in results:
        print(f"{r['bot']:<24}{r['text']:<10}{r['per_second']:>14.1f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}"
              f"{r['failures']:>8}")
    for text in args.texts:
        echo_rate = next(r["per_second"] for r in results if r["text"] == text and r["bot"].startswith("bare"))
        ours_rate = next(r["per_second"] for r in results if r["text"] == text and r["bot"].startswith("brm"))
        print(f"{text!r}: ours / echo = {ours_rate / echo_rate:.2f}x")
    return 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--activities", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument(
        "--texts", nargs="+", default=["cancel", "hello"],
        help="what the users type: 'cancel' answers one text (like the echo), 'hello' a text and a card",
    )
    parser.add_argument("--serve-connector", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve-echo", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    arguments = _arguments()
    if arguments.serve_connector:
        serve_connector(arguments.serve_connector)
    elif arguments.serve_echo:
        serve_echo(arguments.serve_echo)
    else:
        raise SystemExit(asyncio.run(main(arguments)))
