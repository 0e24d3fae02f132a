"""What Slack can repeat, forge or refuse: retries, signatures, bad bodies, rate limits, secrets."""

from __future__ import annotations

import json
import logging
import time

import pytest

from tests.slack.conftest import BOT_TOKEN, DANA, SIGNING_SECRET, SlackHarness, dm_of


async def test_a_retried_event_is_answered_but_never_run_twice(slack: SlackHarness) -> None:
    event_id = await slack.dm("new request")
    await slack.fake.wait_for("chat.postMessage")
    await slack.dm("new request", event_id=event_id, retry=1)
    await slack.dm("new request", event_id=event_id, retry=2)
    await slack.settle()
    assert len(slack.fake.called("chat.postMessage")) == 1


async def test_a_retried_app_home_event_publishes_once(slack: SlackHarness) -> None:
    event = {"type": "app_home_opened", "user": DANA, "channel": dm_of(DANA), "tab": "home"}
    _, event_id = await slack.event(event)
    await slack.fake.wait_for("views.publish")
    response, _ = await slack.event(event, event_id=event_id, retry=1)
    assert response.status == 200
    await slack.settle()
    assert len(slack.fake.called("views.publish")) == 1


async def test_a_forged_signature_is_refused(slack: SlackHarness) -> None:
    body = json.dumps(slack.envelope({"type": "message", "channel_type": "im", "user": DANA, "channel": "D0DANA",
                                      "text": "new request", "ts": "1.0"}))
    response = await slack.post(body, "application/json", secret="not-the-signing-secret")
    assert response.status == 401
    await slack.settle()
    assert not slack.fake.called("chat.postMessage")


async def test_a_replayed_request_older_than_five_minutes_is_refused(slack: SlackHarness) -> None:
    body = json.dumps(slack.envelope({"type": "message", "channel_type": "im", "user": DANA, "channel": "D0DANA",
                                      "text": "new request", "ts": "1.0"}))
    response = await slack.post(body, "application/json", timestamp=int(time.time()) - 6 * 60)
    assert response.status == 401
    await slack.settle()
    assert not slack.fake.called("chat.postMessage")


