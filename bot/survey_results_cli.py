"""``brm-bot surveys results NAME [--run PERIOD] [--format table|csv|json]``: a run's results.

Per business partner and overall: invited, answered, response rate, the average of each
rating question, the NPS, the distribution of each choice, free answers, and the change
against the previous run. The figures come from :mod:`storage.survey_results`, which never
returns a group under the survey's ``min_group`` (never below 3): such a group reads "fewer
than 3 answers" in the table, the CSV and the JSON alike.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer

from conversations.flows.pulse import percent, signed, trend_text
from storage.models import QuestionKind
from storage.survey_results import Figure, Group, RunResults

if TYPE_CHECKING:
    from bot.settings import Settings

TEXTS_IN_EXPORT = 200  # free answers per partner and question, at most
CSV_FIELDS = ("survey", "period", "group", "invited", "answered", "question", "measure", "option", "value",
              "previous", "change", "note")


class ResultsFormat(StrEnum):
    table = "table"
    csv = "csv"
    json = "json"


def results(
    name: Annotated[str, typer.Argument(metavar="NAME", help="The survey's name, e.g. partner-pulse.")],
    run: Annotated[str | None, typer.Option("--run", help="The run's period (default: the latest run).")] = None,
    format: Annotated[ResultsFormat, typer.Option("--format", help="table, csv or json")] = ResultsFormat.table,
) -> None:
    """A run's results per partner and overall, and the change against the previous run.

    A group with fewer answers than the survey's min_group (never below 3) shows no figures.
    """
    from bot.cli import _run, _settings

    settings = _settings()
    _run(survey_results(settings, name, run, format))


async def survey_results(settings: Settings, name: str, period: str | None, fmt: ResultsFormat) -> int:
    from bot.runtime import open_runtime, utcnow

    now = utcnow()
    async with open_runtime(settings) as runtime, runtime.db.transaction() as store:
        survey = await store.survey_results.survey(name)
        if survey is None or survey.id is None:
            known = ", ".join(s.name for s in await store.survey_results.surveys()) or "none yet"
            typer.echo(f"brm-bot: no survey named {name.strip()!r} (the surveys: {known})", err=True)
            return 1
        runs = await store.survey_results.runs(survey.id)
        if period is not None:
            chosen = next((r for r in runs if r.period == period.strip()), None)
            if chosen is None:
                shown = ", ".join(r.period for r in runs) or "none yet"
                typer.echo(f"brm-bot: {survey.name} has no run {period.strip()!r} (its runs: {shown})", err=True)
                return 1
        else:
            if not runs:
                typer.echo(f"brm-bot: {survey.name} has not run yet: no results", err=True)
                return 1
            chosen = ([r for r in runs if r.opens_at <= now] or runs)[-1]
        found = await store.survey_results.results(survey, chosen, now=now, texts=TEXTS_IN_EXPORT)
    typer.echo(render(found, fmt), nl=False)
    return 0


def render(results: RunResults, fmt: ResultsFormat) -> str:
    """The results as a table, CSV or JSON text (ending with a newline)."""
    if fmt == ResultsFormat.json:
        return json.dumps(as_json(results), ensure_ascii=False, indent=2) + "\n"
    if fmt == ResultsFormat.csv:
        return as_csv(results)
    return as_table(results)


def _groups(results: RunResults) -> list[Group]:
    return [results.overall, *results.partners]


# --- JSON ----------------------------------------------------------------------------------------


def _figure_json(figure: Figure, note: str) -> dict[str, Any]:
    out: dict[str, Any] = {"id": figure.question.id, "type": figure.question.kind, "text": figure.question.text,
                           "answers": figure.answers, "hidden": figure.hidden}
    if figure.hidden:
        out["note"] = note
        return out
    kind = figure.question.kind
    if kind == QuestionKind.RATING:
        out.update(average=figure.average, previous=figure.previous, change=figure.change, trend=list(figure.trend))
    elif kind == QuestionKind.NPS:
        out.update(nps=figure.nps, previous=figure.previous, change=figure.change, trend=list(figure.trend))
    elif kind == QuestionKind.CHOICE:
        out["distribution"] = dict(figure.distribution)
    elif kind == QuestionKind.TEXT:
        out["texts"] = list(figure.texts)
    return out


def _group_json(group: Group, results: RunResults) -> dict[str, Any]:
    note = results.hidden_note
    return {
        "group": group.name,
        "overall": group.overall,
        "invited": group.invited,
        "answered": group.answered,
        "response_rate": None if group.rate is None else round(group.rate, 3),
        "previous_response_rate": None if group.previous_rate is None else round(group.previous_rate, 3),
        "hidden": group.hidden,
        "note": note if group.hidden else None,
        "followed_up_at": _when(group.followed_up_at),
        "questions": [] if group.hidden else [_figure_json(f, note) for f in group.figures],
    }


def _when(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def as_json(results: RunResults) -> dict[str, Any]:
    return {
        "survey": results.survey_name,
        "title": results.title,
        "period": results.period,
        "opens_at": _when(results.opens_at),
        "closes_at": _when(results.closes_at),
        "closed": results.closed,
        "anonymous": results.anonymous,
        "min_group": results.min_group,
        "previous_period": results.previous_period,
        "trend_periods": list(results.trend_periods),
        "groups": [_group_json(g, results) for g in _groups(results)],
    }


# --- CSV -----------------------------------------------------------------------------------------


def _safe(value: object) -> str:
    """Text a spreadsheet shows as text, never runs as a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") and not _number(text) else text


