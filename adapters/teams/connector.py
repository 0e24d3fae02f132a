"""Outbound plumbing for the Bot Connector: shared clients, the loopback guard, retries.

botbuilder 4.17 builds a new msrest ``ConnectorClient`` (and a token client, and fresh
credentials with an empty token cache) for every turn. Building one costs milliseconds of CPU,
and fresh credentials mean a token request per turn. :class:`SharedClientsAuthentication`
wraps the SDK's authentication and hands out one client per (app id, service URL, audience)
for the life of the adapter, with msrest's own retries switched off: :func:`with_retries`
retries every call the same way (msrest retried 429 on GET/PUT/DELETE by sleeping in a
thread, and not at all on POST).

In local mode (no app id) the factory refuses any service URL that is not on a loopback
address, so the open endpoint cannot make the bot send requests elsewhere.
"""

from __future__ import annotations

import asyncio
import io
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import aiohttp
import requests
from botbuilder.schema import Activity, CallerIdConstants
from botframework.connector.aio import ConnectorClient
from botframework.connector.auth import (
    AppCredentials,
    AuthenticateRequestResult,
    AuthenticationConstants,
    BotFrameworkAuthentication,
    ClaimsIdentity,
    ConnectorFactory,
    UserTokenClient,
)
from botframework.connector.skills import BotFrameworkClient
from msrest.exceptions import ClientRequestError
from msrest.pipeline import Request, Response
from msrest.pipeline.async_abc import AsyncHTTPPolicy, AsyncHTTPSender, AsyncPipeline
from msrest.pipeline.universal import RawDeserializer
from msrest.universal_http import ClientRequest
from msrest.universal_http.async_requests import AsyncRequestsClientResponse
from requests.structures import CaseInsensitiveDict

from adapters.teams.auth import TokenValidator
from adapters.teams.inbound import is_local_service_url
from conversations.observe import NO_OBSERVER, Observer

log = logging.getLogger(__name__)

T = TypeVar("T")
RETRY_STATUSES = frozenset({412, 429, 502, 503, 504})
MAX_CLIENTS = 64
# One connector call may take this long. A turn starts no call after its deadline (8 s), so it
# ends within about 13 s, inside Teams' 15 s.
CALL_SECONDS = 5
CALL_TIMEOUT = aiohttp.ClientTimeout(total=CALL_SECONDS, connect=3)


class ServiceUrlRefused(PermissionError):
    """Local mode was asked to talk to a service URL that is not on this machine."""


def _app_id(claims_identity: ClaimsIdentity) -> str:
    claims = claims_identity.claims or {}
    return str(
        claims.get(AuthenticationConstants.AUDIENCE_CLAIM) or claims.get(AuthenticationConstants.APP_ID_CLAIM) or ""
    )


