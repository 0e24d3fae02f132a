"""``/brm status|mine|help``, App Home, and @mentions continuing in a thread."""

from __future__ import annotations

import time

from tests.slack.conftest import ALICE, DANA, SlackHarness, dm_of
from tests.slack.fake_slack import BOT_USER_ID, TEAM_ID, Call


async def test_brm_status_answers_only_the_person_who_asked(slack: SlackHarness) -> None:
    response = await slack.command("status DR-1")
    assert response.status == 200
    await slack.settle()
    (answer,) = [c for c in slack.fake.calls if c.method.startswith("response:")]
    assert answer.args["response_type"] == "ephemeral"
    assert "DR-1" in answer.text and "Automate month-end accruals" in answer.text
    assert not slack.fake.called("chat.postMessage"), "nothing is posted into the channel"


async def test_brm_mine_and_help(slack: SlackHarness) -> None:
    await slack.command("mine")
    await slack.settle()
    await slack.command("help")
    await slack.settle()
    mine, help_ = [c for c in slack.fake.calls if c.method.startswith("response:")]
    assert "Your requests" in mine.text and "Expense report approvals on mobile" in mine.text
    assert "/brm request" in help_.text and "Capture as demand request" in help_.text


async def test_app_home_shows_a_requester_their_requests_and_a_brm_their_partners_demand(slack: SlackHarness) -> None:
    def opened(user: str) -> dict[str, object]:
        return {"type": "app_home_opened", "user": user, "channel": dm_of(user), "tab": "home",
                "event_ts": f"{time.time():.6f}"}

    response, _ = await slack.event(opened(DANA))
    assert response.status == 200
    (dana_home,) = await slack.fake.wait_for("views.publish")
    assert dana_home.args["user_id"] == DANA
    assert dana_home.view["type"] == "home"
    assert "Your requests" in dana_home.text and "Automate month-end accruals" in dana_home.text
    assert "Open demand" not in dana_home.text

    await slack.event(opened(ALICE))
    alice_home = (await slack.fake.wait_for("views.publish", 2))[-1]
    assert alice_home.args["user_id"] == ALICE
    assert "Open demand of your business partners" in alice_home.text
    assert "Expense report approvals on mobile" in alice_home.text


async def test_a_button_on_app_home_starts_the_flow_in_the_direct_message(slack: SlackHarness) -> None:
    await slack.event({"type": "app_home_opened", "user": DANA, "channel": dm_of(DANA), "tab": "home"})
    (home,) = await slack.fake.wait_for("views.publish")
    button = next(
        (block, e) for block in home.view["blocks"] if block["type"] == "actions" for e in block["elements"]
        if e["text"]["text"] == "New request"
    )
    payload = {
        "type": "block_actions", "user": {"id": DANA, "team_id": TEAM_ID}, "team": {"id": TEAM_ID},
        "api_app_id": "A0FAKE", "token": "unused", "trigger_id": "trig.home.1",
        "container": {"type": "view", "view_id": "V0VIEW"},
        "view": {"id": "V0VIEW", "type": "home", "blocks": home.view["blocks"], "team_id": TEAM_ID},
        "actions": [{"action_id": button[1]["action_id"], "block_id": button[0]["block_id"],
                     "text": button[1]["text"], "value": button[1]["value"], "type": "button",
                     "action_ts": "1700000000.1"}],
    }
    assert (await slack.interact(payload)).status == 200
    (asked,) = await slack.fake.wait_for("chat.postMessage")
    assert asked.args["channel"] == dm_of(DANA)
    assert "What do you need?" in asked.text
    assert not slack.fake.called("chat.update"), "the Home menu stays as it is"


