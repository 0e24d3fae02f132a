"""A small fake of the Bot Connector service (what Teams' ``serviceUrl`` points at).

It records what the bot sent: new messages and replies (POST), card updates (PUT), roster
look-ups (GET member), and can be told to throttle the next calls (HTTP 429 with
``Retry-After``, or 502/503/504/412) the way the real service does.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class Call:
    kind: str  # "send", "reply", "update", "member"
    conversation: str
    activity_id: str | None
    body: dict[str, Any]

    @property
    def text(self) -> str:
        """Readable text of a sent activity: message text and the card's text blocks."""
        parts = [self.body.get("text") or ""]
        for attachment in self.body.get("attachments") or ():
            content = attachment.get("content") or {}
            parts.extend(_card_texts(content))
        return "\n".join(p for p in parts if p)

    @property
    def card(self) -> dict[str, Any] | None:
        for attachment in self.body.get("attachments") or ():
            if attachment.get("contentType") == "application/vnd.microsoft.card.adaptive":
                return attachment["content"]
        return None


def _card_texts(element: Any) -> list[str]:
    out: list[str] = []
    if isinstance(element, dict):
        if element.get("type") == "TextBlock":
            out.append(str(element.get("text", "")))
        if element.get("type") == "FactSet":
            out.extend(f"{f['title']}: {f['value']}" for f in element.get("facts", ()))
        if element.get("type", "").startswith("Action."):
            out.append(f"[{element.get('title', '')}]")
        for key in ("body", "items", "actions", "columns"):
            for child in element.get(key, ()) or ():
                out.extend(_card_texts(child))
    return out


@dataclass
class FakeConnector:
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    failures: list[tuple[int, str | None]] = field(default_factory=list)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v3/conversations/{conversation}/activities", self._send)
        app.router.add_post("/v3/conversations/{conversation}/activities/{activity}", self._reply)
        app.router.add_put("/v3/conversations/{conversation}/activities/{activity}", self._update)
        app.router.add_get("/v3/conversations/{conversation}/members/{member}", self._member)
        return app

    def fail_next(self, status: int, times: int = 1, *, retry_after: str | None = None) -> None:
        """The next ``times`` sends, replies or updates answer ``status``."""
        self.failures.extend([(status, retry_after)] * times)

    def of(self, kind: str) -> list[Call]:
        return [c for c in self.calls if c.kind == kind]

    @property
    def messages(self) -> list[Call]:
        """Everything the bot posted (new messages and replies), in order."""
        return [c for c in self.calls if c.kind in ("send", "reply")]

    def text(self) -> str:
        return "\n".join(c.text for c in self.messages)

    def _failure(self) -> web.Response | None:
        if not self.failures:
            return None
        status, retry_after = self.failures.pop(0)
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        body = {"error": {"code": "TooManyRequests" if status == 429 else "ServiceError", "message": "try later"}}
        return web.json_response(body, status=status, headers=headers)

    async def _record(self, request: web.Request, kind: str) -> web.Response:
        failure = self._failure()
        if failure is not None:
            self.calls.append(Call("refused", request.match_info["conversation"], None, {"status": failure.status}))
            return failure
        body = await request.json()
        activity_id = request.match_info.get("activity")
        self.calls.append(Call(kind, request.match_info["conversation"], activity_id, body))
        new_id = activity_id if kind == "update" else f"bot-{next(self._ids)}"
        return web.json_response({"id": new_id}, status=200)

    async def _send(self, request: web.Request) -> web.Response:
        return await self._record(request, "send")

    async def _reply(self, request: web.Request) -> web.Response:
        return await self._record(request, "reply")

    async def _update(self, request: web.Request) -> web.Response:
        return await self._record(request, "update")

    async def _member(self, request: web.Request) -> web.Response:
        member_id = request.match_info["member"]
        self.calls.append(Call("member", request.match_info["conversation"], member_id, {}))
        member = self.members.get(member_id)
        if member is None:
            return web.json_response({"error": {"code": "NotFound", "message": "no such member"}}, status=404)
        return web.json_response(member)


class FakeLogin:
    """Microsoft's Bot Framework login metadata (OpenID configuration + JWKS) on 127.0.0.1.

    ``mint`` signs tokens with its key the way the Bot Framework Service does; ``fetches``
    counts the metadata documents served, so a test can see how often the bot asked.
    """

    def __init__(self, kid: str = "bf-key-1") -> None:
        from cryptography.hazmat.primitives.asymmetric import rsa

        self.kid = kid
        self.private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.fetches = 0
        self.base = ""

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/.well-known/openidconfiguration", self._metadata)
        app.router.add_get("/v1/.well-known/keys", self._keys)
        return app

    @property
    def metadata_url(self) -> str:
        return self.base + "/v1/.well-known/openidconfiguration"

    async def _metadata(self, request: web.Request) -> web.Response:
        self.fetches += 1
        keys = self.base + "/v1/.well-known/keys"
        return web.json_response({"issuer": "https://api.botframework.com", "jwks_uri": keys})

    async def _keys(self, request: web.Request) -> web.Response:
        import json

        import jwt

        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private_key.public_key()))
        jwk.update(kid=self.kid, use="sig", endorsements=["msteams", "emulator"])
        return web.json_response({"keys": [jwk]})

    def mint(self, claims: dict[str, Any], *, key: Any = None, kid: str | None = None, alg: str = "RS256") -> str:
        import jwt

        return jwt.encode(claims, key or self.private_key, algorithm=alg, headers={"kid": kid or self.kid})
