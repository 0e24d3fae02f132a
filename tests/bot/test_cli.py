"""The command line, run as a person would: the installed ``brm-bot`` in a subprocess."""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

INTAKE = [
    "new request",
    "Contract renewal reminders",
    "Legal misses renewal dates in a spreadsheet",
    "No contract renews by surprise again",
    "enhancement",
    "high",
    "1",
    "skip",
    "submit",
    "mine",
]


def _brm_bot() -> list[str]:
    found = shutil.which("brm-bot")
    return [found] if found else [sys.executable, "-c", "from bot.cli import main; main()"]


def run(
    args: list[str], tmp_path: Path, *, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {
        k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "MICROSOFT_", "TEAMS_", "BRM_BOT_"))
    }
    environment.update({"DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}", "HOME": str(tmp_path)})
    environment.update(env or {})
    return subprocess.run(
        [*_brm_bot(), *args], input=stdin, capture_output=True, text=True, cwd=tmp_path, env=environment, timeout=60
    )


def test_help_lists_the_commands(tmp_path: Path) -> None:
    result = run(["--help"], tmp_path)
    assert result.returncode == 0
    for command in ("chat", "serve", "db", "export", "teams"):
        assert command in result.stdout


def test_a_wrong_setting_stops_with_one_line_naming_the_variable(tmp_path: Path) -> None:
    result = run(["chat"], tmp_path, env={"BRM_BOT_TIMEZONE": "Mars/Olympus"})
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == "brm-bot: BRM_BOT_TIMEZONE: 'Mars/Olympus' is not a time zone (try Europe/Berlin or UTC)"
    )
    assert not (tmp_path / "bot.db").exists()


def test_a_partial_platform_config_names_what_is_missing_and_never_the_secret(tmp_path: Path) -> None:
    result = run(["serve"], tmp_path, env={"SLACK_BOT_TOKEN": "xoxb-very-secret-token"})
    assert result.returncode == 2
    assert "SLACK_SIGNING_SECRET" in result.stderr
    assert "xoxb-very-secret-token" not in result.stderr + result.stdout
    assert "Traceback" not in result.stderr


def test_serve_without_a_platform_says_how_to_configure_one(tmp_path: Path) -> None:
    result = run(["serve"], tmp_path)
    assert result.returncode == 2
    assert "no platform is configured" in result.stderr and "brm-bot chat --demo" in result.stderr


def test_db_upgrade_creates_then_reports_up_to_date(tmp_path: Path) -> None:
    first = run(["db", "upgrade"], tmp_path)
    from storage.migrate import head_revision

    assert first.returncode == 0 and f"empty -> {head_revision()}" in first.stdout
    second = run(["db", "upgrade"], tmp_path)
    assert second.returncode == 0 and "up to date" in second.stdout


