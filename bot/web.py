"""The one aiohttp server that hosts every configured platform adapter, plus ``/healthz``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from aiohttp import web

from conversations.ports import Outbound
from storage.db import Database

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


def build_web_app(db: Database, adapters: Sequence[ServedAdapter]) -> web.Application:
    app = web.Application(client_max_size=1024**2)
    app[DB_KEY] = db
    app.router.add_get("/healthz", healthz)
    for adapter in adapters:
        adapter.mount(app)
    return app
