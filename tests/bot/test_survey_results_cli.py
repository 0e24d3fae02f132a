"""``brm-bot surveys results``: the table, CSV and JSON of a run, every figure under the threshold."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from bot.survey_results_cli import ResultsFormat, render
from storage import migrate
from storage.db import Database
from storage.demo import load_demo
from storage.survey_results import RunResults
from tests.bot.test_cli import run
from tests.conftest import FakeClock
from tests.survey_data import load_pulse

HIDDEN_TEXTS = ("Nothing works", "Great team", "Keep it up", "More workshops")


async def _results(db: Database, clock: FakeClock) -> RunResults:
    await load_pulse(db, now=clock())
    async with db.transaction() as store:
        survey = await store.survey_results.survey("partner-pulse")
        assert survey is not None and survey.id is not None
        latest = (await store.survey_results.runs(survey.id))[-1]
        return await store.survey_results.results(survey, latest, now=clock(), texts=50)


async def test_the_table(demo_db: Database, clock: FakeClock) -> None:
    table = render(await _results(demo_db, clock), ResultsFormat.table)
    lines = table.splitlines()
    assert lines[0].startswith("Partner pulse (partner-pulse), run 2026-11: 02 Nov 2026 to 07 Nov 2026 UTC, closed")
    assert "Changes are against 2026-10." in lines[1]
    header = next(line for line in lines if line.startswith("group"))
    assert header.split() == ["group", "invited", "answered", "rate", "satisfaction", "(1-5)", "recommend", "(NPS)"]
    finance = next(line for line in lines if line.startswith("Finance "))
    assert finance.split() == ["Finance", "6", "5", "83%", "3.0", "(−1.0)", "+20", "(+20)"]
    overall = next(line for line in lines if line.startswith("Overall "))
    assert overall.split()[:5] == ["Overall", "19", "12", "63%", "3.4"]
    sales = next(line for line in lines if line.startswith("Sales & Marketing "))
    assert sales.split() == ["Sales", "&", "Marketing", "5", "fewer", "than", "3", "answers"]
    assert "Finance                            4.2 ▇▆▅ 3.0" in table
    assert "  - Answer tickets sooner" in table and "Operations: fewer than 3 answers" in table
    for text in HIDDEN_TEXTS:
        assert text not in table
    assert "You said, we did: no follow-up sent yet" in table


async def test_the_csv(demo_db: Database, clock: FakeClock) -> None:
    rows = list(csv.DictReader(io.StringIO(render(await _results(demo_db, clock), ResultsFormat.csv))))
    sales = [r for r in rows if r["group"] == "Sales & Marketing"]
    assert sales == [{"survey": "partner-pulse", "period": "2026-11", "group": "Sales & Marketing", "invited": "5",
                      "answered": "", "question": "", "measure": "response_rate", "option": "", "value": "",
                      "previous": "", "change": "", "note": "fewer than 3 answers"}]
    finance = {(r["question"], r["measure"], r["option"]): r for r in rows if r["group"] == "Finance"}
    assert finance[("satisfaction", "average", "")]["value"] == "3.0"
    assert (finance[("satisfaction", "average", "")]["previous"], finance[("satisfaction", "average", "")]["change"]) \
        == ("4.0", "-1.0")
    assert finance[("recommend", "nps", "")]["value"] == "20"
    assert finance[("role", "count", "trusted advisor")]["value"] == "2"
    assert finance[("", "response_rate", "")]["value"] == "0.833"
    texts = [r["value"] for r in rows if r["measure"] == "answer" and not r["note"]]
    assert sorted(texts) == ["Answer tickets sooner", "Faster laptops", "More updates on projects"]
    operations = [r for r in rows if r["group"] == "Operations" and r["question"] == "better"]
    assert [(r["value"], r["note"]) for r in operations] == [("", "fewer than 3 answers")]


async def test_the_json(demo_db: Database, clock: FakeClock) -> None:
    data = json.loads(render(await _results(demo_db, clock), ResultsFormat.json))
    assert (data["survey"], data["period"], data["min_group"], data["previous_period"]) == (
        "partner-pulse", "2026-11", 3, "2026-10")
    groups = {g["group"]: g for g in data["groups"]}
    assert groups["Sales & Marketing"] == {
        "group": "Sales & Marketing", "overall": False, "invited": 5, "answered": None, "response_rate": None,
        "previous_response_rate": None, "hidden": True, "note": "fewer than 3 answers", "followed_up_at": None,
        "questions": []}
    finance = {q["id"]: q for q in groups["Finance"]["questions"]}
    assert (finance["satisfaction"]["average"], finance["satisfaction"]["trend"]) == (3.0, [4.2, 4.0, 3.0])
    assert finance["role"]["distribution"] == {"order taker": 3, "trusted advisor": 2, "strategic partner": 0}
    assert finance["recommend"]["nps"] == 20
    better = {q["id"]: q for q in groups["Operations"]["questions"]}["better"]
    assert better == {"id": "better", "type": "text", "text": "One thing IT should do differently", "answers": None,
                      "hidden": True, "note": "fewer than 3 answers"}
    assert groups["Overall"]["answered"] == 12
    for text in HIDDEN_TEXTS:
        assert text not in json.dumps(data)


async def test_the_command(tmp_path: Path, clock: FakeClock) -> None:
    db = Database.connect(f"sqlite+aiosqlite:///{tmp_path / 'bot.db'}")
    try:
        await migrate.upgrade(db)
        async with db.transaction() as store:
            await load_demo(store, now=clock())
        await load_pulse(db, now=clock())
    finally:
        await db.dispose()

    latest = run(["surveys", "results", "partner-pulse", "--format", "json"], tmp_path)
    assert latest.returncode == 0, latest.stderr
    assert json.loads(latest.stdout)["period"] == "2026-11"
    october = run(["surveys", "results", "partner-pulse", "--run", "2026-10"], tmp_path)
    assert october.returncode == 0 and "run 2026-10" in october.stdout
    assert "Changes are against 2026-09" in october.stdout

    unknown = run(["surveys", "results", "team-pulse"], tmp_path)
    assert unknown.returncode == 1 and unknown.stdout == ""
    assert unknown.stderr.strip() == "brm-bot: no survey named 'team-pulse' (the surveys: partner-pulse)"
    no_run = run(["surveys", "results", "partner-pulse", "--run", "2027-01"], tmp_path)
    assert no_run.returncode == 1
    assert no_run.stderr.strip() == (
        "brm-bot: partner-pulse has no run '2027-01' (its runs: 2026-09, 2026-10, 2026-11)")
