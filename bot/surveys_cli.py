"""``brm-bot surveys ...``: define pulse surveys from YAML files and list them.

``apply FILE.yaml`` checks the whole file first (every problem with its line and field, and
nothing stored when there is one); an unchanged file changes nothing, a changed one is used
by future runs only (each run keeps the definition it started with). ``apply --default``
applies the ``partner-pulse`` survey that ships with the bot. ``results`` lives in
``bot/survey_results_cli.py``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bot.survey_results_cli import results
from conversations.surveys import DefinitionError, Problem, SurveyDefinition, default_definition_text, parse_definition

if TYPE_CHECKING:
    from bot.settings import Settings
    from storage.store import Store

app = typer.Typer(help="Pulse surveys: define, list, see results.", no_args_is_help=True)
app.command("results")(results)


@app.command("apply")
def apply(
    file: Annotated[Path | None, typer.Argument(help="The survey definition (YAML).", show_default=False)] = None,
    default: Annotated[bool, typer.Option("--default", help="Apply the partner-pulse survey that ships with the bot.")]
    = False,
) -> None:
    """Create or update a survey from its YAML definition (nothing changes if the file did not)."""
    from bot.cli import _fail, _run, _settings

    if (file is None) == (not default):
        raise _fail("give a FILE.yaml or --default (one of the two)")
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise _fail(f"{file}: cannot read it ({exc.__class__.__name__})") from None
        source = str(file)
    else:
        text, source = default_definition_text(), "partner-pulse (shipped)"
    try:
        definition = parse_definition(text, source=source)
    except DefinitionError as exc:
        raise _refused(source, exc) from None
    _run(_apply(_settings(), definition, source))


def _refused(source: str, error: DefinitionError) -> typer.Exit:
    typer.echo(f"brm-bot: {source} is refused; nothing was applied:", err=True)
    for problem in error.problems:
        typer.echo(f"  {problem}", err=True)
    return typer.Exit(2)


async def unknown_names(store: Store, definition: SurveyDefinition) -> list[Problem]:
    """The partners or people the audience names that this organisation does not have."""
    audience = definition.audience
    line = definition.lines.get("audience", 0)
    if audience.kind == "partners":
        known = {p.name.casefold() for p in await store.partners.all()}
        return [Problem(line, "audience.partners", f"no business partner is named {n!r}")
                for n in audience.names if n.casefold() not in known]
    if audience.kind == "people":
        return [Problem(line, "audience.people", f"no one has the email {n}")
                for n in audience.names if await store.people.by_email(n) is None]
    return []


async def _apply(settings: Settings, definition: SurveyDefinition, source: str) -> int:
    from bot.runtime import open_runtime, utcnow

    async with open_runtime(settings) as runtime, runtime.db.transaction() as store:
        problems = await unknown_names(store, definition)
        if problems:
            raise _refused(source, DefinitionError(problems))
        outcome = await store.surveys.apply(name=definition.name, title=definition.title,
                                            definition=definition.to_json(), fingerprint=definition.fingerprint(),
                                            now=utcnow())
    if outcome == "unchanged":
        typer.echo(f"{definition.name}: nothing changed.")
    elif outcome == "created":
        typer.echo(f"{definition.name}: created “{definition.title}”, {len(definition.questions)} questions, "
                   f"for {definition.audience}, on {definition.schedule_text()} in each recipient's time zone.")
    else:
        typer.echo(f"{definition.name}: updated. Runs from now on use the new definition; runs so far keep theirs.")
    return 0


@app.command("list")
def list_surveys() -> None:
    """Each survey: its audience and schedule, next run, runs so far, the open run and its answers."""
    from bot.cli import _run, _settings

    _run(_list(_settings()))


async def _list(settings: Settings) -> int:
    from bot.runtime import open_runtime, utcnow
    from bot.survey_jobs import Audiences

    now = utcnow()
    async with open_runtime(settings) as runtime, runtime.db.transaction() as store:
        surveys = await store.surveys.all()
        counts = await store.surveys.run_counts()
        open_runs = await store.surveys.open_runs(now=now)
        audiences = await Audiences.load(store)
        people = await store.people.all() if surveys else []
    if not surveys:
        typer.echo("No surveys yet. Apply one: brm-bot surveys apply --default (or FILE.yaml).")
        return 0
    for survey in surveys:
        definition = SurveyDefinition.from_json(survey.definition)
        zones = sorted({p.time_zone or settings.timezone for p in people if audiences.partner_of(definition, p)[0]})
        upcoming = [definition.trigger(tz).get_next_fire_time(None, now) for tz in zones or [settings.timezone]]
        nearest: datetime | None = min((u for u in upcoming if u is not None), default=None)
        shown_next = nearest.isoformat(timespec="minutes") if nearest is not None and survey.active else "none"
        typer.echo(f"{survey.name}: “{survey.title}”")
        typer.echo(f"  audience {definition.audience}; schedule {definition.schedule_text()} in each recipient's "
                   f"time zone; open {definition.window_days} days"
                   + ("; anonymous" if definition.anonymous else ""))
        typer.echo(f"  next run {shown_next}; runs so far {counts.get(survey.id or 0, 0)}")
        for opened in (o for o in open_runs if o.run.survey_id == survey.id):
            typer.echo(f"  open run {opened.run.period} until {opened.run.closes_at.isoformat(timespec='minutes')}: "
                       f"{opened.responses} of {opened.invited} invited have answered")
    return 0
