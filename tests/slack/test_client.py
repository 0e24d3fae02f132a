"""The Web API client against the fake Slack: what goes over the wire, timeouts, odd answers.

Plain calls (JSON or query arguments) skip slack-sdk's generic request path; while debug
logging is on they take it, so the SDK's own request lines are logged. Both paths must put the
same request on the wire and give the same answers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from adapters.slack.client import web_client
from tests.slack.fake_slack import FakeSlack

TOKEN = "xoxb-3333-4444-clienttest"
CALLS: list[tuple[str, dict[str, Any]]] = [
    ("chat_postMessage", {"channel": "D0DANA", "text": "hi", "blocks": [{"type": "divider"}], "unfurl_links": False,
                          "thread_ts": None}),
    ("chat_update", {"channel": "D0DANA", "ts": "1.2", "text": "edited", "blocks": []}),
    ("users_info", {"user": "U0DANA", "include_locale": True}),
    ("conversations_open", {"users": "U0DANA"}),
    ("views_publish", {"user_id": "U0DANA", "view": {"type": "home", "blocks": []}}),
    ("auth_test", {}),
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    slack = FakeSlack(users={"U0DANA": {"name": "Dana Whitfield", "email": "dana@example.com"}})
    await slack.start()
    yield slack
    await slack.close()


@pytest.fixture
async def client(fake: FakeSlack) -> AsyncIterator[AsyncWebClient]:
    async with aiohttp.ClientSession() as http:
        yield web_client(TOKEN, api_url=fake.api_url, http=http)


@pytest.mark.parametrize(("method", "args"), CALLS, ids=[name for name, _ in CALLS])
async def test_a_call_goes_over_the_wire_as_the_sdk_sends_it(
    fake: FakeSlack, client: AsyncWebClient, caplog: pytest.LogCaptureFixture, method: str, args: dict[str, Any]
) -> None:
    fast = (await getattr(client, method)(**args)).data
    caplog.set_level(logging.DEBUG, logger="adapters.slack")
    sdk = (await getattr(client, method)(**args)).data
    assert "Sending a request" in caplog.text, "with debug logging on, the call took the SDK's own path"

    first, second = fake.calls[-2:]
    assert first.method == second.method
    assert (first.args, first.token, first.headers) == (second.args, second.token, second.headers)
    assert first.token == TOKEN
    assert first.headers["User-Agent"].startswith("Python/"), "slack-sdk's user agent is sent"
    assert _without_ts(fast) == _without_ts(sdk)


async def test_slack_refusing_a_call_raises_the_sdks_error_with_slacks_code(
    fake: FakeSlack, client: AsyncWebClient
) -> None:
    with pytest.raises(SlackApiError) as refused:
        await client.chat_postMessage(channel="C0GONE", text="hello?")
    assert refused.value.response["error"] == "channel_not_found"
    assert refused.value.response.status_code == 200


async def test_a_proxy_error_page_is_an_api_error_not_a_crash(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.fail_once("chat.postMessage", 502, "<html><body>Bad gateway</body></html>")
    with pytest.raises(SlackApiError) as failed:
        await client.chat_postMessage(channel="D0DANA", text="hello")
    assert failed.value.response.status_code == 502
    assert TOKEN not in str(failed.value)


async def test_a_call_that_hangs_gives_up_after_the_timeout(fake: FakeSlack) -> None:
    fake.stall_once("chat.postMessage", 5)
    async with aiohttp.ClientSession() as http:  # a session without a timeout of its own, as the bot's
        client = web_client(TOKEN, api_url=fake.api_url, http=http, timeout=0.5)
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            await client.chat_postMessage(channel="D0DANA", text="hello")
    assert time.monotonic() - started < 3, "the reply slot was given back, not held for minutes"


async def test_a_429_is_retried_after_the_time_slack_asks_for(fake: FakeSlack, client: AsyncWebClient) -> None:
    fake.rate_limit_once("chat.postMessage", retry_after=1)
    started = time.monotonic()
    posted = await client.chat_postMessage(channel="D0DANA", text="hello")
    assert posted["ok"] is True
    assert [c.status for c in fake.calls] == [429, 200]
    assert time.monotonic() - started >= 1, "it waited as long as Retry-After said"


def _without_ts(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if k != "ts"}
