"""Pulse results on a fixed data set, on SQLite and PostgreSQL: figures, the threshold, the trend."""

from __future__ import annotations

import sqlalchemy as sa

from storage.db import Database
from storage.models import SurveyFollowUp, SurveyRun
from storage.survey_results import RunResults, disclosed, min_group_of
from tests.conftest import FakeClock
from tests.survey_data import DEFINITION, RUNS, PulseData, load_pulse


async def _results(db: Database, clock: FakeClock, period: str = "2026-11", texts: int = 10) -> RunResults:
    async with db.transaction() as store:
        survey = await store.survey_results.survey("partner-pulse")
        assert survey is not None and survey.id is not None
        run = next(r for r in await store.survey_results.runs(survey.id) if r.period == period)
        return await store.survey_results.results(survey, run, now=clock(), texts=texts)


async def test_the_figures_of_a_run_per_partner_and_overall(demo_db: Database, clock: FakeClock) -> None:
    await load_pulse(demo_db, now=clock())
    results = await _results(demo_db, clock)
    assert (results.title, results.period, results.closed, results.min_group) == ("Partner pulse", "2026-11", True, 3)
    assert results.previous_period == "2026-10" and results.trend_periods == ("2026-09", "2026-10", "2026-11")

    overall = results.overall
    assert (overall.invited, overall.answered) == (19, 12)
    satisfaction = overall.figure("satisfaction")
    assert satisfaction is not None and satisfaction.average == 3.4  # 41 / 12
    assert satisfaction.trend == (4.1, 4.1, 3.4) and satisfaction.previous == 4.1 and satisfaction.change == -0.7

    finance = next(g for g in results.partners if g.name == "Finance")
    assert (finance.invited, finance.answered, finance.rate) == (6, 5, 5 / 6)
    assert finance.previous_rate == 5 / 6
    sat = finance.figure("satisfaction")
    assert sat is not None and (sat.average, sat.trend, sat.change) == (3.0, (4.2, 4.0, 3.0), -1.0)
    nps = finance.figure("recommend")
    assert nps is not None and (nps.answers, nps.nps, nps.previous) == (5, 20, 0.0)
    role = finance.figure("role")
    assert role is not None and role.distribution == (("order taker", 3), ("trusted advisor", 2),
                                                       ("strategic partner", 0))
    better = finance.figure("better")
    assert better is not None and better.texts == ("Answer tickets sooner", "Faster laptops",
                                                   "More updates on projects")

    operations = next(g for g in results.partners if g.name == "Operations")
    ops_sat, ops_nps = operations.figure("satisfaction"), operations.figure("recommend")
    assert ops_sat is not None and (ops_sat.average, ops_sat.trend) == (4.5, (4.0, 4.3, 4.5))
    assert ops_nps is not None and ops_nps.nps == 75  # 3 promoters of 4, no detractor


async def test_groups_under_the_threshold_show_no_figures(demo_db: Database, clock: FakeClock) -> None:
    await load_pulse(demo_db, now=clock())
    results = await _results(demo_db, clock)
    sales = next(g for g in results.partners if g.name == "Sales & Marketing")
    people = next(g for g in results.partners if g.name == "People & Culture")
    for group in (sales, people):
        assert group.hidden and group.answered is None and group.rate is None and group.figures == ()
    assert sales.invited == 5
    operations = next(g for g in results.partners if g.name == "Operations")
    better = operations.figure("better")
    assert better is not None and better.hidden and better.texts == ()  # 2 free answers: under 3
    overall_role = results.overall.figure("role")
    assert overall_role is not None and dict(overall_role.distribution)["order taker"] == 5
    overall_nps = results.overall.figure("recommend")
    assert overall_nps is not None and overall_nps.nps == 25


async def test_a_run_with_fewer_than_three_answers_shows_nothing(demo_db: Database, clock: FakeClock) -> None:
    runs = {"2026-11": {"Finance": (6, RUNS["2026-11"]["Finance"][1][:2])}}
    await load_pulse(demo_db, now=clock(), runs=runs, definition={**DEFINITION, "min_group": 1})
    results = await _results(demo_db, clock)
    assert results.min_group == 3, "min_group is never below 3"
    assert results.overall.hidden and results.overall.invited == 6
    assert all(g.hidden for g in results.partners)


async def test_a_higher_min_group_hides_more(demo_db: Database, clock: FakeClock) -> None:
    await load_pulse(demo_db, now=clock(), definition={**DEFINITION, "min_group": 5})
    results = await _results(demo_db, clock)
    finance = next(g for g in results.partners if g.name == "Finance")
    sat = finance.figure("satisfaction")
    # earlier runs: Operations' 3 answers are under 5, so Finance hides with them (none to compare with)
    assert sat is not None and (sat.average, sat.trend, sat.change) == (3.0, (None, None, 3.0), None)
    better = finance.figure("better")
    assert better is not None and better.hidden  # 3 free answers < 5
    assert next(g for g in results.partners if g.name == "Operations").hidden  # 4 < 5


