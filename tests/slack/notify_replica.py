"""One of the two bot processes of ``tests/slack/test_notified_once.py``.

It starts as ``brm-bot jobs run`` does (settings from the environment, the Slack adapter as
the delivery worker's sender), says ``ready``, waits for ``go`` on stdin so that both replicas
start together, then handles the same BRM commands, each under the same event id a retrying
platform would repeat, and drains the outbox after each one. It prints what it sent.

    python -m tests.slack.notify_replica "accept DR-2" "move DR-2 to shaping because ..."
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp

from bot.platforms.slack import build_slack
from bot.runtime import open_runtime
from bot.settings import load_settings
from conversations.messages import ConversationKey, Inbound, Sender

TEAM, BRM_USER, BRM_DM = "T0FAKE", "U0ALICE", "D0ALICE"
ALICE = Sender(name="Alice Moreno", email="alice@example.com")


async def main(commands: list[str]) -> int:
    settings = load_settings()
    async with open_runtime(settings) as runtime, aiohttp.ClientSession() as http:
        runtime.worker.register(build_slack(settings, runtime, http))
        print("ready", flush=True)
        if (await asyncio.to_thread(sys.stdin.readline)).strip() != "go":
            return 2
        answered = sent = 0
        for number, command in enumerate(commands):
            key = ConversationKey("slack", TEAM, BRM_DM, BRM_USER)
            replies = await runtime.engine.handle(Inbound(key, f"Ev-change-{number}", command, sender=ALICE))
            answered += bool(replies)
            sent += await runtime.worker.drain()
        print(f"answered={answered} sent={sent}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main(sys.argv[1:])))