def test_chat_on_a_pipe_files_a_request_and_prints_the_brms_notification(tmp_path: Path) -> None:
    result = run(["chat", "--demo"], tmp_path, stdin="\n".join(INTAKE) + "\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Loaded the demo organisation" in out
    assert "Submitted as DR-13" in out
    assert "┌─ message to alice@example.com" in out and "New demand request DR-13 from Dana Whitfield" in out
    assert "DR-13 · Contract renewal reminders — Submitted" in out
    assert out.rstrip().endswith("Bye.")
    again = run(["chat", "--demo", "--as", "priya@example.com"], tmp_path, stdin="status DR-13\n")
    assert "The database is not empty" in again.stdout and "Contract renewal reminders" in again.stdout


def test_chat_refuses_a_bad_email(tmp_path: Path) -> None:
    result = run(["chat", "--as", "not an email"], tmp_path)
    assert result.returncode == 2 and "is not an email address" in result.stderr


def test_export_writes_every_request_with_the_requesters_email(tmp_path: Path) -> None:
    hostile = '=HYPERLINK("http://evil.test")'
    script = ["request " + hostile, "skip", "Formula-looking titles stay text", "idea", "low", "1", "skip", "submit"]
    assert run(["chat", "--demo"], tmp_path, stdin="\n".join(script) + "\n").returncode == 0

    as_json = run(["export", "requests", "--format", "json"], tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    records = json.loads(as_json.stdout)
    assert len(records) == 13
    last = records[-1]
    assert (last["key"], last["title"], last["requester_email"]) == ("DR-13", hostile, "dana@example.com")
    assert last["business_partner"] == "Finance" and last["brm_email"] == "alice@example.com"
    assert last["created_at"].endswith("+00:00")

    as_csv = run(["export", "requests", "--format", "csv"], tmp_path)
    rows = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    assert len(rows) == 13 and rows[0]["key"] == "DR-1"
    assert rows[-1]["title"] == "'" + hostile  # a spreadsheet shows it as text, never runs it

    bad = run(["export", "requests", "--format", "xml"], tmp_path)
    assert bad.returncode == 2 and "xml" in bad.stderr


@pytest.mark.parametrize("url", ["mysql://root@localhost/db", "not a url"])
def test_an_unsupported_database_url_is_refused(tmp_path: Path, url: str) -> None:
    result = run(["db", "upgrade"], tmp_path, env={"DATABASE_URL": url})
    assert result.returncode == 2 and result.stderr.startswith("brm-bot: DATABASE_URL:")


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("sqlite+aiosqlite:////nonexistent/dir/bot.db", "unable to open database file"),
        ("postgresql+asyncpg://nobody:s3cret-pw@127.0.0.1:5432/test", "nobody"),
    ],
)
def test_a_database_that_cannot_be_used_is_one_line_without_the_password(
    tmp_path: Path, url: str, says: str, postgres_url: str | None
) -> None:
    if url.startswith("postgresql") and postgres_url is None:
        pytest.skip("no PostgreSQL answers here, so it cannot refuse an unknown role")
    for command in (["db", "upgrade"], ["chat"]):
        result = run(command, tmp_path, env={"DATABASE_URL": url})
        assert result.returncode == 2, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("brm-bot: DATABASE_URL: cannot use the database")
        assert says in lines[0] and "s3cret-pw" not in result.stderr


def test_people_and_partners_import_from_the_command_line(tmp_path: Path) -> None:
    assert run(["db", "upgrade"], tmp_path).returncode == 0
    (tmp_path / "people.csv").write_text(
        "name,email,role,time_zone,partner\nAlice Moreno,alice@example.com,brm,Europe/Madrid,\n"
        "Dana Whitfield,DANA@example.com,requester,,Finance\n"
    )
    (tmp_path / "bad.csv").write_text("name,email,role,time_zone,partner\nAl,al@example.com,brm,,\nX,x,boss,,\n")
    (tmp_path / "partners.csv").write_text(
        "partner,executive_email,brm_email,cadence_days,maturity\nFinance,,alice@example.com,21,trusted advisor\n"
    )
    bad = run(["people", "import", "bad.csv"], tmp_path)
    assert bad.returncode == 1
    assert "bad.csv: line 3: email 'x' is not an email address; role 'boss' is not one of" in bad.stderr
    assert "nothing was imported" in bad.stderr
    dry = run(["people", "import", "people.csv", "--dry-run"], tmp_path)
    assert dry.returncode == 0 and "dry run: nothing was written" in dry.stdout
    assert "No people loaded yet" in run(["people", "list"], tmp_path).stdout
    done = run(["people", "import", "people.csv"], tmp_path)
    assert done.returncode == 0 and "+ person Dana Whitfield <dana@example.com> (requester)" in done.stdout
    assert "nothing changed" in run(["people", "import", "people.csv"], tmp_path).stdout
    assert run(["partners", "import", "partners.csv"], tmp_path).returncode == 0
    listed = run(["partners", "list"], tmp_path).stdout.splitlines()
    assert listed[1].split() == ["Finance", "trusted", "advisor", "alice@example.com", "21", "-"]
    people = [line.split() for line in run(["people", "list"], tmp_path).stdout.splitlines()]
    assert ["dana@example.com", "Dana", "Whitfield", "requester", "UTC", "Finance"] in people