class SharedClientsAuthentication(BotFrameworkAuthentication):  # type: ignore[misc]  # botframework ships no type hints
    """The SDK's authentication, with connector and token clients reused across turns.

    Example::

        auth = SharedClientsAuthentication(ConfigurationBotFrameworkAuthentication(cfg), loopback_only=False)
        adapter = CloudAdapter(auth)
    """

    def __init__(
        self,
        inner: BotFrameworkAuthentication,
        *,
        loopback_only: bool,
        http: aiohttp.ClientSession | None = None,
        validator: TokenValidator | None = None,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        self._inner = inner
        self._observer = observer
        self._validator = validator
        self._loopback_only = loopback_only
        self._http = http
        self._clients: OrderedDict[tuple[str, str, str], ConnectorClient] = OrderedDict()
        self._token_clients: dict[str, UserTokenClient] = {}

    async def authenticate_request(self, activity: Activity, auth_header: str) -> AuthenticateRequestResult:
        """Our own token check (:class:`TokenValidator`) with an app id; none in local mode.

        botbuilder's check blocks the event loop on Microsoft's metadata and answers 500 to a
        malformed token; ours never waits and raises ``PermissionError`` (401) instead.
        """
        if self._validator is None:
            # Local mode: authentication is off, whatever header a local client sends.
            result = await self._inner.authenticate_request(activity, "")
        else:
            claims = self._validator.validate(
                auth_header, service_url=activity.service_url, channel_id=activity.channel_id
            )
            identity = ClaimsIdentity(claims, True, "Bearer")
            result = AuthenticateRequestResult()
            result.claims_identity = identity
            result.audience = self._inner.get_originating_audience()
            result.caller_id = CallerIdConstants.public_azure_channel
            result.connector_factory = self._inner.create_connector_factory(identity)
        if result.connector_factory is not None:
            result.connector_factory = _SharedFactory(self, result.connector_factory, _app_id(result.claims_identity))
        return result

    async def authenticate_streaming_request(
        self, auth_header: str, channel_id_header: str
    ) -> AuthenticateRequestResult:
        return await self._inner.authenticate_streaming_request(auth_header, channel_id_header)

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        inner = self._inner.create_connector_factory(claims_identity)
        return _SharedFactory(self, inner, _app_id(claims_identity))

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> UserTokenClient:
        app_id = _app_id(claims_identity)
        client = self._token_clients.get(app_id)
        if client is None:
            client = await self._inner.create_user_token_client(claims_identity)
            self._token_clients[app_id] = client
        return client

    def create_bot_framework_client(self) -> BotFrameworkClient:
        return self._inner.create_bot_framework_client()

    def get_originating_audience(self) -> str:
        return cast(str, self._inner.get_originating_audience())

    async def authenticate_channel_request(self, auth_header: str) -> ClaimsIdentity:
        return await self._inner.authenticate_channel_request(auth_header)

    async def client(
        self, inner: ConnectorFactory, *, app_id: str, service_url: str, audience: str | None
    ) -> ConnectorClient:
        if self._loopback_only and not is_local_service_url(service_url):
            raise ServiceUrlRefused(f"local mode only talks to loopback service URLs, not {service_url[:100]!r}")
        key = (app_id, service_url, audience or "")
        client = self._clients.get(key)
        if client is not None:
            self._clients.move_to_end(key)
            return client
        client = await inner.create(service_url, audience)
        _no_msrest_retries(client)
        if self._http is not None:
            _send_with(client, self._http, self._observer)
        self._clients[key] = client
        while len(self._clients) > MAX_CLIENTS:
            _, old = self._clients.popitem(last=False)
            await _close(old)
        return client

    async def close(self) -> None:
        clients, self._clients = list(self._clients.values()), OrderedDict()
        for client in clients:
            await _close(client)


@dataclass(slots=True)
class _SharedFactory(ConnectorFactory):  # type: ignore[misc]  # botframework ships no type hints
    owner: SharedClientsAuthentication
    inner: ConnectorFactory
    app_id: str

    async def create(self, service_url: str, audience: str | None = None) -> ConnectorClient:
        return await self.owner.client(self.inner, app_id=self.app_id, service_url=service_url, audience=audience)


def _no_msrest_retries(client: ConnectorClient) -> None:
    """Leave retrying to :func:`with_retries`: msrest's retries block a thread and skip POST."""
    policy = client.config.retry_policy
    policy.retries = 0
    policy.policy.status_forcelist = set()
    policy.policy.raise_on_status = False
    policy.policy.respect_retry_after_header = False
    client.config.keep_alive = True
    client.config.connection.timeout = CALL_SECONDS


class _AiohttpSender(AsyncHTTPSender[ClientRequest, AsyncRequestsClientResponse]):
    """msrest's HTTP sender, sending through the app's aiohttp session instead of ``requests``.

    msrest runs every ``requests`` call in a worker thread; through aiohttp the connector calls
    stay on the event loop, share its connection pool and have a timeout short enough for a
    turn. Everything above the sender (serialisation, errors) is the SDK's own: the answer is
    handed back as the ``requests.Response`` msrest's deserialiser expects, its body given as
    ``raw`` (a file object) as ``requests`` documents.
    """

    def __init__(self, http: aiohttp.ClientSession, observer: Observer = NO_OBSERVER) -> None:
        self.http = http
        self.observer = observer

    async def __aenter__(self) -> _AiohttpSender:
        return self

    async def __aexit__(self, *exc_details: Any) -> None:
        return None

    def build_context(self) -> None:
        return None

    async def send(
        self, request: Request[ClientRequest], **kwargs: Any
    ) -> Response[ClientRequest, AsyncRequestsClientResponse]:
        outgoing: ClientRequest = request.http_request
        headers = {k: v for k, v in (outgoing.headers or {}).items() if k.lower() not in ("connection",)}
        method = api_method(outgoing.method, outgoing.url)
        try:
            async with self.http.request(
                outgoing.method, outgoing.url, headers=headers, data=outgoing.data, timeout=CALL_TIMEOUT
            ) as answer:
                body = await answer.read()
                response = requests.Response()
                response.status_code = answer.status
                response.reason = answer.reason or ""
                response.headers = CaseInsensitiveDict(answer.headers)
                response.url = outgoing.url
                response.encoding = answer.charset or "utf-8"
                response.raw = io.BytesIO(body)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.observer.api_call("teams", method=method, result=type(exc).__name__)
            raise ClientRequestError(f"Error occurred in request: {type(exc).__name__}") from exc
        self.observer.api_call("teams", method=method, result="ok" if answer.status < 300 else str(answer.status))
        # msrest leaves AsyncRequestsClientResponse's __init__ unannotated
        return Response(request, AsyncRequestsClientResponse(outgoing, response))  # type: ignore[no-untyped-call]


_API_WORDS = frozenset({"conversations", "activities", "members", "pagedmembers", "attachments", "teams"})


def api_method(verb: str, url: str) -> str:
    """A Bot Connector call named without its ids: ``POST conversations/activities``."""
    path = urlsplit(url).path.split("/")
    return f"{verb.upper()} {'/'.join(p for p in path if p.lower() in _API_WORDS) or '/'}"


class _OffLoopCredentialsPolicy(AsyncHTTPPolicy[ClientRequest, AsyncRequestsClientResponse]):
    """Puts the bot's bearer token on every connector call, fetched in a worker thread.

    botbuilder's ``MicrosoftAppCredentials`` gets its token through msal, synchronously: a
    cache hit is quick, but every hour or so it is an HTTP call to Azure AD that would stop
    the event loop (every turn of every user) for as long as Azure AD takes to answer. The
    credentials' public ``signed_session`` (msrest's ``Authentication`` interface) says which
    ``Authorization`` header to send, or none (local mode's anonymous credentials).
    """

    def __init__(self, credentials: Any) -> None:
        super().__init__()
        self.credentials = credentials

    async def send(
        self, request: Request[ClientRequest], **kwargs: Any
    ) -> Response[ClientRequest, AsyncRequestsClientResponse]:
        authorization = await self._authorization()
        if authorization:
            request.http_request.headers["Authorization"] = authorization
        assert self.next is not None  # the pipeline links every policy to the next one
        return await self.next.send(request, **kwargs)

    async def _authorization(self) -> str | None:
        creds = self.credentials
        if isinstance(creds, AppCredentials) and not creds.microsoft_app_id:
            return None  # local mode: anonymous, and no thread hop for nothing
        try:
            if isinstance(creds, AppCredentials):
                return f"Bearer {await asyncio.to_thread(creds.get_access_token)}"
            session: requests.Session = await asyncio.to_thread(creds.signed_session, requests.Session())
        except requests.RequestException as exc:
            raise ClientRequestError(f"Error occurred in request: {type(exc).__name__}") from exc
        try:
            return cast("str | None", session.headers.get("Authorization"))  # msrest sets it as a str
        finally:
            session.close()


def _send_with(client: ConnectorClient, http: aiohttp.ClientSession, observer: Observer = NO_OBSERVER) -> None:
    """Rebuild the client's msrest pipeline (the SDK's default policies) on :class:`_AiohttpSender`."""
    config = client.config
    policies: list[Any] = [config.user_agent_policy, RawDeserializer(), config.http_logger_policy]
    if config.credentials:
        policies.insert(1, _OffLoopCredentialsPolicy(config.credentials))
    config.pipeline = AsyncPipeline(policies, _AiohttpSender(http, observer))


async def _close(client: ConnectorClient) -> None:
    try:
        await client.__aexit__(None, None, None)
    except Exception:
        log.debug("closing a connector client failed", exc_info=True)


# --- retries ----------------------------------------------------------------------------------


def http_status(exc: BaseException) -> tuple[int | None, float | None]:
    """(HTTP status, Retry-After seconds) of a failed connector call, when it has them."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    headers = getattr(response, "headers", None) or {}
    raw = headers.get("Retry-After") if hasattr(headers, "get") else None
    return (int(status) if isinstance(status, int) else None), _retry_after(raw)


def _retry_after(raw: Any) -> float | None:
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except (TypeError, ValueError):
        pass
    try:
        when = parsedate_to_datetime(str(raw))
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How outbound calls are retried: backoff with full jitter, never below Retry-After.

    ``budget`` bounds the total waiting, so a reply inside a turn still finishes well within
    Teams' 15 s; a proactive send that runs out of budget is handed back to the delivery
    worker, which tries again later.
    """

    attempts: int = 5
    base: float = 0.4
    cap: float = 5.0
    budget: float = 8.0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)

    def delay(self, attempt: int, retry_after: float | None) -> float:
        jittered = random.uniform(0, min(self.cap, self.base * 2**attempt))
        return max(jittered, retry_after or 0.0)


