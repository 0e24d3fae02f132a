"""The ``brm-bot`` command line."""

from __future__ import annotations

import asyncio
import csv
import getpass
import ipaddress
import json
import logging
import signal
import sys
from collections.abc import Coroutine
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

import typer

from bot import logs
from bot.runtime import (
    DATABASE_ERRORS,
    StartupError,
    database_problem,
    freeze_startup_heap,
    housekeeping,
    open_runtime,
    utcnow,
)
from bot.settings import Settings, SettingsError, load_settings

log = logging.getLogger("brm_bot")

app = typer.Typer(
    name="brm-bot",
    help="A chat bot for Business Relationship Management: demand intake in Slack, Teams and the terminal.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
export_app = typer.Typer(help="Export data to standard output.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(export_app, name="export")


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"brm-bot: {message}", err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        settings = load_settings()
    except SettingsError as exc:
        raise _fail(str(exc)) from None
    secrets = [
        s.get_secret_value()
        for s in (
            settings.slack_bot_token,
            settings.slack_signing_secret,
            settings.slack_app_token,
            settings.microsoft_app_password,
        )
        if s is not None
    ]
    logs.configure(settings.log_level, secrets)
    return settings


def _run(coro: Coroutine[Any, Any, int | None]) -> None:
    try:
        code = asyncio.run(coro)
    except StartupError as exc:
        raise _fail(str(exc)) from None
    except KeyboardInterrupt:
        code = 130
    if code:
        raise typer.Exit(code)


@app.command()
def chat(
    as_email: Annotated[
        str | None,
        typer.Option("--as", help="Chat as this person (email). Default: a demo requester or you."),
    ] = None,
    demo: Annotated[bool, typer.Option("--demo", help="Load a demo organisation into an empty database.")] = False,
) -> None:
    """Chat with the bot in this terminal (works on a pipe too)."""
    settings = _settings()
    if as_email is not None and ("@" not in as_email or len(as_email) > 320 or " " in as_email.strip()):
        raise _fail(f"--as: {as_email!r} is not an email address")
    _run(_chat(settings, as_email, demo))


async def _chat(settings: Settings, as_email: str | None, demo: bool) -> int:
    from adapters.console import ConsoleChat
    from storage.demo import load_demo

    email = (as_email or ("dana@example.com" if demo else f"{getpass.getuser()}@localhost")).strip().lower()
    async with open_runtime(settings) as runtime:
        console = ConsoleChat(runtime.engine, email=email, after_turn=runtime.worker.run_once)
        runtime.worker.register(console, fallback=True)
        if demo:
            async with runtime.db.transaction() as session:
                loaded = await load_demo(session, now=utcnow())
            typer.echo(
                "Loaded the demo organisation (try --as alice@example.com, a BRM, or priya@example.com, a leader)."
                if loaded
                else "The database is not empty, so no demo data was loaded."
            )
        await console.run()
    return 0


@app.command()
def serve() -> None:
    """Serve the configured platforms (Slack, Teams) on one web server."""
    settings = _settings()
    if not settings.slack_enabled and not settings.teams_enabled:
        raise _fail(
            "no platform is configured, so there is nothing to serve.\n"
            "  Slack: set SLACK_BOT_TOKEN and SLACK_SIGNING_SECRET (see docs/slack.md)\n"
            "  Teams: set MICROSOFT_APP_ID and MICROSOFT_APP_PASSWORD (see docs/teams.md)\n"
            "  To try the bot without either: brm-bot chat --demo"
        )
    _run(_serve(settings))


async def _serve(settings: Settings) -> int:
    import aiohttp
    from aiohttp import web

    from bot.web import ServedAdapter, build_web_app
    from conversations.ports import PlatformRefused

    # Every outbound call has a deadline, even where a library sets none of its own on a shared session.
    outbound = aiohttp.ClientTimeout(total=OUTBOUND_TIMEOUT_SECONDS, connect=OUTBOUND_CONNECT_SECONDS)
    async with open_runtime(settings) as runtime, aiohttp.ClientSession(timeout=outbound) as http:
        adapters: list[ServedAdapter] = []
        if settings.slack_enabled:
            from bot.platforms.slack import build_slack

            adapters.append(build_slack(settings, runtime, http))
        if settings.teams_enabled:
            from bot.platforms.teams import build_teams

            adapters.append(build_teams(settings, runtime, http))
        for adapter in adapters:
            runtime.worker.register(adapter)
        host = settings.listen_host
        runner = web.AppRunner(build_web_app(runtime.db, adapters), access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, settings.port).start()
        except OSError as exc:
            raise StartupError(f"PORT: cannot listen on {host}:{settings.port} ({exc.strerror})") from None
        if settings.teams_local_mode and not _is_loopback_host(host):
            log.warning(
                "HOST=%s with TEAMS_LOCAL_MODE: the UNAUTHENTICATED Teams endpoint is open to every machine that "
                "reaches this one, which can then chat as anyone and read what the bot answers. Unset HOST to "
                "listen on 127.0.0.1 only",
                host,
            )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        worker = asyncio.create_task(runtime.worker.run_forever())
        janitor = asyncio.create_task(housekeeping(runtime.db))
        try:
            for adapter in adapters:
                try:
                    await adapter.start()
                except PlatformRefused as exc:
                    raise StartupError(str(exc)) from None
            freeze_startup_heap()
            names = ", ".join(a.platform for a in adapters)
            log.info("serving %s on http://%s:%d (health: /healthz)", names, host, settings.port)
            await stop.wait()
            log.info("shutting down")
        finally:
            worker.cancel()
            janitor.cancel()
            for adapter in adapters:
                await adapter.close()
            await runner.cleanup()
    return 0


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Upgrade the database schema to this version's newest revision."""
    settings = _settings()
    _run(_db_upgrade(settings))


async def _db_upgrade(settings: Settings) -> int:
    from storage import migrate
    from storage.db import Database

    db = Database.connect(settings.database_url)
    try:
        before = await migrate.current_revision(db)
        await migrate.upgrade(db)
        after = await migrate.current_revision(db)
    except DATABASE_ERRORS as exc:
        raise database_problem(exc) from None
    finally:
        await db.dispose()
    typer.echo(
        f"Database schema: {before or 'empty'} -> {after}"
        if before != after
        else f"Database schema is up to date ({after})."
    )
    return 0


class ExportFormat(StrEnum):
    csv = "csv"
    json = "json"


OUTBOUND_TIMEOUT_SECONDS = 30
OUTBOUND_CONNECT_SECONDS = 10
EXPORT_FIELDS = (
    "key",
    "title",
    "description",
    "outcome",
    "category",
    "urgency",
    "desired_date",
    "status",
    "requester_email",
    "requester_name",
    "business_partner",
    "brm_email",
    "source_platform",
    "source_channel",
    "source_link",
    "created_at",
    "updated_at",
)


@export_app.command("requests")
def export_requests(
    format: Annotated[ExportFormat, typer.Option("--format", help="csv or json")] = ExportFormat.json,
) -> None:
    """All demand requests, with the requester's email, as CSV or a JSON array."""
    settings = _settings()
    _run(_export(settings, format))


def _spreadsheet_safe(value: str) -> str:
    """Keep a spreadsheet from running a cell that starts like a formula."""
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


async def _export(settings: Settings, fmt: ExportFormat) -> int:
    from storage import queries as q

    async with open_runtime(settings) as runtime:
        async with runtime.db.session() as session:
            rows = await q.all_requests_with_requester(session)
            brms = {p.id: p for p in await q.people(session)}
    records: list[dict[str, Any]] = []
    for request, requester, partner in rows:
        brm = brms.get(request.brm_id) if request.brm_id else None
        records.append(
            {
                "key": request.key,
                "title": request.title,
                "description": request.description,
                "outcome": request.outcome,
                "category": request.category,
                "urgency": request.urgency,
                "desired_date": request.desired_date,
                "status": request.status,
                "requester_email": requester.email,
                "requester_name": requester.name,
                "business_partner": partner.name if partner else None,
                "brm_email": brm.email if brm else None,
                "source_platform": request.source_platform,
                "source_channel": request.source_channel,
                "source_link": request.source_link,
                "created_at": request.created_at,
                "updated_at": request.updated_at,
            }
        )
    if fmt == ExportFormat.json:
        json.dump(records, sys.stdout, default=_json_default, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
    else:
        writer = csv.DictWriter(sys.stdout, fieldnames=EXPORT_FIELDS, lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow(
                {k: _spreadsheet_safe(_json_default(v)) if v is not None else "" for k, v in record.items()}
            )
    return 0


def _json_default(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


from bot.teams_cli import app as teams_app  # noqa: E402 - registered after the core commands

app.add_typer(teams_app, name="teams")


def main() -> None:
    app()
