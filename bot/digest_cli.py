"""``brm-bot digest preview``: the weekly digest of one leader, printed as the terminal shows it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from bot.settings import Settings

app = typer.Typer(help="The weekly leader digest.", no_args_is_help=True)


@app.command("preview")
def preview(
    leader: Annotated[str, typer.Option("--leader", help="A leader's email (an admin's, or a BRM's for their scope).")],
    week: Annotated[str | None, typer.Option("--week", help="The ISO week reported on, like 2026-W47. "
                                                             "Default: the last complete week.")] = None,
    output: Annotated[str, typer.Option("--format", help="text (the terminal), slack (Block Kit JSON) or "
                                                         "teams (Adaptive Card JSON).")] = "text",
) -> None:
    """Print the digest ``leader`` gets (or got) for a week; nothing is sent or written."""
    from bot.cli import _fail, _run, _settings
    from conversations.digest import Week

    address = leader.strip()
    if "@" not in address or len(address) > 320:
        raise _fail(f"--leader: {leader!r} is not an email address")
    try:
        chosen = Week.parse(week) if week is not None else None
    except ValueError as exc:
        raise _fail(f"--week: {exc}") from None
    if output not in ("text", "slack", "teams"):
        raise _fail(f"--format: {output!r} is not text, slack or teams")
    _run(_preview(_settings(), address, chosen, output))


async def _preview(settings: Settings, email: str, week: object, output: str) -> int:
    import json

    from bot.delivery import zone
    from bot.runtime import StartupError, open_runtime, utcnow
    from conversations.digest import Week, gather, render, scope_for
    from storage.models import Role

    async with open_runtime(settings) as runtime, runtime.db.transaction() as store:
        person = await store.people.by_email(email)
        if person is None:
            raise StartupError(f"--leader: no one has the email {email} (brm-bot people list)")
        scope = scope_for(person)
        if scope is None:
            raise StartupError(f"--leader: {email} is a {person.role}; the digest is for leaders (and BRMs' scope)")
        now = utcnow()
        tz = zone(person.time_zone, settings.timezone)
        chosen = week if isinstance(week, Week) else Week.last_complete(now, tz)
        whose = "Everyone's demand" if person.role in (Role.LEADER, Role.ADMIN) else f"{person.name}'s partners"
        digest = await gather(store, scope, week=chosen, tz=tz, now=now, whose=whose)
    reply = render(digest, tz=tz, now=now)
    if output == "slack":
        from adapters.slack.render import render as slack_render

        typer.echo(json.dumps({"blocks": slack_render(reply)}, ensure_ascii=False, indent=2))
    elif output == "teams":
        from adapters.teams.render import render as teams_render

        typer.echo(json.dumps(teams_render(reply), ensure_ascii=False, indent=2))
    else:
        from adapters.console.render import render as console_render

        typer.echo(console_render(reply))
    return 0