@pytest.mark.parametrize(
    "body",
    [
        '{"type": "event_callback", "event": {"text": "confidential-roadmap',
        "payload=%7Bconfidential-roadmap",
        '["confidential-roadmap"]',
        '{"type": "event_callback", "event_id": "Ev1", "event": "confidential-roadmap"}',
    ],
)
async def test_a_malformed_body_gets_400_and_is_not_logged(
    slack: SlackHarness, body: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    kind = "application/json" if body.startswith(("{", "[")) else "application/x-www-form-urlencoded"
    response = await slack.post(body, kind)
    assert response.status == 400
    assert "malformed" in caplog.text
    assert "confidential-roadmap" not in caplog.text
    forged = await slack.post(body, kind, secret="wrong")
    assert forged.status == 401, "an unsigned body learns nothing about what we parse"


async def test_events_the_bot_does_not_use_still_get_200(slack: SlackHarness) -> None:
    reaction = {"type": "reaction_added", "user": DANA, "reaction": "thumbsup",
                "item": {"type": "message", "channel": "C0GENERAL", "ts": "1.0"}, "event_ts": "2.0"}
    edited = {"type": "message", "subtype": "message_changed", "channel": dm_of(DANA), "channel_type": "im",
              "hidden": True, "ts": "3.0", "message": {"text": "new request", "user": DANA}}
    for event in (reaction, edited):
        response, _ = await slack.event(event)
        assert response.status == 200
    await slack.settle()
    assert not slack.fake.called("chat.postMessage")


async def test_a_429_from_slack_is_retried_after_retry_after(slack: SlackHarness) -> None:
    slack.fake.rate_limit_once("chat.postMessage", retry_after=1)
    await slack.dm("hello")
    (posted,) = await slack.fake.wait_for("chat.postMessage")
    attempts = [c for c in slack.fake.calls if c.method == "chat.postMessage"]
    assert [c.status for c in attempts] == [429, 200], "the reply was sent again, not lost"
    assert "What would you like to do?" in posted.text


async def test_tokens_and_the_signing_secret_never_reach_the_logs(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    slack.fake.fail_once("chat.postMessage", 500, {"ok": False, "error": "internal_error"})
    await slack.dm("hello")
    await slack.settle()
    await slack.command("status DR-1")
    await slack.settle()
    await slack.post("{broken", "application/json")
    await slack.post("{}", "application/json", secret="wrong")
    assert caplog.records, "the run did log"
    assert "Sending a request - url: POST" in caplog.text, "slack-sdk's own debug lines were on"
    assert BOT_TOKEN not in caplog.text
    assert SIGNING_SECRET not in caplog.text


async def test_slack_sdk_debug_lines_follow_the_log_level(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    await slack.dm("hello")
    await slack.settle()
    assert not [r for r in caplog.records if r.levelno < logging.INFO], "no debug line at INFO"
    caplog.set_level(logging.DEBUG)
    await slack.dm("help")
    await slack.settle()
    assert any(r.name == "adapters.slack.web_api" and r.levelno == logging.DEBUG for r in caplog.records)


async def test_a_429_on_views_open_is_retried_and_the_modal_opens(slack: SlackHarness) -> None:
    slack.fake.rate_limit_once("views.open", retry_after=1)
    await slack.command("request")
    (opened,) = await slack.fake.wait_for("views.open")
    assert [c.status for c in slack.fake.calls if c.method == "views.open"] == [429, 200]
    assert opened.view["callback_id"] == "intake:submit"


async def test_a_modal_slack_refuses_to_open_gets_an_apology_and_no_secret_in_the_logs(
    slack: SlackHarness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    slack.fake.fail_once("views.open", 200, {"ok": False, "error": "expired_trigger_id"})
    await slack.command("request")
    await slack.settle()
    (sorry,) = [c for c in slack.fake.calls if c.method.startswith("response:")]
    assert sorry.args["response_type"] == "ephemeral" and "try again" in sorry.text
    assert "views.open" in caplog.text or "/brm" in caplog.text
    assert BOT_TOKEN not in caplog.text and SIGNING_SECRET not in caplog.text


async def test_a_button_this_version_does_not_know_gets_200_and_does_nothing(slack: SlackHarness) -> None:
    payload = {
        "type": "block_actions", "user": {"id": DANA, "team_id": "T0FAKE"}, "team": {"id": "T0FAKE"},
        "api_app_id": "A0FAKE", "token": "unused", "trigger_id": "trig.old.1",
        "container": {"type": "message", "message_ts": "1690000000.000100", "channel_id": dm_of(DANA),
                      "is_ephemeral": False},
        "channel": {"id": dm_of(DANA), "name": "directmessage"},
        "message": {"type": "message", "ts": "1690000000.000100", "text": "old", "blocks": []},
        "actions": [{"action_id": "approve_request", "block_id": "old", "value": "7", "type": "button",
                     "text": {"type": "plain_text", "text": "Approve"}, "action_ts": "1700000000.1"}],
    }
    response = await slack.interact(payload)
    assert response.status == 200, "Slack shows the person a warning for anything else"
    await slack.settle()
    assert not slack.fake.called("chat.postMessage") and not slack.fake.called("chat.update")


async def test_a_reply_slack_refuses_becomes_an_apology_not_silence(slack: SlackHarness) -> None:
    slack.fake.fail_once("chat.postMessage", 500, {"ok": False, "error": "internal_error"})
    await slack.dm("hello")
    await slack.settle()
    attempts = [c for c in slack.fake.calls if c.method == "chat.postMessage"]
    assert [c.status for c in attempts] == [500, 200]
    assert "Sorry, something went wrong" in attempts[1].text
    assert attempts[1].args["channel"] == dm_of(DANA)


async def test_shutting_down_finishes_the_replies_already_acknowledged(slack: SlackHarness) -> None:
    slack.fake.stall_once("chat.postMessage", 0.5)
    for text in ("hello", "help", "my requests"):
        await slack.dm(text, user=DANA)
    await slack.adapter.close()
    replies = slack.fake.called("chat.postMessage")
    assert len(replies) == 3, "every acknowledged message was answered before the adapter closed"


async def test_once_closing_new_events_get_503_so_slack_sends_them_again_later(slack: SlackHarness) -> None:
    await slack.adapter.close()
    response, _ = await slack.event({"type": "message", "channel_type": "im", "channel": dm_of(DANA), "user": DANA,
                                     "text": "hello", "ts": "5.0"})
    assert response.status == 503
    await slack.settle()
    assert not slack.fake.called("chat.postMessage"), "nothing was acknowledged and then dropped"
