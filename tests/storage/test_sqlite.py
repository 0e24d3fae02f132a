"""SQLite only: a database file the process may not write is refused at start."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from storage.db import Database, DatabaseUrlError

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def _writable(path: Path) -> bool:
    try:
        with path.open("r+b"):
            return True
    except OSError:
        return False


@pytest.fixture
def read_only_copy(tmp_path: Path, sqlite_template: Path) -> Iterator[Path]:
    """A migrated database file this process cannot open for writing.

    ``chmod 0444`` is the everyday case; but root ignores file modes, and these tests run as
    root here. Then the file is also made immutable (``chattr +i``), which root's writes obey
    too. If neither takes (no ``chattr``, a file system without the attribute, no capability),
    the test is skipped and says why: a test that "passes" on a writable file would prove nothing.
    The directory stays writable: SQLite's ``-wal`` and ``-shm`` files live there, as they would
    next to a read-only database file mounted into a container.
    """
    path = tmp_path / "read-only.db"
    shutil.copy(sqlite_template, path)
    path.chmod(stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
    immutable = False
    if _writable(path):
        chattr = shutil.which("chattr")
        if chattr is not None:
            immutable = subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode == 0
    try:
        if _writable(path):
            reason = f"cannot make {path} read-only for uid {os.geteuid()} (chmod ignored, chattr +i unavailable)"
            print(reason)
            pytest.skip(reason)
        yield path
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(path)], check=True)
        path.chmod(stat.S_IRUSR | stat.S_IWUSR)


async def test_a_read_only_database_file_is_refused_at_start(read_only_copy: Path) -> None:
    db = Database.connect(f"sqlite+aiosqlite:///{read_only_copy}")
    try:
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await db.check_writable()
    finally:
        await db.dispose()


async def test_a_writable_database_file_passes_the_check(tmp_path: Path, sqlite_template: Path) -> None:
    path = tmp_path / "writable.db"
    shutil.copy(sqlite_template, path)
    db = Database.connect(f"sqlite+aiosqlite:///{path}")
    try:
        await db.check_writable()
        async with db.transaction() as store:  # and nothing was left open by the check
            assert await store.events.claim(platform="console", event_id="Ev1", now=NOW)
        assert db.sqlite_path == path
    finally:
        await db.dispose()


async def test_sqlite_urls_take_no_options(tmp_path: Path) -> None:
    with pytest.raises(DatabaseUrlError, match=r"DATABASE_URL.*'mode'"):
        Database.connect(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}?mode=ro")
    with pytest.raises(DatabaseUrlError, match=r"DATABASE_URL.*'mysql'"):
        Database.connect("mysql://u@localhost/brm")

