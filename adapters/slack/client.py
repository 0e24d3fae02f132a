"""The Slack Web API client, built once with the settings slack-sdk does not default well.

Three traps are closed here (seen with slack-sdk 3.47):

- the base URL is joined with ``urljoin``, so ``https://host/api`` without a trailing ``/``
  silently calls ``https://host/chat.postMessage``: the URL is normalised;
- without a session the client opens one per call: the bot's shared session is passed;
- only connection errors are retried by default: HTTP 429 is retried after ``Retry-After``.

Example::

    client = web_client("xoxb-…", api_url=None, http=session)
"""

from __future__ import annotations

import aiohttp
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.webhook.async_client import AsyncWebhookClient

SLACK_API_URL = "https://slack.com/api/"
RATE_LIMIT_RETRIES = 2
TIMEOUT_SECONDS = 10


def api_base_url(url: str | None) -> str:
    """``SLACK_API_URL`` ending in exactly one ``/`` (Slack's own API when unset)."""
    base = (url or "").strip() or SLACK_API_URL
    return base.rstrip("/") + "/"


def retry_handlers() -> list[AsyncRetryHandler]:
    """Connection errors once, and 429 answers after the ``Retry-After`` Slack asked for."""
    return [AsyncConnectionErrorRetryHandler(), AsyncRateLimitErrorRetryHandler(max_retry_count=RATE_LIMIT_RETRIES)]


def web_client(token: str | None, *, api_url: str | None, http: aiohttp.ClientSession) -> AsyncWebClient:
    """The Web API client every call of the adapter goes through."""
    return AsyncWebClient(
        token=token,
        base_url=api_base_url(api_url),
        session=http,
        timeout=TIMEOUT_SECONDS,
        retry_handlers=retry_handlers(),
    )


def webhook_client(url: str, *, http: aiohttp.ClientSession) -> AsyncWebhookClient:
    """A client for one ``response_url`` (answers to slash commands and ephemeral buttons)."""
    return AsyncWebhookClient(url=url, session=http, timeout=TIMEOUT_SECONDS, retry_handlers=retry_handlers())
