""""Log as touchpoint": a message action that turns any Teams message into a touchpoint."""

from __future__ import annotations

from typing import Any

from storage.db import Database
from storage.models import Touchpoint
from tests.helpers import rows_of
from tests.teams.conftest import ALICE, DANA, TeamsHarness
from tests.teams.test_conversations import _actions

COMMAND = "log_touchpoint"


def _inputs(card: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in card["body"] if e["type"].startswith("Input.")}


async def _linked(db: Database) -> list[Touchpoint]:
    return await rows_of(db, Touchpoint, Touchpoint.link.is_not(None))  # type: ignore[union-attr]


async def test_a_brm_logs_a_message_as_a_touchpoint_with_its_link(teams: TeamsHarness, demo_db: Database) -> None:
    html = "<p>Notes from today: <b>Finance</b> wants the ERP roadmap&nbsp;by Friday.</p>"
    fetched = await teams.invoke(teams.fetch_task(ALICE, html, command=COMMAND, message_id="1700000004242"))
    task = fetched["task"]
    assert task["type"] == "continue" and task["value"]["title"] == "Log as touchpoint"
    card = task["value"]["card"]["content"]
    inputs = _inputs(card)
    assert inputs["note"]["value"] == "Notes from today: Finance wants the ERP roadmap by Friday."
    assert inputs["partner"]["value"] == "1", "Finance, named in the message"
    assert [c["title"] for c in inputs["partner"]["choices"]] == ["Finance", "People & Culture"]
    assert inputs["kind"]["value"] == "meeting" and inputs["date"]["value"]
    [submit] = _actions(card)
    link = submit["data"]["brm"]["context"]["link"]
    assert link.startswith("https://teams.microsoft.com/l/message/") and "1700000004242" in link

    values = {k: e.get("value", "") for k, e in inputs.items()}
    done = await teams.invoke(teams.submit_action(ALICE, {**submit["data"], **values, "kind": "review"},
                                                  command=COMMAND))
    assert done["task"]["type"] == "continue"
    assert "Logged a review with Finance" in str(done["task"]["value"]["card"]["content"])
    [touchpoint] = await _linked(demo_db)
    assert (touchpoint.partner_id, touchpoint.brm_id, touchpoint.kind) == (1, 1, "review")
    assert touchpoint.link == link and touchpoint.note == inputs["note"]["value"]


async def test_the_partner_is_guessed_from_the_channel_name(teams: TeamsHarness) -> None:
    fetched = await teams.invoke(teams.fetch_task(ALICE, "<p>Laptops for new starters</p>", command=COMMAND,
                                                  channel_name="People & Culture – IT"))
    assert _inputs(fetched["task"]["value"]["card"]["content"])["partner"]["value"] == "4"


async def test_a_requester_is_told_kindly_that_it_is_for_brms(teams: TeamsHarness, demo_db: Database) -> None:
    fetched = await teams.invoke(teams.fetch_task(DANA, "<p>Finance roadmap</p>", command=COMMAND))
    content = str(fetched["task"]["value"].get("card", fetched["task"]["value"]))
    assert "for BRMs" in content and "Input." not in content
    assert not await _linked(demo_db)


async def test_an_unknown_action_is_refused(teams: TeamsHarness) -> None:
    fetched = await teams.invoke(teams.fetch_task(ALICE, "<p>x</p>", command="somethingElse"))
    assert fetched["task"] == {"type": "message", "value": "I don't know that command."}