async def test_a_mention_in_a_channel_continues_in_its_thread(slack: SlackHarness) -> None:
    first = {"type": "app_mention", "user": DANA, "text": f"<@{BOT_USER_ID}> new request", "ts": "1700000300.000100",
             "team": TEAM_ID, "channel": "C0GENERAL"}
    await slack.event(first)
    (asked,) = await slack.fake.wait_for("chat.postMessage")
    assert asked.args["channel"] == "C0GENERAL" and asked.args["thread_ts"] == "1700000300.000100"
    assert "What do you need?" in asked.text

    reply = {"type": "app_mention", "user": DANA, "text": f"<@{BOT_USER_ID}> Invoice OCR for accounts payable",
             "ts": "1700000310.000100", "thread_ts": "1700000300.000100", "team": TEAM_ID, "channel": "C0GENERAL"}
    await slack.event(reply)
    described = (await slack.fake.wait_for("chat.postMessage", 2))[-1]
    assert described.args["thread_ts"] == "1700000300.000100"
    assert "Describe it" in described.text, "the thread's conversation went on to the next question"


def ephemeral(slack: SlackHarness) -> list[Call]:
    return [c for c in slack.fake.calls if c.method.startswith("response:")]


async def test_an_unknown_brm_word_gets_the_commands_and_no_dead_end_buttons(slack: SlackHarness) -> None:
    assert (await slack.command("frobnicate now")).status == 200
    await slack.settle()
    (answer,) = ephemeral(slack)
    assert answer.args["response_type"] == "ephemeral"
    assert "I don't know “/brm frobnicate”" in answer.text
    assert "/brm request" in answer.text and "/brm status DR-42" in answer.text
    assert not [b for b in answer.blocks if b["type"] == "actions"], "no menu that leads to typed questions"
    assert not slack.fake.called("chat.postMessage")


async def test_each_brm_starts_afresh_and_never_eats_the_next_command(slack: SlackHarness) -> None:
    await slack.command("status")  # asks "Which request?" and leaves the question open
    await slack.settle()
    await slack.command("mine")
    await slack.settle()
    asked, mine = ephemeral(slack)
    assert "Which request?" in asked.text
    assert "Your requests" in mine.text and "not a request key" not in mine.text


async def test_a_brm_status_question_is_answered_with_its_buttons(slack: SlackHarness) -> None:
    await slack.command("status")
    await slack.settle()
    (asked,) = ephemeral(slack)
    block, button = next(
        (b, e) for b in asked.blocks if b["type"] == "actions" for e in b["elements"]
        if e["text"]["text"].startswith("DR-1")
    )
    payload = {
        "type": "block_actions", "user": {"id": DANA, "team_id": TEAM_ID}, "team": {"id": TEAM_ID},
        "api_app_id": "A0FAKE", "token": "unused", "trigger_id": "trig.eph.1",
        "container": {"type": "message", "message_ts": "1700000400.000100", "channel_id": "C0GENERAL",
                      "is_ephemeral": True},
        "channel": {"id": "C0GENERAL", "name": "general"},
        "response_url": slack.fake.response_url("eph1"),
        "actions": [{"action_id": button["action_id"], "block_id": block["block_id"], "text": button["text"],
                     "value": button["value"], "type": "button", "action_ts": "1700000401.1"}],
    }
    assert (await slack.interact(payload)).status == 200
    await slack.settle()
    replaced, shown = [c for c in ephemeral(slack) if c.method == "response:eph1"]
    assert replaced.args["replace_original"] is True and "✓ DR-1" in replaced.text
    assert "Automate month-end accruals" in shown.text and shown.args["response_type"] == "ephemeral"
    assert not slack.fake.called("chat.postMessage") and not slack.fake.called("chat.update")


async def test_a_brm_typed_in_the_bots_dm_leaves_the_chat_there_as_it_was(slack: SlackHarness) -> None:
    await slack.dm("new request")
    await slack.fake.wait_for("chat.postMessage")
    await slack.command("mine", channel=dm_of(DANA))
    await slack.settle()
    (mine,) = ephemeral(slack)
    assert "Your requests" in mine.text
    await slack.dm("Invoice OCR for accounts payable")
    described = (await slack.fake.wait_for("chat.postMessage", 2))[-1]
    assert "Describe it" in described.text, "the intake in the DM went on where it was"
