"""A small fake of the Slack Web API on 127.0.0.1 that records every call.

The real slack-sdk client is pointed at it (``SLACK_API_URL``), so the adapter's calls go
over HTTP exactly as they would to Slack: form, query or JSON arguments, a bearer token,
``Retry-After`` on a 429. It also answers ``response_url`` posts and serves a Socket Mode
websocket, so the whole adapter runs against it without a network.

Example::

    fake = FakeSlack(users={"U1": {"email": "dana@example.com", "name": "Dana"}})
    await fake.start()
    ...
    posted = await fake.wait_for("chat.postMessage")
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import WSMsgType, web

WAIT_SECONDS = 15.0
TEAM_ID = "T0FAKE"
BOT_USER_ID = "U0BOT"


@dataclass
class Call:
    """One request the bot made: the API method (or ``response:<id>``), its arguments, its token."""

    method: str
    args: dict[str, Any]
    token: str | None = None
    status: int = 200
    result: dict[str, Any] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def blocks(self) -> list[dict[str, Any]]:
        blocks = self.args.get("blocks") or []
        return json.loads(blocks) if isinstance(blocks, str) else list(blocks)

    @property
    def view(self) -> dict[str, Any]:
        view = self.args.get("view") or {}
        return json.loads(view) if isinstance(view, str) else dict(view)

    @property
    def text(self) -> str:
        """Every piece of text in the blocks (or the plain text), for assertions."""
        return "\n".join(_texts(self.blocks or self.view.get("blocks") or [])) or str(self.args.get("text") or "")


@dataclass
class _Failure:
    status: int
    headers: dict[str, str]
    body: dict[str, Any] | str  # a str is sent as an HTML page (a proxy's error page)
    delay: float = 0.0


@dataclass
class FakeSlack:
    users: Mapping[str, Mapping[str, str]]
    calls: list[Call] = field(default_factory=list)
    waiting: int = 0  # calls that reached a held method
    socket_acks: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._changed = asyncio.Condition()
        self._ok: dict[str, int] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._last_ts = 0  # microseconds: each post's ts is the wall clock's, later than the last
        self.history: dict[str, list[dict[str, Any]]] = {}  # channel -> messages posted there, oldest first
        self._runner: web.AppRunner | None = None
        self._envelopes: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._limits: dict[str, tuple[int, float]] = {}
        self._windows: dict[str, tuple[float, int]] = {}
        self._held: dict[str, asyncio.Event] = {}
        self._slow: dict[str, float] = {}
        self._blocked: dict[str, float] = {}
        self.gone: set[str] = set()  # message ts that chat.update answers message_not_found for
        self.url = ""

    # --- lifecycle -------------------------------------------------------------------------------

    async def start(self) -> str:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_post("/response/{hook}", self._response_url)
        app.router.add_get("/socket", self._socket)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def api_url(self) -> str:
        """The Web API base URL, deliberately without the trailing ``/`` (the adapter adds it)."""
        return f"{self.url}/api"

    def response_url(self, hook: str = "cmd") -> str:
        return f"{self.url}/response/{hook}"

    # --- scripting ---------------------------------------------------------------------------------

    def fail_once(
        self, method: str, status: int, body: dict[str, Any] | str, headers: dict[str, str] | None = None
    ) -> None:
        """Answer the next call of ``method`` with this failure (then normally again)."""
        self._failures.setdefault(method, []).append(_Failure(status, headers or {}, body))

    def stall_once(self, method: str, seconds: float) -> None:
        """Keep the next call of ``method`` waiting ``seconds`` before it is answered (normally)."""
        self._failures.setdefault(method, []).append(_Failure(200, {}, {}, delay=seconds))

    def rate_limit_once(self, method: str, retry_after: int = 1) -> None:
        self.fail_once(method, 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)})

    def limit(self, method: str, calls: int, per: float = 1.0) -> None:
        """Slack's per-method rate limit: at most ``calls`` of ``method`` in each ``per`` seconds;
        the rest get 429 with ``Retry-After`` (whole seconds, as Slack sends) until the window ends."""
        self._limits[method] = (calls, per)

    def block(self, method: str, seconds: int) -> None:
        """Answer every call of ``method`` in the next ``seconds`` with 429 and the seconds left."""
        self._blocked[method] = time.monotonic() + seconds

    def hold(self, method: str) -> None:
        """Keep every call of ``method`` waiting until :meth:`release` (a tarpit). A held call whose
        client went away meanwhile is not answered nor recorded: it never reached Slack."""
        self._held[method] = asyncio.Event()

    def release(self, method: str) -> None:
        held = self._held.pop(method, None)
        if held is not None:
            held.set()

    def slow(self, method: str, seconds: float) -> None:
        """Answer every call of ``method`` only after ``seconds`` (a slow Slack)."""
        self._slow[method] = seconds

    def held(self, method: str) -> bool:
        return method in self._held

    def push_envelope(self, envelope: dict[str, Any]) -> None:
        """Queue a Socket Mode envelope for the connected bot."""
        self._envelopes.put_nowait(envelope)

    # --- reading ------------------------------------------------------------------------------------

    def called(self, method: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.status == 200]

    def count(self, method: str) -> int:
        """How many calls of ``method`` succeeded (cheap: the benchmark polls it)."""
        return self._ok.get(method, 0)

    async def wait_for(self, method: str, count: int = 1, *, within: float = WAIT_SECONDS) -> list[Call]:
        """The successful calls of ``method``, once there are at least ``count`` of them."""

        def enough() -> bool:
            return self.count(method) >= count

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(enough), within)
            except TimeoutError:
                seen = [c.method for c in self.calls]
                raise AssertionError(f"expected {count} x {method}, the bot made: {seen}") from None
        return self.called(method)

    async def wait_held(self, count: int, *, within: float = WAIT_SECONDS) -> None:
        """Return once ``count`` calls are waiting at held methods."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: self.waiting >= count), within)

    async def wait_for_ack(self, envelope_id: str) -> None:
        async with self._changed:
            await asyncio.wait_for(
                self._changed.wait_for(lambda: any(a.get("envelope_id") == envelope_id for a in self.socket_acks)),
                WAIT_SECONDS,
            )

    async def _record(self, call: Call) -> None:
        async with self._changed:
            self.calls.append(call)
            if call.status == 200:
                self._ok[call.method] = self._ok.get(call.method, 0) + 1
            self._changed.notify_all()

    # --- the API ------------------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        args: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if (request.content_type or "").endswith("json"):
                args.update(await request.json())
            else:
                args.update(dict(await request.post()))
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
        headers = {k: request.headers[k] for k in ("Content-Type", "User-Agent") if k in request.headers}
        if method in self._slow:
            await asyncio.sleep(self._slow[method])
        held = self._held.get(method)
        if held is not None:
            async with self._changed:
                self.waiting += 1
                self._changed.notify_all()
            await held.wait()
            if request.transport is None or request.transport.is_closing():
                return web.Response(status=499)
        limited = self._over_limit(method)
        if limited is not None:
            await self._record(Call(method, args, token, 429, headers=headers))
            return web.json_response({"ok": False, "error": "ratelimited"}, status=429,
                                     headers={"Retry-After": str(limited)})
        pending = self._failures.get(method)
        failure = pending.pop(0) if pending else None
        if failure is not None and failure.delay:
            await asyncio.sleep(failure.delay)
        elif failure is not None:
            await self._record(Call(method, args, token, failure.status, headers=headers))
            if isinstance(failure.body, str):
                return web.Response(text=failure.body, status=failure.status, content_type="text/html")
            return web.json_response(failure.body, status=failure.status, headers=failure.headers)
        body = self._answer(method, args)
        await self._record(Call(method, args, token, result=body, headers=headers))
        return web.json_response(body)

    def _over_limit(self, method: str) -> int | None:
        """Seconds to wait when this call is over ``method``'s limit (None when it is within it)."""
        blocked = self._blocked.get(method, 0.0) - time.monotonic()
        if blocked > 0:
            return max(1, math.ceil(blocked))
        if method not in self._limits:
            return None
        calls, per = self._limits[method]
        now = time.monotonic()
        start, used = self._windows.get(method, (now, 0))
        if now - start >= per:
            start, used = now, 0
        if used < calls:
            self._windows[method] = (start, used + 1)
            return None
        self._windows[method] = (start, used)
        return max(1, math.ceil(start + per - now))

    def _answer(self, method: str, args: Mapping[str, Any]) -> dict[str, Any]:
        match method:
            case "auth.test":
                return {"ok": True, "url": "https://fake.slack.com/", "team": "Fake", "user": "brm",
                        "team_id": TEAM_ID, "user_id": BOT_USER_ID, "bot_id": "B0BOT", "is_enterprise_install": False}
            case "users.info":
                user = self.users.get(str(args.get("user")))
                if user is None:
                    return {"ok": False, "error": "user_not_found"}
                return {"ok": True, "user": {
                    "id": args["user"], "team_id": TEAM_ID, "name": user["name"].split()[0].lower(),
                    "real_name": user["name"], "tz": user.get("tz", "Europe/Berlin"), "is_bot": False,
                    "profile": {"real_name": user["name"], "display_name": user["name"], "email": user["email"]},
                }}
            case "users.lookupByEmail":
                email = str(args.get("email") or "").lower()
                found = next((uid for uid, u in self.users.items() if u.get("email", "").lower() == email), None)
                if found is None:
                    return {"ok": False, "error": "users_not_found"}
                return {"ok": True, "user": {"id": found, "team_id": TEAM_ID, "real_name": self.users[found]["name"]}}
            case "conversations.open":
                user = str(args.get("users") or "")
                if user not in self.users:
                    return {"ok": False, "error": "user_not_found"}
                return {"ok": True, "channel": {"id": "D" + user[1:]}}
            case "chat.postMessage" | "chat.update":
                channel = str(args.get("channel") or "")
                if method == "chat.update" and str(args.get("ts")) in self.gone:
                    return {"ok": False, "error": "message_not_found"}
                if channel.startswith("C0GONE"):
                    return {"ok": False, "error": "channel_not_found"}
                ts = str(args.get("ts") or self._next_ts())
                if method == "chat.postMessage":
                    posted = {"type": "message", "ts": ts, "text": args.get("text"), "blocks": args.get("blocks"),
                              "bot_id": "B0BOT"}
                    if isinstance(args.get("metadata"), dict):
                        posted["metadata"] = args["metadata"]
                    self.history.setdefault(channel, []).append(posted)
                return {"ok": True, "channel": channel, "ts": ts,
                        "message": {"text": args.get("text"), "blocks": args.get("blocks")}}
            case "conversations.history":
                return self._history(args)
            case "chat.getPermalink":
                ts = str(args.get("message_ts", "")).replace(".", "")
                return {"ok": True, "channel": args.get("channel"),
                        "permalink": f"https://fake.slack.com/archives/{args.get('channel')}/p{ts}"}
            case "views.open" | "views.publish" | "views.update":
                return {"ok": True, "view": {"id": "V0VIEW", "hash": "h1"}}
            case "apps.connections.open":
                return {"ok": True, "url": self.url.replace("http://", "ws://") + "/socket"}
        return {"ok": False, "error": "unknown_method"}

    def _next_ts(self) -> str:
        """A message ts as Slack makes them: the epoch time in microseconds, unique and rising."""
        self._last_ts = max(time.time_ns() // 1000, self._last_ts + 1)
        return f"{self._last_ts // 1_000_000}.{self._last_ts % 1_000_000:06d}"

    def _history(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """``conversations.history``: newest first, after ``oldest``, at most ``limit``; each message's
        ``metadata`` (``event_type``, ``event_payload``) only with ``include_all_metadata``."""
        channel = str(args.get("channel") or "")
        oldest = Decimal(str(args.get("oldest") or "0"))
        limit = int(args.get("limit") or 100)
        with_metadata = str(args.get("include_all_metadata")).lower() in {"1", "true"}
        found = [m for m in reversed(self.history.get(channel, [])) if Decimal(m["ts"]) > oldest]
        messages = [m if with_metadata else {k: v for k, v in m.items() if k != "metadata"} for m in found[:limit]]
        return {"ok": True, "messages": messages, "has_more": len(found) > limit, "pin_count": 0,
                "response_metadata": {"next_cursor": ""}}

    async def _response_url(self, request: web.Request) -> web.Response:
        await self._record(Call(f"response:{request.match_info['hook']}", await request.json()))
        return web.Response(text="ok")

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_json({"type": "hello", "num_connections": 1, "connection_info": {"app_id": "A0FAKE"}})

        async def feed() -> None:
            while True:
                await ws.send_json(await self._envelopes.get())

        feeder = asyncio.create_task(feed())
        try:
            async for message in ws:
                if message.type == WSMsgType.TEXT:
                    async with self._changed:
                        self.socket_acks.append(json.loads(message.data))
                        self._changed.notify_all()
        finally:
            feeder.cancel()
        return ws


def _texts(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["text"]] if isinstance(node.get("text"), str) else []
        for key, value in node.items():
            if key != "text" or not isinstance(value, str):
                found.extend(_texts(value))
        return found
    if isinstance(node, list):
        return [t for item in node for t in _texts(item)]
    return []
