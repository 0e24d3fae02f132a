"""``brm-bot surveys apply|list`` as an admin runs them (the installed command in a subprocess)."""

from __future__ import annotations

from pathlib import Path

from tests.bot.test_cli import run

GOOD = """\
name: finance-pulse
title: Finance pulse
audience: {partners: [Finance]}
schedule: {day: "1st mon", hour: 10}
window_days: 5
questions:
  - {id: satisfaction, type: rating, text: "How satisfied are you?"}
"""


def test_the_shipped_survey_applies_once_and_is_listed(tmp_path: Path) -> None:
    first = run(["surveys", "apply", "--default"], tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("partner-pulse: created “Partner pulse”, 4 questions, for executives")
    again = run(["surveys", "apply", "--default"], tmp_path)
    assert again.returncode == 0 and again.stdout.strip() == "partner-pulse: nothing changed."
    listed = run(["surveys", "list"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0] == "partner-pulse: “Partner pulse”"
    assert "audience executives; schedule day 1st mon, hour 10 in each recipient's time zone" in lines[1]
    assert "next run 20" in lines[2] and "runs so far 0" in lines[2]


def test_a_bad_file_is_refused_whole_and_nothing_is_stored(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(GOOD.replace("window_days: 5", "window_days: 5\nmin_group: 1").replace("rating", "stars"))
    result = run(["surveys", "apply", str(bad)], tmp_path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"brm-bot: {bad} is refused; nothing was applied:",
        "  line 6: min_group: 1 is too small: results show only from 3 answers or more, so no one can be picked out",
        "  line 8: questions[1].type: 'stars' is not a question type: use rating (1-5), choice, nps (0-10) or text",
    ]
    assert "No surveys yet" in run(["surveys", "list"], tmp_path).stdout


def test_an_audience_naming_an_unknown_partner_is_refused(tmp_path: Path) -> None:
    good = tmp_path / "finance.yaml"
    good.write_text(GOOD)
    result = run(["surveys", "apply", str(good)], tmp_path)
    assert result.returncode == 2
    assert "  line 3: audience.partners: no business partner is named 'Finance'" in result.stderr.splitlines()


def test_a_file_or_default_is_needed(tmp_path: Path) -> None:
    result = run(["surveys", "apply"], tmp_path)
    assert result.returncode == 2 and "give a FILE.yaml or --default" in result.stderr
