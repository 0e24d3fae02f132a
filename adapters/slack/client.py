"""The Slack Web API client, built once with the settings slack-sdk does not default well.

Four traps are closed here (seen with slack-sdk 3.47):

- the base URL is joined with ``urljoin``, so ``https://host/api`` without a trailing ``/``
  silently calls ``https://host/chat.postMessage``: the URL is normalised;
- without a session the client opens one per call: the bot's shared session is passed;
- only connection errors are retried by default: HTTP 429 is retried after ``Retry-After``;
- the SDK (and bolt) decide whether to build their debug lines by ``logger.level <=
  DEBUG``, which an unset level always passes, so every call formatted its whole request
  body for a line nobody logs (a seventh of the adapter's CPU under load): they get loggers
  whose level reads as the level logging is really at (:func:`sdk_logger`).

Example::

    client = web_client("xoxb-…", api_url=None, http=session)
"""

from __future__ import annotations

import logging

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


class _LiveLevelLogger(logging.Logger):
    """A logger whose ``level`` reads as the level in effect now (its own, else its parents').

    slack-sdk and bolt test ``logger.level <= DEBUG`` before building a debug line; on a
    normal logger an unset level is 0 and always passes.
    """

    _own = logging.NOTSET

    @property  # type: ignore[override]
    def level(self) -> int:
        if self._own:
            return self._own
        return self.parent.getEffectiveLevel() if self.parent is not None else logging.WARNING

    @level.setter
    def level(self, value: int) -> None:
        self._own = value

    def isEnabledFor(self, level: int) -> bool:
        # No cache: this logger is not in logging's registry, which clears the caches on a level change.
        return not self.disabled and level >= self.getEffectiveLevel()


_sdk_loggers: dict[str, logging.Logger] = {}


def sdk_logger(name: str) -> logging.Logger:
    """The logger to hand slack-sdk or bolt: child of ``adapters.slack``, debug lines built only when on."""
    logger = _sdk_loggers.get(name)
    if logger is None:
        logger = _sdk_loggers[name] = _LiveLevelLogger(name)
        logger.parent = logging.getLogger(name.rpartition(".")[0] or "adapters.slack")
    return logger


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
        logger=sdk_logger("adapters.slack.web_api"),
    )


def webhook_client(url: str, *, http: aiohttp.ClientSession) -> AsyncWebhookClient:
    """A client for one ``response_url`` (answers to slash commands and ephemeral buttons)."""
    return AsyncWebhookClient(
        url=url,
        session=http,
        timeout=TIMEOUT_SECONDS,
        retry_handlers=retry_handlers(),
        logger=sdk_logger("adapters.slack.web_api"),
    )
