"""The one aiohttp server that hosts every configured platform adapter, plus ``/healthz``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from conversations.ports import Outbound
from storage.db import Database

if TYPE_CHECKING:
    from bot.metrics import Metrics

DB_KEY = web.AppKey("db", Database)


class ServedAdapter(Outbound, Protocol):
    """A platform adapter served over HTTP (or a socket it opens itself in ``start``)."""

    def mount(self, app: web.Application) -> None: ...

    async def start(self) -> None: ...

    async def close(self) -> None: ...


async def healthz(request: web.Request) -> web.Response:
    db = request.app[DB_KEY]
    if await db.ping():
        return web.json_response({"status": "ok", "database": "ok"})
    return web.json_response({"status": "unavailable", "database": "not answering"}, status=503)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def build_web_app(
    db: Database,
    adapters: Sequence[ServedAdapter],
    *,
    metrics: Metrics | None = None,
    clock: Callable[[], datetime] = _utcnow,
) -> web.Application:
    """``/healthz``, each adapter's route and, with ``metrics``, ``GET /metrics``."""
    app = web.Application(client_max_size=1024**2)
    app[DB_KEY] = db
    app.router.add_get("/healthz", healthz)
    if metrics is not None:
        app.router.add_get("/metrics", metrics.handler(db, clock=clock))
    for adapter in adapters:
        adapter.mount(app)
    return app
