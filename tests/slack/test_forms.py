"""The intake form as a Slack modal: from ``/brm request`` and from the message shortcut."""

from __future__ import annotations

import json
import time
from typing import Any

from storage.models import DemandRequest
from tests.helpers import rows_of
from tests.slack.conftest import DANA, SlackHarness, dm_of
from tests.slack.fake_slack import TEAM_ID, Call


def submission(view_call: Call, values: dict[str, str], *, user: str = DANA) -> dict[str, Any]:
    """The ``view_submission`` payload Slack sends for the opened modal filled with ``values``."""
    view = view_call.view
    state: dict[str, Any] = {}
    for block in view["blocks"]:
        if block["type"] != "input":
            continue
        element = block["element"]
        name, kind = block["block_id"], element["type"]
        given = values.get(name, "")
        if kind == "static_select":
            chosen = next((o for o in element["options"] if o["value"] == given), None)
            state[name] = {element["action_id"]: {"type": kind, "selected_option": chosen}}
        elif kind == "datepicker":
            state[name] = {element["action_id"]: {"type": kind, "selected_date": given or None}}
        else:
            state[name] = {element["action_id"]: {"type": kind, "value": given or None}}
    return {
        "type": "view_submission",
        "team": {"id": TEAM_ID, "domain": "fake"},
        "user": {"id": user, "username": "dana", "name": "dana", "team_id": TEAM_ID},
        "api_app_id": "A0FAKE",
        "token": "verification-token-unused",
        "trigger_id": f"trig.{time.monotonic_ns()}.submit",
        "view": {
            **view, "id": "V0VIEW", "team_id": TEAM_ID, "state": {"values": state}, "hash": "1700000000.abc",
            "previous_view_id": None, "root_view_id": "V0VIEW", "app_id": "A0FAKE", "bot_id": "B0BOT",
        },
        "response_urls": [],
        "is_enterprise_install": False,
        "enterprise": None,
    }


GOOD = {
    "title": "Invoice OCR for accounts payable",
    "outcome": "Invoices are booked without manual typing",
    "category": "project",
    "urgency": "high",
    "partner": "1",
}


async def test_brm_request_opens_the_modal_and_shows_field_errors_in_it(slack: SlackHarness) -> None:
    response = await slack.command("request Invoice OCR")
    assert response.status == 200
    (opened,) = await slack.fake.wait_for("views.open")
    assert opened.args["trigger_id"].endswith(".cmd")
    view = opened.view
    assert view["type"] == "modal" and view["callback_id"] == "intake:submit"
    title = next(b for b in view["blocks"] if b["block_id"] == "title")
    assert title["element"]["initial_value"] == "Invoice OCR"
    assert {b["block_id"] for b in view["blocks"]} >= {"title", "outcome", "category", "urgency", "partner"}

    refused = await slack.interact(submission(opened, {**GOOD, "outcome": "short"}))
    assert refused.status == 200
    answer = await refused.json()
    assert answer["response_action"] == "errors"
    assert "at least 10 characters" in answer["errors"]["outcome"]
    assert not slack.fake.called("chat.postMessage"), "nothing filed, nothing posted"

    accepted = await slack.interact(submission(opened, GOOD))
    assert accepted.status == 200
    assert (await accepted.text()) == "", "an empty ack closes the modal"
    (confirmation,) = await slack.fake.wait_for("chat.postMessage")
    assert confirmation.args["channel"] == dm_of(DANA)
    assert "Submitted as DR-13" in confirmation.text
    [request] = await rows_of(slack.db, DemandRequest, DemandRequest.id == 13)
    assert request.title == GOOD["title"] and request.partner_id == 1


async def test_the_message_shortcut_captures_a_message_with_its_permalink(slack: SlackHarness) -> None:
    text = "Quote tool times out on 600 lines\nSales can't quote big orders &amp; lose deals"
    payload = {
        "type": "message_action",
        "callback_id": "capture_demand_request",
        "trigger_id": f"trig.{time.monotonic_ns()}.shortcut",
        "response_url": slack.fake.response_url("shortcut"),
        "team": {"id": TEAM_ID, "domain": "fake"},
        "channel": {"id": "C0SALES", "name": "sales"},
        "user": {"id": DANA, "username": "dana", "name": "dana", "team_id": TEAM_ID},
        "message": {"type": "message", "user": "U0ELI", "ts": "1700000123.000400", "text": text,
                    "client_msg_id": "m-1", "team": TEAM_ID},
        "message_ts": "1700000123.000400",
        "token": "verification-token-unused",
        "action_ts": "1700000200.123",
        "is_enterprise_install": False,
        "enterprise": None,
    }
    response = await slack.interact(payload)
    assert response.status == 200
    (link,) = await slack.fake.wait_for("chat.getPermalink")
    assert link.args == {"channel": "C0SALES", "message_ts": "1700000123.000400"}
    (opened,) = await slack.fake.wait_for("views.open")
    fields = {b["block_id"]: b["element"] for b in opened.view["blocks"] if b["type"] == "input"}
    assert fields["title"]["initial_value"] == "Quote tool times out on 600 lines"
    assert "lose deals" in fields["description"]["initial_value"]
    assert "&amp;" not in fields["description"]["initial_value"]

    accepted = await slack.interact(submission(opened, {**GOOD, "title": "Quote tool times out on 600 lines"}))
    assert accepted.status == 200
    await slack.fake.wait_for("chat.postMessage")
    [request] = await rows_of(slack.db, DemandRequest, DemandRequest.id == 13)
    assert request.source_link == "https://fake.slack.com/archives/C0SALES/p1700000123000400"
    assert request.source_channel == "C0SALES"


async def test_a_likely_duplicate_is_pointed_out_in_the_modal_and_can_be_filed_anyway(slack: SlackHarness) -> None:
    await slack.command("request")
    (opened,) = await slack.fake.wait_for("views.open")
    duplicate = {**GOOD, "title": "Automate month-end accruals"}
    refused = await slack.interact(submission(opened, duplicate))
    answer = await refused.json()
    assert answer["response_action"] == "update", "the form must remember the warning was shown"
    assert "DR-1" in json.dumps(answer["view"])
    again = {**opened.args, "view": answer["view"]}
    accepted = await slack.interact(submission(Call("views.open", again), duplicate))
    assert accepted.status == 200 and (await accepted.text()) == ""
    (confirmation,) = await slack.fake.wait_for("chat.postMessage")
    assert "Submitted as DR-13" in confirmation.text
