"""The ``brm-bot`` command line."""

from __future__ import annotations

import asyncio
import csv
import getpass
import ipaddress
import json
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from datetime import date, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bot import logs
from bot.runtime import (
    DATABASE_ERRORS,
    StartupError,
    connect_database,
    database_problem,
    freeze_startup_heap,
    housekeeping,
    open_runtime,
    utcnow,
)
from bot.settings import Settings, SettingsError, load_settings

if TYPE_CHECKING:
    from storage.models import OutboxMessage

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
    logs.configure(settings.log_level, secrets, settings.log_format)
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
    no_history: Annotated[
        bool, typer.Option("--no-history", help="Keep no file of typed lines (recall works in this session only).")
    ] = False,
) -> None:
    """Chat with the bot in this terminal (works on a pipe too)."""
    settings = _settings()
    if as_email is not None and ("@" not in as_email or len(as_email) > 320 or " " in as_email.strip()):
        raise _fail(f"--as: {as_email!r} is not an email address")
    keep = not no_history and sys.stdin.isatty()  # a pipe has no line editing, so no history
    _run(_chat(settings, as_email, demo, history_file() if keep else None))


def state_folder() -> Path:
    """Where brm-bot keeps its state on this platform: ``$XDG_STATE_HOME/brm-bot`` (or
    ``~/.local/state/brm-bot``) on Linux and other Unixes, ``~/Library/Application Support/brm-bot``
    on macOS, ``%LOCALAPPDATA%\\brm-bot`` on Windows."""
    if sys.platform == "win32":
        local = os.environ.get("LOCALAPPDATA")
        return (Path(local) if local else Path.home() / "AppData" / "Local") / "brm-bot"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / "brm-bot"
    xdg = os.environ.get("XDG_STATE_HOME", "")
    # The XDG spec calls a relative path invalid, to be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"
    return base / "brm-bot"


def history_file() -> Path | None:
    """The terminal chat's history file, in the state folder (made private to this user);
    ``None``, with a note, when the folder cannot be made (the chat then remembers only this session)."""
    folder = state_folder()
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        typer.echo(f"brm-bot: not keeping chat history: cannot create {folder} ({exc.strerror})", err=True)
        return None
    return folder / "history"


async def _chat(settings: Settings, as_email: str | None, demo: bool, history: Path | None) -> int:
    from adapters.console import ConsoleChat
    from storage.demo import load_demo

    email = (as_email or ("dana@example.com" if demo else f"{getpass.getuser()}@localhost")).strip().lower()
    async with open_runtime(settings) as runtime:
        console = ConsoleChat(runtime.engine, email=email, after_turn=runtime.worker.run_once, history=history)
        runtime.worker.register(console, fallback=True)
        if demo:
            async with runtime.db.transaction() as store:
                loaded = await load_demo(store, now=utcnow())
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
        runner = web.AppRunner(build_web_app(runtime.db, adapters, metrics=runtime.metrics), access_log=None)
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
        janitor = asyncio.create_task(
            housekeeping(runtime.db, keep=timedelta(days=settings.retention_days), observer=runtime.observer)
        )
        scheduler = runtime.scheduler()
        try:
            for adapter in adapters:
                try:
                    await adapter.start()
                except PlatformRefused as exc:
                    raise StartupError(str(exc)) from None
            await scheduler.start()
            freeze_startup_heap()
            names = ", ".join(a.platform for a in adapters)
            extra = ", metrics: /metrics" if runtime.metrics is not None else ""
            log.info("serving %s on http://%s:%d (health: /healthz%s)", names, host, settings.port, extra)
            await stop.wait()
            log.info("shutting down")
        finally:
            scheduler.shutdown()
            runtime.worker.stop()  # the message being sent is finished and recorded, the rest given back
            try:
                await asyncio.wait_for(worker, OUTBOUND_TIMEOUT_SECONDS + 5)
            except TimeoutError:
                log.warning("the delivery worker did not stop in time; its claimed messages go after their lease")
            janitor.cancel()
            for adapter in adapters:
                await adapter.close()
            await runner.cleanup()
    return 0


def _version(value: bool) -> None:
    if value:
        typer.echo(f"brm-bot {version()}")
        raise typer.Exit()


