"""The Slack Web API client, built once with the settings slack-sdk does not default well.

Four traps are closed here (seen with slack-sdk 3.47):

- the base URL is joined with ``urljoin``, so ``https://host/api`` without a trailing ``/``
  silently calls ``https://host/chat.postMessage``: the URL is normalised;
- without a session the client opens one per call: the bot's shared session is passed;
- only connection errors are retried by default, and the SDK's 429 handler gives up after a few
  tries, each call finding the limit out on its own: a 429 pauses that API method for the whole
  client (:class:`RateLimits`) until ``Retry-After`` has passed, and the call is sent again then,
  for up to :data:`RATE_LIMIT_PATIENCE_SECONDS`;
- the SDK (and bolt) decide whether to build their debug lines by ``logger.level <=
  DEBUG``, which an unset level always passes, so every call formatted its whole request
  body for a line nobody logs (a large share of the adapter's CPU under load): they get loggers
  whose level reads as the level logging is really at (:func:`sdk_logger`).

A fifth is the cost of the SDK's generic request path: every call joined the URL with
``urljoin``, rebuilt its headers and arguments, and wrapped the attempt in retry objects, a
large part of what posting one reply costs (bench/slack.py measures it). :class:`WebClient` sends
the plain calls (JSON or query arguments, which is every call the bot makes) itself: the same
request on the wire, the same :class:`AsyncSlackResponse` and :class:`SlackApiError`, the same
retry handlers consulted the same way, and a timeout of its own on every attempt (the SDK
applies its timeout only to sessions it opens itself). Anything else, and every call while
debug logging is on (the SDK's request and response lines), takes the SDK's own path.

Example::

    client = web_client("xoxb-…", api_url=None, http=session)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from json import dumps as json_dumps
from json import loads as json_loads
from typing import Any, cast

import aiohttp
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.async_handler import AsyncRetryHandler
from slack_sdk.http_retry.builtin_async_handlers import (
    AsyncConnectionErrorRetryHandler,
    AsyncRateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest as RetryRequest
from slack_sdk.http_retry.response import HttpResponse as RetryResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.web.async_client import AsyncWebClient
from slack_sdk.web.async_slack_response import AsyncSlackResponse
from slack_sdk.webhook.async_client import AsyncWebhookClient

from conversations.observe import NO_OBSERVER, Observer

SLACK_API_URL = "https://slack.com/api/"
RATE_LIMIT_RETRIES = 2  # response_url posts only; Web API calls wait as RateLimits says
RATE_LIMIT_PATIENCE_SECONDS = 900.0
DEFAULT_RETRY_AFTER_SECONDS = 1.0
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

    @property
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


class RateLimits:
    """Which Web API methods Slack has told this process to leave alone, and until when.

    Slack's limits are per method and per workspace app, so when one call of
    ``chat.postMessage`` is answered 429, every other call of it would be too: they all wait
    here for the same ``Retry-After`` instead of each finding out with a 429 of its own.
    ``clock`` is monotonic seconds (injected for tests).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.until: dict[str, float] = {}

    def pause(self, method: str, seconds: float) -> None:
        """Pause ``method`` for ``seconds`` from now (never shortening a pause already running)."""
        resume = self.clock() + max(0.0, seconds)
        if resume > self.until.get(method, 0.0):
            self.until[method] = resume

    def remaining(self, method: str) -> float:
        """Seconds ``method`` is still paused for (0 when it may be called)."""
        resume = self.until.get(method)
        if resume is None:
            return 0.0
        left = resume - self.clock()
        if left <= 0:
            del self.until[method]
            return 0.0
        return left

    async def wait(self, method: str) -> None:
        """Return once ``method`` may be called (a pause may be lengthened while waiting)."""
        left = self.remaining(method)
        while left > 0:
            await asyncio.sleep(left)
            left = self.remaining(method)


JSON_TYPE = "application/json;charset=utf-8"
FORM_TYPE = "application/x-www-form-urlencoded"
MAX_ATTEMPTS = 100  # a guard against a retry handler that never says no (as in the SDK)


