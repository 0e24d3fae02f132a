"""A local append-only journal of acknowledged Slack work, replayed at the next start.

Slack is answered within 3 seconds and the work (the engine's turn, the reply) runs after the
answer. A process killed in between would lose that work: Slack does not send an event again
once it had its 200. So before the answer, the verified payload is appended here; once the
work is done a ``done`` line follows, and at the next start every entry without one is run
again. The replay keeps the payload's event id, so the engine's dedupe makes a replay of a
turn that did run harmless; the replies a turn produced are appended too before they are
posted (:meth:`Journal.replies`), so a process killed while posting them posts them at the
next start instead of losing them (a reply whose post reached Slack just before the kill may
then show twice: at least once, never lost).

What it holds: the payloads Slack sent (message text, user and channel ids, a pressed
button's ``response_url``), never a token (Slack's legacy ``token`` field is dropped). The
file is emptied whenever no work is pending, and rewritten with only the pending entries
when it grows past :data:`COMPACT_BYTES`.

Cheap on purpose: one ``write`` to a file opened with ``O_APPEND`` per entry, no ``fsync``.
The kernel keeps what was written when the process is killed (SIGKILL, OOM killer, a crash);
a power cut or kernel panic can lose the last entries. Not for several processes sharing one
file: each process keeps its own (the file is locked, so a second one fails at start).

Example::

    journal = Journal.open(Path("/var/lib/brm-bot/slack-journal.jsonl"))
    entry = journal.append({"type": "event_callback", ...})
    ...
    journal.done(entry)
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

COMPACT_BYTES = 4 * 1024 * 1024
DROPPED_FIELDS = ("token",)


class JournalLocked(Exception):
    """Another running process holds this journal."""


@dataclass(slots=True)
class Pending:
    """Work written down and not yet done: the payload, and the replies once the turn made them."""

    entry: int
    payload: dict[str, Any]
    replies: dict[str, Any] | None = None
    lines: list[bytes] = field(default_factory=list)


class Journal:
    """An append-only JSON-lines file of pending work (see the module's notes)."""

    def __init__(self, path: Path, fd: int, pending: dict[int, Pending], next_entry: int) -> None:
        self.path = path
        self.fd = fd
        self.pending = pending
        self.next_entry = next_entry
        self.size = os.fstat(fd).st_size

    @classmethod
    def open(cls, path: Path) -> Journal:
        """Open (or create) the journal at ``path``, read what was left pending, and compact it.

        The folder is created with owner-only permissions, the file is ``0600``.
        """
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise JournalLocked(f"{path} is in use by another brm-bot process") from None
        pending = _read(path)
        journal = cls(path, fd, pending, max(pending, default=0) + 1)
        journal.compact()
        if pending:
            log.info("Slack: %d acknowledged pieces of work were left unfinished; they run again now", len(pending))
        return journal

    def close(self) -> None:
        os.close(self.fd)

    def append(self, payload: Mapping[str, Any]) -> int:
        """Write ``payload`` down (without its token); the entry number to pass to :meth:`done`."""
        entry = self.next_entry
        self.next_entry += 1
        kept = {k: v for k, v in payload.items() if k not in DROPPED_FIELDS}
        line = _line({"entry": entry, "payload": kept})
        self.pending[entry] = Pending(entry, kept, lines=[line])
        self._write(line)
        return entry

    def replies(self, entry: int, *, channel: str, thread: str | None, messages: Sequence[Mapping[str, Any]]) -> None:
        """Write down the messages a turn made for ``entry``, before they are posted."""
        pending = self.pending.get(entry)
        if pending is None:
            return
        pending.replies = {"channel": channel, "thread": thread, "messages": [dict(m) for m in messages]}
        line = _line({"replies": entry, **pending.replies})
        pending.lines.append(line)
        self._write(line)

    def done(self, entry: int) -> None:
        """The work of ``entry`` is finished (or given up on with an apology): forget it."""
        if self.pending.pop(entry, None) is None:
            return
        if not self.pending:
            os.ftruncate(self.fd, 0)
            self.size = 0
            return
        self._write(_line({"done": entry}))
        if self.size > COMPACT_BYTES:
            self.compact()

    def compact(self) -> None:
        """Rewrite the file with only the pending entries (atomically, by renaming a new file)."""
        if not self.pending:
            os.ftruncate(self.fd, 0)
            self.size = 0
            return
        fresh = self.path.with_name(self.path.name + ".new")
        with open(fresh, "wb", opener=lambda p, f: os.open(p, f, 0o600)) as out:
            for pending in self.pending.values():
                out.writelines(pending.lines)
        fd = os.open(fresh, os.O_RDWR | os.O_APPEND)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(fresh, self.path)
        os.close(self.fd)
        self.fd = fd
        self.size = os.fstat(fd).st_size

    def _write(self, line: bytes) -> None:
        os.write(self.fd, line)
        self.size += len(line)


def _line(record: Mapping[str, Any]) -> bytes:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def _read(path: Path) -> dict[int, Pending]:
    """The entries of the file at ``path`` that have no ``done`` line, in order."""
    pending: dict[int, Pending] = {}
    with open(path, "rb") as lines:
        for number, raw in enumerate(lines, 1):
            try:
                record = json.loads(raw)
                if "entry" in record:
                    entry = int(record["entry"])
                    pending[entry] = Pending(entry, dict(record["payload"]), lines=[raw])
                elif "replies" in record and int(record["replies"]) in pending:
                    kept = pending[int(record["replies"])]
                    kept.replies = {k: v for k, v in record.items() if k != "replies"}
                    kept.lines.append(raw)
                elif "done" in record:
                    pending.pop(int(record["done"]), None)
            except (ValueError, TypeError, KeyError):
                log.warning("Slack: line %d of the work journal %s is unreadable and was skipped", number, path)
    return pending
