"""The terminal chat: the whole engine in a terminal, for trying the bot and for scripts."""

from adapters.console.chat import ConsoleChat
from adapters.console.render import render

__all__ = ["ConsoleChat", "render"]
