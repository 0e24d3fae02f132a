"""``brm-bot db ...`` and ``--version``, run as an operator would: the installed command."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import uuid
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa

from storage import migrate
from storage.admin import create_database, drop_database
from tests.bot.test_cli import run
from tests.conftest import POSTGRES_URL

HEAD = migrate.head_revision()


def test_version_prints_the_installed_version(tmp_path: Path) -> None:
    result = run(["--version"], tmp_path)
    assert result.returncode == 0
    assert result.stdout.strip() == "brm-bot 0.1.0"
    assert not (tmp_path / "bot.db").exists()  # reads no settings, opens no database


def test_current_and_history_follow_the_schema(tmp_path: Path) -> None:
    empty = run(["db", "current"], tmp_path)
    assert empty.returncode == 0 and empty.stdout.startswith("empty: no schema yet")
    assert "The database is empty" in run(["db", "history"], tmp_path).stdout

    assert run(["db", "upgrade"], tmp_path).returncode == 0
    assert run(["db", "current"], tmp_path).stdout.strip() == f"{HEAD} (head): up to date"
    history = run(["db", "history"], tmp_path)
    assert history.returncode == 0
    assert history.stdout.strip().splitlines() == [
        "0007 -> 0008 (head, current): the weekly digest and value realization: value checks; indexes for "
        "the digest's figures",
        "0006 -> 0007: outbox messages to a channel: the BRM team's channel (BRM_BOT_BRM_CHANNEL)",
        "0005 -> 0006: pulse surveys: definitions, runs, invitations, respondents kept apart, answers, "
        "follow-ups",
        "0004 -> 0005: identities the platform can no longer reach (the app was uninstalled, "
        "its token revoked)",
        "0003 -> 0004: scheduled job runs, touchpoints, maturity changes, snoozes; outbox lease "
        "tokens, priority, holds",
        "0002 -> 0003: the BRM workflow: partner executives, duplicate links, notes and watchers "
        "on requests",
        "0001 -> 0002: conversation state carries the schema version of its flow's steps",
        "base -> 0001: initial schema",
    ]


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_downgrade_asks_first_and_changes_nothing_without_a_yes(tmp_path: Path) -> None:
    assert run(["chat", "--demo"], tmp_path, stdin="quit\n").returncode == 0
    before = _tables(tmp_path / "bot.db")
    assert "demand_request" in before

    refused = run(["db", "downgrade", "base"], tmp_path, stdin="n\n")
    assert refused.returncode == 1
    assert f"Downgrade the database schema from {HEAD} to base?" in refused.stdout
    assert refused.stderr.strip() == "brm-bot: nothing changed (answer y, or pass --yes in a script)"
    no_answer = run(["db", "downgrade", "base"], tmp_path, stdin="")  # a script that forgot --yes
    assert no_answer.returncode == 1 and "Traceback" not in no_answer.stderr
    assert _tables(tmp_path / "bot.db") == before

    done = run(["db", "downgrade", "base", "--yes"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"Database schema: {HEAD} -> base"
    assert _tables(tmp_path / "bot.db") == {"alembic_version"}
    assert run(["db", "current"], tmp_path).stdout.startswith("empty")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["db", "downgrade", "0042", "--yes"], "brm-bot: REVISION: '0042' is not a revision of this version"),
        (["db", "downgrade", HEAD, "--yes"], f"brm-bot: REVISION: {HEAD} is not older than the database's revision"),
        (["db", "upgrade", "--sql", "--from", "nope"], "brm-bot: --from: 'nope' is not a revision of this version"),
        (["db", "upgrade", "--from", "0001"], "brm-bot: --from: only with --sql"),
    ],
)
def test_a_wrong_revision_is_one_line_and_changes_nothing(tmp_path: Path, args: list[str], says: str) -> None:
    assert run(["db", "upgrade"], tmp_path).returncode == 0
    result = run(args, tmp_path)
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(says)
    assert run(["db", "current"], tmp_path).stdout.strip() == f"{HEAD} (head): up to date"


def test_upgrade_sql_prints_a_script_that_builds_the_schema_without_touching_the_database(tmp_path: Path) -> None:
    result = run(["db", "upgrade", "--sql"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "CREATE TABLE demand_request" in result.stdout
    assert not (tmp_path / "bot.db").exists()  # printed, not run

    with sqlite3.connect(tmp_path / "bot.db") as conn:  # the DBA runs it
        conn.executescript(result.stdout)
    assert run(["db", "current"], tmp_path).stdout.strip() == f"{HEAD} (head): up to date"
    assert run(["chat", "--demo"], tmp_path, stdin="status DR-1\n").returncode == 0


def test_upgrade_sql_for_postgresql_runs_on_postgresql(tmp_path: Path, postgres_url: str | None) -> None:
    if postgres_url is None:
        pytest.skip("no PostgreSQL answers here")
    name = f"brm_sql_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    url = asyncio.run(create_database(POSTGRES_URL, name))
    try:
        result = run(["db", "upgrade", "--sql"], tmp_path, env={"DATABASE_URL": url})
        assert result.returncode == 0, result.stderr
        assert result.stdout.lstrip().startswith("BEGIN;") and "COMMIT;" in result.stdout

        async def apply() -> None:
            plain = sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
            conn = await asyncpg.connect(plain)
            try:
                await conn.execute(result.stdout)
            finally:
                await conn.close()

        asyncio.run(apply())
        current = run(["db", "current"], tmp_path, env={"DATABASE_URL": url})
        assert current.stdout.strip() == f"{HEAD} (head): up to date"
    finally:
        asyncio.run(drop_database(POSTGRES_URL, name))