def _number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def as_csv(results: RunResults) -> str:
    """One row per figure: a group's response rate, a question's measure, each choice option, each
    free answer. A hidden group or question is one row with no value and the note."""
    rows: list[dict[str, object]] = []
    note = results.hidden_note
    for group in _groups(results):
        base = {"survey": results.survey_name, "period": results.period, "group": group.name,
                "invited": group.invited, "answered": group.answered}
        if group.hidden:
            rows.append({**base, "measure": "response_rate", "note": note})
            continue
        rate_change = None if group.rate is None or group.previous_rate is None else \
            round(group.rate - group.previous_rate, 3)
        rows.append({**base, "measure": "response_rate", "value": _round(group.rate, 3),
                     "previous": _round(group.previous_rate, 3), "change": rate_change})
        for figure in group.figures:
            row = {**base, "question": figure.question.id}
            kind = figure.question.kind
            measure = {"rating": "average", "nps": "nps", "choice": "count", "text": "answer"}.get(kind, "answers")
            if figure.hidden:
                rows.append({**row, "measure": measure, "note": note})
            elif kind == QuestionKind.RATING:
                rows.append({**row, "measure": measure, "value": figure.average, "previous": figure.previous,
                             "change": figure.change})
            elif kind == QuestionKind.NPS:
                rows.append({**row, "measure": measure, "value": figure.nps, "previous": _whole(figure.previous),
                             "change": _whole(figure.change)})
            elif kind == QuestionKind.CHOICE:
                rows.extend({**row, "measure": measure, "option": option, "value": n}
                            for option, n in figure.distribution)
            elif kind == QuestionKind.TEXT:
                rows.extend({**row, "measure": measure, "value": text} for text in figure.texts)
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _safe(value) for key, value in row.items()})
    return out.getvalue()


def _whole(value: float | None) -> int | None:
    return None if value is None else round(value)


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# --- table ---------------------------------------------------------------------------------------


def _columns(rows: list[list[str]]) -> list[str]:
    """Aligned columns. A row shorter than the header ends with a note that spans the rest."""
    size = len(rows[0])

    def aligned(row: list[str], i: int) -> bool:
        return len(row) == size or i < len(row) - 1

    widths = [max((len(r[i]) for r in rows if i < len(r) and aligned(r, i)), default=0) for i in range(size)]
    return ["  ".join(cell.ljust(widths[i]) if aligned(row, i) else cell for i, cell in enumerate(row)).rstrip()
            for row in rows]


def _measure_cell(figure: Figure | None) -> str:
    if figure is None:
        return ""
    if figure.hidden:
        return "(fewer)"
    value = figure.value
    if value is None:
        return ""
    shown = f"{value:.1f}" if figure.question.kind == QuestionKind.RATING else signed(value)
    if figure.change is not None:
        decimals = 1 if figure.question.kind == QuestionKind.RATING else 0
        shown += f" ({signed(figure.change, decimals=decimals)})"
    return shown


def as_table(results: RunResults) -> str:
    note = results.hidden_note
    state = "closed" if results.closed else "still open"
    anonymity = "anonymous" if results.anonymous else "answers carry names"
    lines = [
        f"{results.title} ({results.survey_name}), run {results.period}: "
        f"{results.opens_at:%d %b %Y} to {results.closes_at:%d %b %Y} UTC, {state}; {anonymity}",
        f"A group with {note} shows no figures. "
        + (f"Changes are against {results.previous_period}." if results.previous_period else
           "No earlier run to compare with."),
        "",
    ]
    measured = [q for q in results.questions if q.measured]
    header = ["group", "invited", "answered", "rate"] + [
        q.id + (" (NPS)" if q.kind == QuestionKind.NPS else " (1-5)") for q in measured]
    rows = [header]
    for group in _groups(results):
        if group.hidden:
            rows.append([group.name, str(group.invited), note])
            continue
        rows.append([group.name, str(group.invited), str(group.answered), percent(group.rate)]
                    + [_measure_cell(group.figure(q.id)) for q in measured])
    lines.extend(_columns(rows))
    ratings = [q for q in measured if q.kind == QuestionKind.RATING]
    trend_rows = [["trend (" + ", ".join(results.trend_periods) + ")"] + [q.id for q in ratings]]
    for group in _groups(results):
        if group.hidden:
            continue
        cells = []
        for q in ratings:
            figure = group.figure(q.id)
            cells.append(trend_text(figure.trend) if figure is not None and not figure.hidden else note)
        trend_rows.append([group.name, *cells])
    if len(results.trend_periods) > 1 and ratings:
        lines.extend(["", *_columns(trend_rows)])
    for question in results.questions:
        if question.kind == QuestionKind.CHOICE:
            lines.extend(["", f"{question.id}: {question.text}"])
            options = list(question.options)
            for group in _groups(results):
                figure = group.figure(question.id)
                for option, _ in figure.distribution if figure is not None else ():
                    if option not in options:
                        options.append(option)
            rows = [["group", *options]]
            for group in _groups(results):
                figure = group.figure(question.id)
                if group.hidden or figure is None or figure.hidden:
                    rows.append([group.name, note])
                    continue
                counts = dict(figure.distribution)
                rows.append([group.name, *(str(counts.get(o, 0)) for o in options)])
            lines.extend(_columns(rows))
        elif question.kind == QuestionKind.TEXT:
            names = "" if not results.anonymous else ", without names"
            lines.extend(["", f"{question.id}: {question.text} (free answers{names})"])
            for group in results.partners:
                figure = group.figure(question.id)
                if group.hidden or figure is None or figure.hidden:
                    lines.append(f"{group.name}: {note}")
                    continue
                lines.append(f"{group.name}:")
                lines.extend(f"  - {text}" for text in figure.texts)
    followed = [g.name for g in results.partners if g.followed_up_at is not None]
    lines.extend(["", "You said, we did: " + (", ".join(followed) if followed else "no follow-up sent yet")])
    return "\n".join(lines) + "\n"
