"""``brm-bot teams ...``: the Teams app package and who the bot cannot reach yet."""

from __future__ import annotations

import typer

app = typer.Typer(help="Microsoft Teams: app package and reachability.", no_args_is_help=True)