def version() -> str:
    """The installed distribution's version (``pyproject.toml``)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("brm-bot")
    except PackageNotFoundError:
        return "unknown (not installed: pip install -e .)"


@app.callback()
def _main(
    show_version: Annotated[
        bool, typer.Option("--version", help="Print the version and exit.", callback=_version, is_eager=True)
    ] = False,
) -> None:
    """A chat bot for Business Relationship Management: demand intake in Slack, Teams and the terminal."""


def _is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@db_app.command("upgrade")
def db_upgrade(
    sql: Annotated[
        bool, typer.Option("--sql", help="Print the SQL for a DBA to run instead of running it (no connection).")
    ] = False,
    start: Annotated[
        str | None,
        typer.Option("--from", help="With --sql: the revision the database is at (default: an empty database)."),
    ] = None,
) -> None:
    """Upgrade the database schema to this version's newest revision."""
    settings = _settings()
    if start is not None and not sql:
        raise _fail("--from: only with --sql (a live upgrade reads the revision from the database)")
    if sql:
        _upgrade_sql(settings, start)
        return
    _run(_db_upgrade(settings))


def _upgrade_sql(settings: Settings, start: str | None) -> None:
    from storage import migrate

    if start is not None and not migrate.known_revision(start):
        raise _fail(f"--from: {start!r} is not a revision of this version (see brm-bot db history)")
    if start == migrate.head_revision():
        typer.echo(f"-- {start} is already the newest revision: nothing to run.")
        return
    try:
        migrate.upgrade_sql(settings.database_url, sys.stdout, start=None if start == "base" else start)
        sys.stdout.flush()
    except BrokenPipeError:
        sys.stderr.close()  # the reader stopped early (| head): nothing more to say


async def _db_upgrade(settings: Settings) -> int:
    from storage import migrate

    db = connect_database(settings.database_url)
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


async def _current(settings: Settings) -> str | None:
    from storage import migrate

    db = connect_database(settings.database_url)
    try:
        return await migrate.current_revision(db)
    except DATABASE_ERRORS as exc:
        raise database_problem(exc) from None
    finally:
        await db.dispose()


def _read_current(settings: Settings) -> str | None:
    try:
        return asyncio.run(_current(settings))
    except StartupError as exc:
        raise _fail(str(exc)) from None


@db_app.command("current")
def db_current() -> None:
    """The database's schema revision, and whether it is this version's newest."""
    from storage import migrate

    settings = _settings()
    current, head = _read_current(settings), migrate.head_revision()
    if current is None:
        typer.echo(f"empty: no schema yet (brm-bot db upgrade creates it at {head})")
    elif current == head:
        typer.echo(f"{current} (head): up to date")
    elif migrate.known_revision(current):
        typer.echo(f"{current}: behind this version's newest, {head} (brm-bot db upgrade)")
    else:
        typer.echo(f"{current}: unknown to this version of brm-bot, whose newest is {head} (a newer version wrote it)")


@db_app.command("history")
def db_history() -> None:
    """Every schema revision this version knows, newest first, marking the database's."""
    from storage import migrate

    settings = _settings()
    current, head = _read_current(settings), migrate.head_revision()
    for revision in migrate.history():
        marks = [m for m, on in (("head", revision.revision == head), ("current", revision.revision == current)) if on]
        suffix = f" ({', '.join(marks)})" if marks else ""
        typer.echo(f"{revision.down_revision or 'base'} -> {revision.revision}{suffix}: {revision.message}")
    if current is None:
        typer.echo("The database is empty (no revision yet).")


@db_app.command("downgrade")
def db_downgrade(
    revision: Annotated[str, typer.Argument(help="The revision to go back to; base removes every table.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask (for scripts).")] = False,
) -> None:
    """Go back to an older schema revision. Drops what the newer revisions added, data included."""
    from storage import migrate

    settings = _settings()
    if not migrate.known_revision(revision):
        raise _fail(f"REVISION: {revision!r} is not a revision of this version (see brm-bot db history)")
    current = _read_current(settings)
    order = [r.revision for r in migrate.history()] + ["base"]
    if current is None:
        raise _fail("the database is empty: there is nothing to downgrade", code=1)
    if current not in order:
        raise _fail(
            f"the database is at {current}, a revision this version does not know: downgrade with the "
            "version that wrote it",
            code=1,
        )
    if order.index(revision) <= order.index(current):
        raise _fail(f"REVISION: {revision} is not older than the database's revision, {current}", code=1)
    if not yes:
        _confirm_or_stop(
            f"Downgrade the database schema from {current} to {revision}? "
            "Tables and columns of the newer revisions are dropped, with their data."
        )
    _run(_db_downgrade(settings, revision, current))