def test_small_groups_cannot_be_worked_out_from_the_overall_figure() -> None:
    assert disclosed({"a": 10, "b": 5, "c": 2}, min_group=3) == {"a"}, "b hidden too, else c = all - a - b"
    assert disclosed({"a": 10, "b": 5, "c": 2, "d": 1}, min_group=3) == {"a", "b"}, "c and d hide each other"
    assert disclosed({"a": 10, "b": 5}, min_group=3) == {"a", "b"}
    assert disclosed({"a": 2}, min_group=3) == frozenset()
    assert [min_group_of(d) for d in ({}, {"min_group": 1}, {"min_group": 7}, {"min_group": "x"})] == [3, 3, 7, 3]


async def test_secondary_suppression_in_a_run(demo_db: Database, clock: FakeClock) -> None:
    runs = {"2026-11": {name: RUNS["2026-11"][name] for name in ("Finance", "Operations", "Sales & Marketing")}}
    await load_pulse(demo_db, now=clock(), runs=runs)
    results = await _results(demo_db, clock)
    shown = {g.name for g in results.partners if not g.hidden}
    assert shown == {"Finance"}, "Operations (4) hides with Sales (2), or Sales = overall - Finance - Operations"
    assert not results.overall.hidden


async def test_the_partners_satisfaction_for_health(demo_db: Database, clock: FakeClock) -> None:
    data = await load_pulse(demo_db, now=clock())
    async with demo_db.transaction() as store:
        pulse = await store.survey_results.satisfaction(now=clock())
    finance, operations = data.partners["Finance"], data.partners["Operations"]
    assert set(pulse) == {finance, operations}, "hidden groups give health nothing"
    assert (pulse[finance].current, pulse[finance].previous, pulse[finance].period) == (3.0, 4.0, "2026-11")
    assert (pulse[operations].current, pulse[operations].previous) == (4.5, 4.3)


async def test_a_follow_up_is_kept_once_per_run_and_partner(demo_db: Database, clock: FakeClock) -> None:
    data: PulseData = await load_pulse(demo_db, now=clock())
    run, finance = data.runs["2026-11"], data.partners["Finance"]
    async with demo_db.transaction() as store:
        brm = await store.people.by_email("alice@example.com")
        assert brm is not None and brm.id is not None
        first = SurveyFollowUp(run_id=run, partner_id=finance, by_person_id=brm.id, text="We heard you.",
                               created_at=clock())
        assert await store.survey_results.add_follow_up(first)
        assert not await store.survey_results.add_follow_up(first)
        kept = await store.survey_results.follow_up(run_id=run, partner_id=finance)
        assert kept is not None and kept.text == "We heard you."
        assert await store.survey_results.invited_people(run_id=run, partner_id=finance) == sorted(
            data.invited[("2026-11", "Finance")])
        found = await store.survey_results.closed_run_of_partner(partner_id=finance, now=clock())
        assert found is not None and found[1].id == run
    results = await _results(demo_db, clock)
    assert next(g for g in results.partners if g.name == "Finance").followed_up_at == clock()


async def test_lookups_of_what_is_not_there(demo_db: Database, clock: FakeClock) -> None:
    async with demo_db.transaction() as store:
        assert await store.survey_results.survey("nope") is None
        assert await store.survey_results.latest(now=clock()) is None
        assert await store.survey_results.satisfaction(now=clock()) == {}


async def test_a_named_survey_shows_who_wrote_each_free_answer(demo_db: Database, clock: FakeClock) -> None:
    await load_pulse(demo_db, now=clock(), definition={**DEFINITION, "anonymous": False})
    results = await _results(demo_db, clock)
    better = next(g for g in results.partners if g.name == "Finance").figure("better")
    assert better is not None and better.texts[0] == "Answer tickets sooner (Dana Whitfield)"
    assert not results.anonymous


async def test_anonymous_free_answers_carry_no_name(demo_db: Database, clock: FakeClock) -> None:
    """Even answers that (wrongly) kept a person show without a name when the run is anonymous."""
    await load_pulse(demo_db, now=clock(), definition={**DEFINITION, "anonymous": False})
    async with demo_db.transaction() as store:
        await store.rows(sa.update(SurveyRun).values(definition=DEFINITION))
    results = await _results(demo_db, clock)
    assert results.anonymous
    better = next(g for g in results.partners if g.name == "Finance").figure("better")
    assert better is not None and not any("(" in text for text in better.texts)


async def test_a_shorter_trend(demo_db: Database, clock: FakeClock) -> None:
    await load_pulse(demo_db, now=clock())
    async with demo_db.transaction() as store:
        survey = await store.survey_results.survey("partner-pulse")
        assert survey is not None and survey.id is not None
        latest = (await store.survey_results.runs(survey.id))[-1]
        results = await store.survey_results.results(survey, latest, now=clock(), depth=2)
    assert results.trend_periods == ("2026-10", "2026-11") and results.previous_period == "2026-10"
    finance = next(g for g in results.partners if g.name == "Finance").figure("satisfaction")
    assert finance is not None and finance.trend == (4.0, 3.0)
