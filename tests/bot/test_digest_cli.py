"""``brm-bot digest preview``: the digest printed for one leader and week, bad input refused in one line."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bot.test_cli import run


def test_preview_prints_a_leaders_digest_and_refuses_bad_input(tmp_path: Path) -> None:
    assert run(["chat", "--demo"], tmp_path, stdin="cancel\n").returncode == 0
    shown = run(["digest", "preview", "--leader", "priya@example.com", "--week", "2026-W47"], tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("Weekly digest, 16 Nov – 22 Nov 2026 (2026-W47)\n")
    assert "Everyone's demand" in shown.stdout and "Pipeline by status" in shown.stdout
    brm = run(["digest", "preview", "--leader", "alice@example.com", "--week", "2026-W47"], tmp_path)
    assert brm.returncode == 0 and "Alice Moreno's partners" in brm.stdout
    slack = run(["digest", "preview", "--leader", "priya@example.com", "--format", "slack"], tmp_path)
    assert slack.returncode == 0 and len(json.loads(slack.stdout)["blocks"]) <= 50
    for args, message in (
        (["--leader", "priya@example.com", "--week", "2026-W60"], "--week: 2026 has no week 60"),
        (["--leader", "priya@example.com", "--week", "last"], "--week: 'last' is not a week like 2026-W47"),
        (["--leader", "nobody@example.com"], "--leader: no one has the email nobody@example.com"),
        (["--leader", "dana@example.com"], "the digest is for leaders"),
        (["--leader", "not-an-email"], "is not an email address"),
    ):
        refused = run(["digest", "preview", *args], tmp_path)
        assert refused.returncode != 0 and message in refused.stderr, refused.stderr
        assert "Traceback" not in refused.stderr


def test_a_wrong_digest_schedule_stops_the_start(tmp_path: Path) -> None:
    result = run(["jobs", "list"], tmp_path, env={"BRM_BOT_DIGEST_SCHEDULE": "mondays at 8"})
    assert result.returncode == 2
    assert result.stderr.strip().startswith("brm-bot: BRM_BOT_DIGEST_SCHEDULE: 'mondays at 8' is not like")


def test_a_leadership_channel_needs_its_platform_configured(tmp_path: Path) -> None:
    result = run(["jobs", "list"], tmp_path, env={"BRM_BOT_LEADERSHIP_CHANNEL": "slack:C0LEADERS"})
    assert result.returncode == 2
    assert result.stderr.startswith("brm-bot: BRM_BOT_LEADERSHIP_CHANNEL is a Slack channel, but Slack is not")
    result = run(["jobs", "list"], tmp_path, env={"BRM_BOT_LEADERSHIP_CHANNEL": "#leaders"})
    assert result.returncode == 2 and "is not a channel: use slack:C0123ABCD" in result.stderr
