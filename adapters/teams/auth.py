"""Bot Framework tokens checked without ever stopping the event loop.

botbuilder 4.17 fetches Microsoft's OpenID metadata and signing keys with a synchronous
``requests`` call without a timeout, on the event loop, again for every token whose key id it
does not know: one forged token froze the whole process (Slack, ``/healthz``) for as long as
the metadata endpoint kept the connection open, and every malformed token answered 500.

:class:`TokenValidator` checks what botbuilder's channel validation checks, with PyJWT's public
API: an RS256/384/512 signature by a key of the published JWKS (endorsed for the activity's
channel when the key lists endorsements), issuer ``https://api.botframework.com``, audience =
the app id, expiry (5 minutes of clock skew) and the ``serviceurl`` claim equal to the
activity's ``serviceUrl``. The keys are fetched at start and refreshed in the background
(every ``refresh`` seconds, or sooner when a token names an unknown key, at most once per
``min_refresh``); a request never waits for a fetch, and every fetch has a timeout.

Example::

    validator = TokenValidator(app_id="...", http=session)
    await validator.start()
    claims = validator.validate("Bearer eyJ...", service_url=activity.service_url, channel_id="msteams")
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import jwt

log = logging.getLogger(__name__)

OPENID_METADATA_URL = "https://login.botframework.com/v1/.well-known/openidconfiguration"
ISSUER = "https://api.botframework.com"
ALGORITHMS = ("RS256", "RS384", "RS512")
LEEWAY_SECONDS = 300
FETCH_TIMEOUT = aiohttp.ClientTimeout(total=10, connect=5)
MAX_TOKEN_CHARS = 16_384


class Unauthorized(PermissionError):
    """The request's token is missing, malformed, forged, expired or not for this bot (401)."""


class KeysUnavailable(Exception):
    """No signing keys were ever fetched, so a token cannot be checked yet (503, try again)."""


class TokenValidator:
    """Checks Bot Framework channel tokens against keys it keeps fresh in the background.

    ``http``: the app's client session (one of its own is opened when None). ``clock``: for
    ``time.monotonic``-style scheduling of the refreshes (tests never wait on it).
    """

    def __init__(
        self,
        *,
        app_id: str,
        metadata_url: str = OPENID_METADATA_URL,
        http: aiohttp.ClientSession | None = None,
        refresh: float = 24 * 3600.0,
        min_refresh: float = 300.0,
        retry_failed: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.app_id = app_id
        self.metadata_url = metadata_url
        self._http = http
        self._own_http: aiohttp.ClientSession | None = None
        self._refresh = refresh
        self._min_refresh = min_refresh
        self._retry_failed = retry_failed
        self._clock = clock
        self._keys: dict[str, tuple[Any, frozenset[str] | None]] = {}
        self._loaded = False
        self._last_fetch: float | None = None
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.fetches = 0

    async def start(self) -> None:
        """Fetch the keys once (bounded by the fetch timeouts), then keep them fresh in the background.

        The server already answers while this waits: ``/healthz``, Slack, and 503 to Teams.
        """
        if self._task is None:
            ok = await self._fetch()
            self._task = asyncio.create_task(self._keep_fresh(ok), name="teams-signing-keys")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._own_http is not None:
            await self._own_http.close()
            self._own_http = None

    async def _keep_fresh(self, ok: bool) -> None:
        while True:
            wait = self._refresh if ok else self._retry_failed
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), wait)
            except TimeoutError:
                pass
            if self._last_fetch is not None:
                # An unknown key id woke us early: never more than one fetch per min_refresh.
                pause = self._last_fetch + self._min_refresh - self._clock()
                if pause > 0:
                    await asyncio.sleep(pause)
            ok = await self._fetch()

    async def _fetch(self) -> bool:
        self.fetches += 1
        self._last_fetch = self._clock()
        http = self._http
        if http is None:
            if self._own_http is None:
                self._own_http = aiohttp.ClientSession()
            http = self._own_http
        try:
            async with http.get(self.metadata_url, timeout=FETCH_TIMEOUT) as answer:
                answer.raise_for_status()
                metadata = await answer.json(content_type=None)
            jwks_uri = metadata.get("jwks_uri") if isinstance(metadata, Mapping) else None
            if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
                raise ValueError("the OpenID metadata has no jwks_uri")
            async with http.get(jwks_uri, timeout=FETCH_TIMEOUT) as answer:
                answer.raise_for_status()
                jwks = await answer.json(content_type=None)
            keys = _parse_keys(jwks)
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            log.warning(
                "fetching the Bot Framework signing keys failed (%s); trying again in %.0f s",
                type(exc).__name__, self._retry_failed,
            )
            return False
        self._keys = keys
        self._loaded = True
        log.info("fetched %d Bot Framework signing keys", len(keys))
        return True

    def _unknown_key(self) -> None:
        """Ask the background task for a refresh; it decides whether one is due."""
        due = self._last_fetch is None or self._clock() - self._last_fetch >= self._min_refresh
        if due:
            self._wake.set()

    def validate(self, auth_header: str, *, service_url: str | None, channel_id: str | None) -> dict[str, Any]:
        """The token's claims, or :class:`Unauthorized` / :class:`KeysUnavailable`. Never waits."""
        scheme, _, token = (auth_header or "").partition(" ")
        token = token.strip()
        if scheme != "Bearer" or not token or len(token) > MAX_TOKEN_CHARS:
            raise Unauthorized("no Bearer token")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthorized("the token is not a JWT") from None
        algorithm = header.get("alg")
        key_id = header.get("kid")
        if algorithm not in ALGORITHMS:
            raise Unauthorized(f"signing algorithm {str(algorithm)[:20]!r} is not accepted")
        if not isinstance(key_id, str) or not key_id:
            raise Unauthorized("the token names no signing key")
        found = self._keys.get(key_id)
        if found is None:
            if not self._loaded:
                self._unknown_key()
                raise KeysUnavailable("the Bot Framework signing keys are not loaded yet")
            self._unknown_key()
            raise Unauthorized("the token's signing key is not one of Microsoft's")
        key, endorsements = found
        if endorsements is not None and channel_id not in endorsements:
            raise Unauthorized("the signing key is not endorsed for this channel")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.app_id,
                issuer=ISSUER,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized(f"the token was refused ({type(exc).__name__})") from None
        if claims.get("serviceurl") != service_url:
            raise Unauthorized("the token's serviceurl is not the activity's")
        return claims


def _parse_keys(jwks: Any) -> dict[str, tuple[Any, frozenset[str] | None]]:
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        raise ValueError("the JWKS has no keys")
    keys: dict[str, tuple[Any, frozenset[str] | None]] = {}
    for entry in jwks["keys"]:
        if not isinstance(entry, Mapping) or entry.get("kty") != "RSA" or not isinstance(entry.get("kid"), str):
            continue
        try:
            key = jwt.PyJWK.from_json(json.dumps(entry)).key
        except (jwt.PyJWTError, ValueError, TypeError):
            continue
        raw = entry.get("endorsements")
        endorsements = frozenset(str(e) for e in raw) if isinstance(raw, list) else None
        keys[entry["kid"]] = (key, endorsements)
    if not keys:
        raise ValueError("the JWKS has no usable RSA keys")
    return keys