class RetriesExhausted(Exception):
    """Raised when a retryable failure outlasted the policy; ``retry_after`` for the caller."""

    def __init__(self, cause: BaseException, status: int | None, retry_after: float | None) -> None:
        super().__init__(f"Teams answered HTTP {status} and kept doing so")
        self.cause = cause
        self.status = status
        self.retry_after = retry_after


async def with_retries(
    call: Callable[[], Awaitable[T]], policy: RetryPolicy, *, deadline: float | None = None
) -> T:
    """``await call()``, again on 429 (honouring Retry-After), 412, 502, 503 and 504.

    ``deadline`` (``time.monotonic()``): no waiting past it; a turn passes its own, so a
    throttled reply is handed to a follow-up instead of holding Teams' request open.
    """
    started = time.monotonic()
    waited = 0.0
    attempt = 0
    while True:
        try:
            return await call()
        except Exception as exc:
            status, retry_after = http_status(exc)
            if status not in RETRY_STATUSES:
                raise
            attempt += 1
            delay = policy.delay(attempt - 1, retry_after)
            spent = max(waited, time.monotonic() - started)
            late = deadline is not None and time.monotonic() + delay > deadline
            if attempt >= policy.attempts or spent + delay > policy.budget or late:
                raise RetriesExhausted(exc, status, retry_after) from exc
            log.info("Teams answered HTTP %s; retrying in %.2f s (attempt %d)", status, delay, attempt + 1)
            await policy.sleep(delay)
            waited += delay