class WebClient(AsyncWebClient):
    """``AsyncWebClient`` that sends plain calls itself (see the module's notes), else as the SDK does.

    Every call, either way, first waits out a pause of its method in :attr:`rate_limits`, and a
    429 pauses the method and sends the call again once the pause is over, for up to
    ``patience`` seconds in all; then the 429 is raised as :class:`SlackApiError`.
    """

    def __init__(
        self,
        *,
        log: logging.Logger,
        rate_limits: RateLimits | None = None,
        patience: float = RATE_LIMIT_PATIENCE_SECONDS,
        observer: Observer = NO_OBSERVER,
        **kwargs: Any,
    ) -> None:
        super().__init__(logger=log, **kwargs)
        self.log = log
        self.observer = observer
        self.rate_limits = rate_limits or RateLimits()
        self.patience = patience
        self.urls: dict[str, str] = {}

    async def api_call(
        self,
        api_method: str,
        *,
        http_verb: str = "POST",
        files: dict[str, Any] | None = None,
        data: Any = None,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        auth: Any = None,
    ) -> AsyncSlackResponse:
        method = api_method.lstrip("/")
        deadline = self.rate_limits.clock() + self.patience
        while True:
            await self.rate_limits.wait(method)
            try:
                return await self.one_call(
                    api_method, http_verb=http_verb, files=files, data=data, params=params, json=json,
                    headers=headers, auth=auth,
                )
            except SlackApiError as exc:
                if exc.response.status_code != 429:
                    raise
                wait = retry_after(exc.response.headers)
                self.rate_limits.pause(method, wait)
                self.log.warning("Slack: %s is rate limited; calls of it wait %.0f s", method, wait)
                if self.rate_limits.clock() + wait > deadline:
                    raise

    async def one_call(
        self,
        api_method: str,
        *,
        http_verb: str,
        files: dict[str, Any] | None,
        data: Any,
        params: dict[str, Any] | None,
        json: dict[str, Any] | None,
        headers: dict[str, Any] | None,
        auth: Any,
    ) -> AsyncSlackResponse:
        """One call: sent by this class when plain, else by the SDK (counted by method and result)."""
        method = api_method.lstrip("/")
        try:
            answer = await self.one_call_uncounted(
                api_method, http_verb=http_verb, files=files, data=data, params=params, json=json,
                headers=headers, auth=auth,
            )
        except SlackApiError as exc:
            status = exc.response.status_code
            code = exc.response.get("error") if isinstance(exc.response.data, dict) else None
            self.observer.api_call("slack", method=method, result="429" if status == 429 else str(code or status))
            raise
        except Exception as exc:
            self.observer.api_call("slack", method=method, result=type(exc).__name__)
            raise
        self.observer.api_call("slack", method=method, result="ok")
        return answer

    async def one_call_uncounted(
        self,
        api_method: str,
        *,
        http_verb: str,
        files: dict[str, Any] | None,
        data: Any,
        params: dict[str, Any] | None,
        json: dict[str, Any] | None,
        headers: dict[str, Any] | None,
        auth: Any,
    ) -> AsyncSlackResponse:
        if not self.plain(http_verb, files, data, json, headers, auth):
            return await super().api_call(
                api_method, http_verb=http_verb, files=files, data=data, params=params, json=json,
                headers=headers, auth=auth,
            )
        token = self.token
        if json is not None:
            json = {**self.default_params, **json}
            token = json.pop("token", token)
        if params is not None:
            params = {**self.default_params, **{k: _form_value(v) for k, v in params.items() if v is not None}}
            token = params.pop("token", token)
        sent = {**self.headers, "Content-Type": JSON_TYPE if json is not None else FORM_TYPE}
        if token:
            sent["Authorization"] = f"Bearer {token}"
        url = self.urls.get(api_method) or self.urls.setdefault(api_method, self.base_url + api_method.lstrip("/"))
        status, answer, answer_headers = await self.send_plain(http_verb, url, sent, params, json)
        response = AsyncSlackResponse(
            client=self, http_verb=http_verb, api_url=url, req_args={"headers": sent, "params": params, "json": json},
            data=answer, headers=answer_headers, status_code=status,
        )
        response.validate()  # type: ignore[no-untyped-call]  # slack_sdk leaves validate() unannotated
        return response

    def plain(self, verb: str, files: Any, data: Any, json: Any, headers: Any, auth: Any) -> bool:
        """A call this class sends itself: JSON or query arguments only, on the shared session."""
        return (
            files is None and data is None and auth is None and not headers
            and (json is None or verb == "POST")
            and self.session is not None and not self.session.closed and not self.proxy
            and not self.log.isEnabledFor(logging.DEBUG)
        )

    async def send_plain(
        self, verb: str, url: str, headers: dict[str, str], params: dict[str, Any] | None, body: dict[str, Any] | None
    ) -> tuple[int, dict[str, Any], Any]:
        """One call, attempted again whenever a retry handler asks (429, a dropped connection)."""
        assert self.session is not None
        payload = json_dumps(body).encode() if body is not None else None
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        tls = self.ssl if self.ssl is not None else True  # what aiohttp makes of None
        state = RetryState()
        for _ in range(MAX_ATTEMPTS):
            try:
                async with self.session.request(
                    verb, url, params=params, data=payload, headers=headers, ssl=tls, timeout=timeout
                ) as response:
                    answer = _json_object(await response.read())
                    if response.status == 200:
                        return response.status, answer, response.headers
                    failed = RetryResponse(status_code=response.status, headers=dict(response.headers), body=answer)
                    if not await self.retry(state, verb, url, headers, params, response=failed):
                        return response.status, answer, response.headers
            except Exception as exc:
                if not await self.retry(state, verb, url, headers, params, error=exc):
                    raise
        raise SlackClientError(f"gave up on {url} after {MAX_ATTEMPTS} attempts")

    async def retry(
        self,
        state: RetryState,
        verb: str,
        url: str,
        headers: dict[str, str],
        params: dict[str, Any] | None,
        *,
        response: RetryResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        """Ask the retry handlers in turn, as the SDK does; True once one has waited for another attempt."""
        state.next_attempt_requested = False
        request = RetryRequest(
            method=verb, url=url, headers=cast("dict[str, str | list[str]]", headers), body_params=params
        )
        for handler in self.retry_handlers:
            if await handler.can_retry_async(state=state, request=request, response=response, error=error):
                await handler.prepare_for_next_attempt_async(
                    state=state, request=request, response=response, error=error
                )
                return state.next_attempt_requested
        return False


def retry_after(headers: Any) -> float:
    """Seconds from a ``Retry-After`` header (one second when it is missing or not a number)."""
    for name, value in (headers or {}).items():
        if name.lower() == "retry-after":
            try:
                return max(0.0, float(value[0] if isinstance(value, list) else value))
            except (TypeError, ValueError, IndexError):
                break
    return DEFAULT_RETRY_AFTER_SECONDS


def _form_value(value: Any) -> Any:
    """Query arguments as the SDK sends them: booleans as 1 and 0."""
    return ("1" if value else "0") if isinstance(value, bool) else value


def _json_object(raw: bytes) -> dict[str, Any]:
    """A response body as Slack's JSON object; anything else (a proxy's HTML page) as empty,
    which :meth:`AsyncSlackResponse.validate` turns into a :class:`SlackApiError`."""
    try:
        answer = json_loads(raw) if raw else {}
    except ValueError:
        return {}
    return answer if isinstance(answer, dict) else {}


def web_client(
    token: str | None,
    *,
    api_url: str | None,
    http: aiohttp.ClientSession,
    timeout: float = TIMEOUT_SECONDS,
    rate_limits: RateLimits | None = None,
    patience: float = RATE_LIMIT_PATIENCE_SECONDS,
    observer: Observer = NO_OBSERVER,
) -> WebClient:
    """The Web API client every call of the adapter goes through (``timeout``: seconds an attempt may take;
    ``patience``: seconds a call waits out rate limits before the 429 is raised).

    Connection errors are retried once by the SDK's handler; 429 answers by :class:`WebClient`.
    """
    return WebClient(
        token=token,
        base_url=api_base_url(api_url),
        session=http,
        timeout=timeout,
        retry_handlers=[AsyncConnectionErrorRetryHandler()],
        log=sdk_logger("adapters.slack.web_api"),
        rate_limits=rate_limits,
        patience=patience,
        observer=observer,
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