def _confirm_or_stop(question: str) -> None:
    """Ask before a change that cannot be undone; no (or no answer, as in a script) changes nothing."""
    try:
        confirmed = typer.confirm(question, default=False)
    except typer.Abort:
        confirmed = False
    if not confirmed:
        raise _fail("nothing changed (answer y, or pass --yes in a script)", code=1)


async def _db_downgrade(settings: Settings, revision: str, before: str) -> int:
    from storage import migrate

    db = connect_database(settings.database_url)
    try:
        await migrate.downgrade(db, revision)
    except DATABASE_ERRORS as exc:
        raise database_problem(exc) from None
    finally:
        await db.dispose()
    typer.echo(f"Database schema: {before} -> {revision}")
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
    async with open_runtime(settings) as runtime:
        async with runtime.db.transaction() as store:
            rows = await store.requests.all_with_requester()
            brms = {p.id: p for p in await store.people.all()}
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


jobs_app = typer.Typer(help="Scheduled jobs: nudges, draft reminders, surveys, the digest, value checks.",
                       no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


@jobs_app.command("list")
def jobs_list() -> None:
    """Each job, its schedule, its last and next run."""
    _run(_jobs_list(_settings()))


async def _jobs_list(settings: Settings) -> int:
    async with open_runtime(settings) as runtime:
        rows = await runtime.scheduler().listing()
    for name, schedule, last, upcoming in rows:
        shown_last = last.isoformat(timespec="minutes") if last else "never"
        shown_next = upcoming.astimezone(last.tzinfo if last else None).isoformat(timespec="minutes") if upcoming \
            else "not scheduled"
        typer.echo(f"{name}: {schedule}; last run {shown_last}; next run {shown_next}")
    return 0


@jobs_app.command("run")
def jobs_run(
    name: Annotated[str, typer.Argument(help="a job of `brm-bot jobs list`, e.g. nudges or digest")],
) -> None:
    """Run a job now, whatever its period claims say, and deliver what it queued before exiting."""
    _run(_jobs_run(_settings(), name))


async def _jobs_run(settings: Settings, name: str) -> int:
    import aiohttp

    async with open_runtime(settings) as runtime, aiohttp.ClientSession() as http:
        scheduler = runtime.scheduler()
        if name not in scheduler.jobs:
            raise StartupError(f"no job named {name!r}; the jobs are {', '.join(sorted(scheduler.jobs))}")
        await _register_senders(settings, runtime, http)
        queued = await scheduler.run_now(name)
        sent = await runtime.worker.drain()
    typer.echo(f"{name}: queued {queued} message(s), sent {sent} now (the rest wait in the outbox: brm-bot outbox)")
    return 0


async def _register_senders(settings: Settings, runtime: Any, http: Any) -> None:
    if settings.slack_enabled:
        from bot.platforms.slack import build_slack

        runtime.worker.register(build_slack(settings, runtime, http))
    if settings.teams_enabled:
        from bot.platforms.teams import build_teams

        runtime.worker.register(build_teams(settings, runtime, http))


@app.command("outbox")
def outbox() -> None:
    """Messages the bot starts: counts by state, what waits and why, the last failures."""
    _run(_outbox(_settings()))


def _addressee(message: OutboxMessage) -> str:
    return f"channel {message.channel}" if message.channel else f"person {message.recipient_id}"


async def _outbox(settings: Settings) -> int:
    async with open_runtime(settings) as runtime, runtime.db.transaction() as store:
        counts = await store.outbox.counts()
        waiting = await store.outbox.waiting()
        failures = await store.outbox.failures()
    typer.echo("by state: " + (", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "empty"))
    if waiting:
        typer.echo("waiting:")
        for m in waiting:
            typer.echo(f"  #{m.id} {m.kind} to {_addressee(m)}: {m.status}, {m.held_reason}; "
                       f"due {m.next_attempt_at.isoformat(timespec='minutes')}")
    if failures:
        typer.echo("last failures:")
        for m in failures:
            typer.echo(f"  #{m.id} {m.kind} to {_addressee(m)}: {m.status} after {m.attempts} "
                       f"attempt(s): {m.last_error}")
    return 0


people_app = typer.Typer(help="The people of the organisation: import from CSV, list.", no_args_is_help=True)
partners_app = typer.Typer(help="The business partners: import from CSV, list.", no_args_is_help=True)
app.add_typer(people_app, name="people")
app.add_typer(partners_app, name="partners")

FileArgument = Annotated[Path, typer.Argument(help="The CSV file.", show_default=False)]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")]


@people_app.command("import")
def people_import(file: FileArgument, dry_run: DryRun = False) -> None:
    """Load people from a CSV file with the header name,email,role,time_zone,partner."""
    settings = _settings()
    _run(_import(settings, "people", file, _read(file), dry_run))


@partners_app.command("import")
def partners_import(file: FileArgument, dry_run: DryRun = False) -> None:
    """Load business partners from a CSV file (header partner,executive_email,brm_email,cadence_days,maturity)."""
    settings = _settings()
    _run(_import(settings, "partners", file, _read(file), dry_run))


def _read(file: Path) -> str:
    try:
        return file.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(f"{file}: cannot read it ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise _fail(f"{file}: cannot read it (not UTF-8 text; save it as CSV UTF-8)") from None


async def _import(settings: Settings, kind: str, file: Path, text: str, dry_run: bool) -> int:
    from storage import orgfile

    try:
        people = orgfile.read_people(text) if kind == "people" else []
        partners = orgfile.read_partners(text) if kind == "partners" else []
    except orgfile.FileProblems as exc:
        for problem in exc.problems:
            typer.echo(f"brm-bot: {file}: {problem}", err=True)
        typer.echo(f"brm-bot: {file}: nothing was imported; fix the lines above and run it again.", err=True)
        return 1
    async with open_runtime(settings) as runtime:
        if kind == "people":
            changes = await orgfile.apply_people(
                runtime.db, people, default_time_zone=settings.timezone, now=utcnow(), dry_run=dry_run
            )
        else:
            changes = await orgfile.apply_partners(
                runtime.db, partners, default_time_zone=settings.timezone, now=utcnow(), dry_run=dry_run
            )
    rows = len(people) + len(partners)
    for change in changes:
        typer.echo(change)
    if not changes:
        typer.echo(f"{file}: {rows} rows read, {orgfile.NOTHING_CHANGED}.")
    elif dry_run:
        typer.echo(f"{file}: {rows} rows read, {len(changes)} changes (dry run: nothing was written).")
    else:
        typer.echo(f"{file}: {rows} rows read, {len(changes)} changes written.")
    return 0


@people_app.command("list")
def people_list() -> None:
    """Print every person: email, name, role, time zone, business partner."""
    settings = _settings()
    _run(_list(settings, "people"))


@partners_app.command("list")
def partners_list() -> None:
    """Print every business partner: name, maturity, primary BRM, cadence, executive."""
    settings = _settings()
    _run(_list(settings, "partners"))


async def _list(settings: Settings, kind: str) -> int:
    async with open_runtime(settings) as runtime, runtime.db.transaction() as store:
        people = await store.people.all()
        partners = await store.partners.all()
        primaries = {p.id: await store.directory.relationships(p.id) for p in partners if p.id is not None}
    by_id = {p.id: p for p in people}
    partner_names = {p.id: p.name for p in partners}
    if kind == "people":
        table = [("email", "name", "role", "time_zone", "partner")]
        for person in sorted(people, key=lambda p: (p.email or "", p.id or 0)):
            partner_name = partner_names.get(person.partner_id, "") if person.partner_id else ""
            table.append((person.email or "-", person.name, person.role, person.time_zone, partner_name))
    else:
        table = [("partner", "maturity", "brm_email", "cadence_days", "executive_email")]
        for partner in partners:
            primary = next((r for r in primaries.get(partner.id or 0, []) if r.is_primary), None)
            brm = by_id.get(primary.brm_id) if primary else None
            executive = by_id.get(partner.executive_id) if partner.executive_id else None
            table.append(
                (
                    partner.name,
                    partner.maturity,
                    (brm.email or brm.name) if brm else "-",
                    str(primary.cadence_days) if primary else "-",
                    (executive.email or executive.name) if executive else (partner.executive or "-"),
                )
            )
    if len(table) == 1:
        typer.echo(f"No {kind} loaded yet: brm-bot {kind} import FILE.csv")
        return 0
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


from bot import people_cli, surveys_cli  # noqa: E402
from bot.digest_cli import app as digest_app  # noqa: E402
from bot.slack_cli import app as slack_app  # noqa: E402 - registered after the core commands
from bot.teams_cli import app as teams_app  # noqa: E402

people_app.command("forget")(people_cli.forget)
app.add_typer(surveys_cli.app, name="surveys")
app.add_typer(digest_app, name="digest")
app.add_typer(slack_app, name="slack")
app.add_typer(teams_app, name="teams")


def main() -> None:
    app()
