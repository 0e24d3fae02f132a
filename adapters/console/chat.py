"""The terminal chat loop.

On a terminal it has line editing and history (prompt_toolkit); on a pipe it reads one line
a turn, so it can be scripted: ``printf 'new request\\n...' | brm-bot chat``. Messages the bot
starts (a BRM's notification) are printed as they are delivered.
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TextIO

from adapters.console.render import render
from conversations.engine import Engine
from conversations.messages import Address, ConversationKey, Delivered, Inbound, Platform, Reply, Sender

QUIT = frozenset({"/quit", "/exit", "/q"})


class ConsoleChat:
    """One person chatting in this terminal. Also the outbound port for local notifications."""

    platform: Platform = "console"

    def __init__(
        self,
        engine: Engine,
        *,
        email: str,
        name: str | None = None,
        out: TextIO = sys.stdout,
        after_turn: Callable[[], Awaitable[object]] | None = None,
        history: Path | None = None,
    ) -> None:
        """``history``: the file that keeps typed lines between sessions on a terminal; ``None``
        keeps them for this session only."""
        self._engine = engine
        self._email = email
        self._name = name or email.split("@", 1)[0].replace(".", " ").title()
        self._out = out
        self._after_turn = after_turn
        self._history = history
        self.key = ConversationKey(platform="console", workspace="local", channel="terminal", user=email)

    async def send(self, to: Address, reply: Reply) -> Delivered:
        """Print a message the bot starts, saying whom it is for."""
        who = to.user or to.channel or "someone"
        body = render(reply).replace("\n", "\n│ ")
        self._print(f"┌─ message to {who}\n│ {body}\n└─")
        return Delivered(message_id=f"console-{uuid.uuid4().hex[:12]}")

    async def say(self, text: str) -> list[Reply]:
        """Send one line as the person and print the replies."""
        inbound = Inbound(
            key=self.key,
            event_id=f"console-{uuid.uuid4()}",
            text=text,
            sender=Sender(name=self._name, email=self._email),
        )
        replies = await self._engine.handle(inbound)
        for reply in replies:
            self._print(render(reply))
        if self._after_turn is not None:
            await self._after_turn()
        return replies

    async def run(self, stdin: TextIO = sys.stdin) -> None:
        interactive = stdin.isatty() and self._out.isatty()
        self._print(f"brm-bot: chatting as {self._email}. Type help for what I can do, /quit to leave.")
        read = self._prompt_reader(self._history) if interactive else self._pipe_reader(stdin)
        while True:
            line = await read()
            if line is None or line.strip() in QUIT:
                break
            if interactive or line.strip():
                if not interactive:
                    self._print(f"> {line}")
                await self.say(line)
        self._print("Bye.")

    def _print(self, text: str) -> None:
        self._out.write(text + "\n\n")
        self._out.flush()

    @staticmethod
    def _prompt_reader(history: Path | None) -> Callable[[], Awaitable[str | None]]:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.history import FileHistory, History, InMemoryHistory

        kept: History = FileHistory(str(history)) if history is not None else InMemoryHistory()
        session: PromptSession[str] = PromptSession(history=kept)

        async def read() -> str | None:
            try:
                return await session.prompt_async("you> ")
            except (EOFError, KeyboardInterrupt):
                return None

        return read

    @staticmethod
    def _pipe_reader(stdin: TextIO) -> Callable[[], Awaitable[str | None]]:
        async def read() -> str | None:
            line = await asyncio.to_thread(stdin.readline)
            return line.rstrip("\n") if line else None

        return read
