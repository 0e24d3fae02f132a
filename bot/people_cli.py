"""``brm-bot people ...``: privacy requests about one person."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from bot.settings import Settings

app = typer.Typer(help="People: privacy requests.", no_args_is_help=True)


@app.command("forget")
def forget(
    email: Annotated[str, typer.Argument(help="The email of the person to forget.")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask (for scripts).")] = False,
) -> None:
    """Erase a person's personal data; their requests stay, shown as from a "former employee".

    Goes: name, email, platform accounts, conversations in progress, messages waiting for
    them, and every mention of their name, email or account ids. Running it again changes
    nothing.
    """
    from bot.cli import _confirm_or_stop, _fail, _run, _settings

    address = email.strip()
    if "@" not in address or len(address) > 320:
        raise _fail(f"EMAIL: {email!r} is not an email address")
    settings = _settings()
    if not yes:
        _confirm_or_stop(
            f"Forget {address}? Their name, email, platform accounts and conversations are erased for good; "
            "their requests stay, shown as from a former employee."
        )
    _run(_forget(settings, address))


async def _forget(settings: Settings, email: str) -> int:
    from bot.runtime import open_runtime, utcnow

    async with open_runtime(settings) as runtime:
        async with runtime.db.transaction() as store:
            done = await store.privacy.forget(email=email, now=utcnow())
    if not done.found:
        typer.echo(f"No one has the email {email}: nothing to forget (already forgotten, or never known).")
        return 0
    mentions = sum(done.mentions.values())
    typer.echo(
        f"Forgot {email}: {done.identities} platform accounts, {done.states} conversations, "
        f"{done.outbox} queued messages and {done.references} conversation references removed; "
        f"{mentions} other records no longer name them. Their requests stay, from a former employee."
    )
    return 0
