""""Log as touchpoint": a message shortcut that turns any Slack message into a touchpoint."""

from __future__ import annotations

import json
import time
from typing import Any
from zoneinfo import ZoneInfo

from storage.models import Touchpoint
from tests.conftest import FakeClock
from tests.helpers import rows_of
from tests.slack.conftest import ALICE, DANA, SlackHarness, dm_of
from tests.slack.fake_slack import TEAM_ID
from tests.slack.test_forms import submission

TS = "1700000555.000700"


def shortcut(slack: SlackHarness, text: str, *, user: str = ALICE, channel: str = "C0FIN",
             channel_name: str = "finance-leads") -> dict[str, Any]:
    """The ``message_action`` payload Slack sends when ``user`` picks "Log as touchpoint" on a message."""
    return {
        "type": "message_action",
        "callback_id": "log_touchpoint",
        "trigger_id": f"trig.{time.monotonic_ns()}.shortcut",
        "response_url": slack.fake.response_url(f"touch{time.monotonic_ns()}"),
        "team": {"id": TEAM_ID, "domain": "fake"},
        "channel": {"id": channel, "name": channel_name},
        "user": {"id": user, "username": "alice", "name": "alice", "team_id": TEAM_ID},
        "message": {"type": "message", "user": "U0MARIA", "ts": TS, "text": text, "team": TEAM_ID},
        "message_ts": TS,
        "token": "verification-token-unused",
        "action_ts": "1700000600.123",
        "is_enterprise_install": False,
        "enterprise": None,
    }


def inputs(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {b["block_id"]: b["element"] for b in view["blocks"] if b["type"] == "input"}


async def test_a_brm_logs_a_message_as_a_touchpoint_with_its_link(slack: SlackHarness, clock: FakeClock) -> None:
    text = "Thanks for the call! Finance wants the ERP roadmap by Friday &amp; a budget view"
    response = await slack.interact(shortcut(slack, text))
    assert response.status == 200
    (link,) = await slack.fake.wait_for("chat.getPermalink")
    assert link.args == {"channel": "C0FIN", "message_ts": TS}
    (opened,) = await slack.fake.wait_for("views.open")
    view = opened.view
    assert view["callback_id"] == "touchpoint:submit"
    fields = inputs(view)
    assert fields["note"]["initial_value"] == text.replace("&amp;", "&"), "Slack's markup read out"
    assert fields["partner"]["initial_option"]["text"]["text"] == "Finance", "guessed from the message"
    assert [o["text"]["text"] for o in fields["partner"]["options"]] == ["Finance", "People & Culture"]
    assert fields["kind"]["initial_option"]["value"] == "meeting"
    assert fields["date"]["initial_date"] == clock.now.astimezone(ZoneInfo("Europe/Madrid")).date().isoformat()

    chosen = {"partner": "1", "kind": "call", "date": fields["date"]["initial_date"],
              "note": fields["note"]["initial_value"]}
    accepted = await slack.interact(submission(opened, chosen, user=ALICE))
    assert accepted.status == 200 and (await accepted.text()) == "", "one step: the modal closes"
    (confirmation,) = await slack.fake.wait_for("chat.postMessage")
    assert confirmation.args["channel"] == dm_of(ALICE)
    assert "Logged a call with Finance" in confirmation.text and "links to the message" in confirmation.text
    [touchpoint] = await rows_of(slack.db, Touchpoint, Touchpoint.link.is_not(None))  # type: ignore[union-attr]
    assert touchpoint.partner_id == 1 and touchpoint.brm_id == 1 and touchpoint.kind == "call"
    assert touchpoint.link == f"https://fake.slack.com/archives/C0FIN/p{TS.replace('.', '')}"
    assert touchpoint.note is not None and touchpoint.note.startswith("Thanks for the call!")


async def test_the_partner_is_guessed_from_the_channel_when_the_message_names_none(slack: SlackHarness) -> None:
    await slack.interact(shortcut(slack, "Good chat about onboarding laptops", channel="C0PC",
                                  channel_name="people-culture-it"))
    (opened,) = await slack.fake.wait_for("views.open")
    assert inputs(opened.view)["partner"]["initial_option"]["text"]["text"] == "People & Culture"


async def test_no_guess_leaves_the_partner_to_pick_and_a_missing_one_is_asked_for(slack: SlackHarness) -> None:
    await slack.interact(shortcut(slack, "See you next week", channel="C0RANDOM", channel_name="random"))
    (opened,) = await slack.fake.wait_for("views.open")
    assert "initial_option" not in inputs(opened.view)["partner"]
    refused = await slack.interact(submission(opened, {"kind": "meeting", "note": "See you next week"}, user=ALICE))
    answer = await refused.json()
    assert answer["response_action"] == "errors" and "partner" in answer["errors"]
    assert not await rows_of(slack.db, Touchpoint, Touchpoint.link.is_not(None))  # type: ignore[union-attr]


async def test_a_requester_is_told_kindly_that_it_is_for_brms(slack: SlackHarness) -> None:
    before = len(await rows_of(slack.db, Touchpoint))
    response = await slack.interact(shortcut(slack, "Finance roadmap", user=DANA))
    assert response.status == 200
    await slack.settle()
    answers = [c for c in slack.fake.calls if c.method.startswith("response:touch")]
    assert answers, f"no answer; the bot made: {[c.method for c in slack.fake.calls]}"
    assert "for BRMs" in json.dumps(answers[-1].args)
    assert not slack.fake.called("views.open")
    assert len(await rows_of(slack.db, Touchpoint)) == before


async def test_the_request_shortcut_still_captures_a_request(slack: SlackHarness) -> None:
    payload = {**shortcut(slack, "Quote tool times out\nSales lose deals", user=DANA), "callback_id":
               "capture_demand_request"}
    await slack.interact(payload)
    (opened,) = await slack.fake.wait_for("views.open")
    assert opened.view["callback_id"] == "intake:submit"
    assert inputs(opened.view)["title"]["initial_value"] == "Quote tool times out"
