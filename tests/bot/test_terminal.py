"""The terminal chat on a real pseudo-terminal: prompt, line editing and history."""

from __future__ import annotations

import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")

UP = "\x1b[A"


class Terminal:
    """``brm-bot chat`` attached to a pty, read and typed into like a person at a keyboard."""

    def __init__(self, tmp_path: Path, *options: str, env: dict[str, str] | None = None) -> None:
        command = shutil.which("brm-bot")
        args = [command] if command else [sys.executable, "-c", "from bot.cli import main; main()"]
        environment = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("SLACK_", "MICROSOFT_", "TEAMS_", "BRM_BOT_", "XDG_"))
        }
        environment.update(
            {
                "DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}",
                "HOME": str(tmp_path),
                "TERM": "xterm",
                "COLUMNS": "120",
                "LINES": "40",
                **(env or {}),
            }
        )
        self.fd, child = pty.openpty()
        self.process = subprocess.Popen(
            [*args, "chat", "--demo", *options],
            stdin=child,
            stdout=child,
            stderr=child,
            cwd=tmp_path,
            env=environment,
            close_fds=True,
        )
        os.close(child)
        self.screen = ""

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def wait_for(self, text: str, *, after: int = 0, within: float = 30.0) -> int:
        """Read until ``text`` shows up past position ``after``; returns where it ends."""
        deadline = time.monotonic() + within
        while (found := self.screen.find(text, after)) < 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"never saw {text!r} in:\n{self.screen[-2000:]}")
            ready, _, _ = select.select([self.fd], [], [], 0.2)
            if ready:
                try:
                    self.screen += os.read(self.fd, 65536).decode(errors="replace")
                except OSError:  # the chat has ended
                    raise AssertionError(f"the chat ended before {text!r}:\n{self.screen[-2000:]}") from None
        return found + len(text)

    def close(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)
        os.close(self.fd)


def _recall_two_lines_back(terminal: Terminal) -> None:
    """Type two lines, then recall the first with the up arrow and leave with Ctrl-D."""
    try:
        seen = terminal.wait_for("you>")
        terminal.type("status DR-1\r")
        seen = terminal.wait_for("Requested by", after=seen)  # only the status of one request says this
        terminal.wait_for("you>", after=seen)
        terminal.type("my requests\r")
        seen = terminal.wait_for("Your requests", after=seen)
        seen = terminal.wait_for("you>", after=seen)
        terminal.type(UP + UP + "\r")  # two lines back: status DR-1 again
        seen = terminal.wait_for("Requested by", after=seen)
        seen = terminal.wait_for("you>", after=seen)
        terminal.type("\x04")  # Ctrl-D leaves
        terminal.wait_for("Bye.", after=seen)
    finally:
        terminal.close()


def _files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and not p.name.startswith("bot.db")}


def test_the_terminal_chat_recalls_earlier_lines_with_the_up_arrow(tmp_path: Path) -> None:
    _recall_two_lines_back(Terminal(tmp_path))
    assert _files(tmp_path) == {".local/state/brm-bot/history"}  # the state folder, not the home folder's root
    kept = (tmp_path / ".local/state/brm-bot/history").read_text()
    assert "+status DR-1" in kept and "+my requests" in kept
    assert (tmp_path / ".local/state/brm-bot").stat().st_mode & 0o077 == 0  # private: it holds what was typed


def test_the_history_follows_xdg_state_home(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _recall_two_lines_back(Terminal(tmp_path, env={"XDG_STATE_HOME": str(state)}))
    assert _files(tmp_path) == {"state/brm-bot/history"}


def test_no_history_keeps_no_file_and_still_recalls_within_the_session(tmp_path: Path) -> None:
    _recall_two_lines_back(Terminal(tmp_path, "--no-history"))
    assert _files(tmp_path) == set()


def test_a_request_takes_five_lines_in_the_terminal(tmp_path: Path) -> None:
    """Dana (the demo requester, of Finance) files a complete request with five lines."""
    terminal = Terminal(tmp_path)
    script = (
        ("new request", "What do you need?"),
        ("Invoice OCR for accounts payable", "Both in one answer works"),
        ("Invoices are typed by hand, so that suppliers are paid within a week", "Which category fits best?"),
        ("project, high, end of March", "31 Mar 2027"),
        ("submit", "Submitted as DR-13"),
    )
    try:
        seen = terminal.wait_for("you>")
        for line, answer in script:
            terminal.type(line + "\r")
            seen = terminal.wait_for(answer, after=seen)
            seen = terminal.wait_for("you>", after=seen)
        assert "Finance (yours)" in terminal.screen
        terminal.type("status DR-13\r")
        seen = terminal.wait_for("Invoice OCR for accounts payable", after=seen)
        terminal.wait_for("Project", after=seen)
    finally:
        terminal.close()
