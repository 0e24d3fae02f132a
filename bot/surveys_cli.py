"""``brm-bot surveys ...``: pulse surveys.

This branch holds only ``results`` (``bot/survey_results_cli.py``); ``apply`` and ``list``
join it from the surveys branch.
"""

from __future__ import annotations

import typer

from bot.survey_results_cli import results

app = typer.Typer(help="Pulse surveys: results.", no_args_is_help=True)
app.command("results")(results)
