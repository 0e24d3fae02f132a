"""``brm-bot teams ...``: the Teams app package and who the bot cannot reach yet."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from conversations.catalog import Catalog
from conversations.flows import default_flows

if TYPE_CHECKING:
    from bot.settings import Settings

app = typer.Typer(help="Microsoft Teams: app package and reachability.", no_args_is_help=True)


OPTIONS = {
    "name": "--name",
    "developer": "--developer",
    "website_url": "--website-url",
    "privacy_url": "--privacy-url",
    "terms_url": "--terms-url",
    "version": "--version",
    "out": "--out",
}


@app.command("package")
def package(
    out: Annotated[Path, typer.Option("--out", help="Where to write the zip.")] = Path("brm-bot-teams.zip"),
    name: Annotated[str, typer.Option("--name", help="The app's name in Teams (up to 30 characters).")] = "BRM Bot",
    developer: Annotated[
        str, typer.Option("--developer", help="Who publishes the app: your organisation (up to 32 characters).")
    ] = "brm-bot",
    website_url: Annotated[
        str, typer.Option("--website-url", help="Your organisation's page about the bot (https).")
    ] = "https://example.com/brm-bot",
    privacy_url: Annotated[str | None, typer.Option("--privacy-url", help="Default: <website-url>/privacy")] = None,
    terms_url: Annotated[str | None, typer.Option("--terms-url", help="Default: <website-url>/terms")] = None,
    version: Annotated[
        str, typer.Option("--version", help="The app version, x.y.z; raise it for every upload.")
    ] = "1.0.0",
    force: Annotated[bool, typer.Option("--force", help="Replace the file at --out if there is one.")] = False,
) -> None:
    """Write the Teams app package (manifest and icons) for upload in Teams."""
    from adapters.teams import PackageError, build_package
    from bot.cli import _fail, _settings

    settings = _settings()
    try:
        written = build_package(
            out,
            app_id=settings.microsoft_app_id,
            catalog=Catalog(default_flows()),
            replace=force,
            short_name=name,
            developer=developer,
            website_url=website_url,
            privacy_url=privacy_url,
            terms_url=terms_url,
            version=version,
        )
    except PackageError as exc:
        option = OPTIONS.get(exc.field or "")
        raise _fail(f"{option}: {exc}" if option else str(exc)) from None
    except OSError as exc:
        raise _fail(f"--out: cannot write {out} ({exc.strerror or type(exc).__name__})") from None
    typer.echo(f"Wrote {written}: upload it in Teams (Apps > Manage your apps > Upload an app).")


@app.command("unreachable")
def unreachable() -> None:
    """People the bot cannot message privately in Teams, and why."""
    from bot.cli import _run, _settings

    settings = _settings()
    _run(_unreachable(settings))


async def _unreachable(settings: Settings) -> int:
    from adapters.teams import unreachable as find_unreachable
    from bot.runtime import open_runtime

    async with open_runtime(settings) as runtime:
        people = await find_unreachable(runtime.db)
    if not people:
        typer.echo("Everyone can be reached in Teams.")
        return 0
    typer.echo(f"{len(people)} people cannot be messaged privately in Teams:")
    for person in people:
        elsewhere = f" (reachable on {', '.join(person.other_platforms)})" if person.other_platforms else ""
        typer.echo(f"  {person.name} <{person.email or 'no email'}>: {person.reason}{elsewhere}")
    typer.echo(
        "Fix: install the app for them (Teams admin centre > setup policies, or ask them to open a chat "
        "with the bot once). Until then, their notifications stay in the outbox as unreachable."
    )
    return 0
