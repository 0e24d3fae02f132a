"""The survey jobs: ``survey-invitations`` and ``survey-reminders``.

Each survey has its own schedule (cron fields) in each recipient's time zone, so these jobs
tick every few minutes and look, for each person in a survey's audience, whether the
survey's schedule has fired in that person's zone (since the survey was applied, within its
window). A run is the survey plus the local date it fired (``2026-12-07``): the same run in
every zone, started once by whichever process gets there first (unique ``(survey, period)``),
with a copy of the definition it started with. The invitation is written in the same
transaction as its outbox message, unique per (run, person), so a recipient is invited once
per run however many ticks, replicas or restarts see it.

``survey-reminders`` first closes the runs whose window ended (who answered them is then
forgotten), then reminds, once, the invited who have answered nothing after
``reminder_after_days``. Both go through the outbox with a priority above 0: inside the
delivery hours and counted in the weekly budget, after nudges.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bot.delivery import zone
from bot.jobs import Every, Job, last_fire
from conversations import codec
from conversations.flows.surveys import invitation
from conversations.surveys import SurveyDefinition
from storage.models import BusinessPartner, Person, Role, Survey, SurveyRun
from storage.store import Store

SURVEY_PRIORITY = 1  # below nudges (2): a pulse can wait a day, a BRM's nudge should not
INVITATIONS_EVERY = Every(15, "each survey's own schedule, in each recipient's time zone")
REMINDERS_EVERY = Every(60, "after each survey's reminder_after_days; closes runs whose window ended")


class Audiences:
    """Who is in which survey's audience, from the partners read once."""

    def __init__(self, partners: list[BusinessPartner]) -> None:
        self._by_name = {p.name.casefold(): p.id for p in partners if p.id is not None}
        self._executive: dict[int, list[int]] = {}
        for p in partners:
            if p.executive_id is not None and p.id is not None:
                self._executive.setdefault(p.executive_id, []).append(p.id)

    @classmethod
    async def load(cls, store: Store) -> Audiences:
        return cls(await store.partners.all())

    def partner_of(self, definition: SurveyDefinition, person: Person) -> tuple[bool, int | None]:
        """(whether ``person`` is in the survey's audience, the partner their answers count for)."""
        assert person.id is not None
        leads = self._executive.get(person.id, [])
        own = person.partner_id if person.partner_id is not None else (leads[0] if leads else None)
        audience = definition.audience
        if audience.kind == "executives":
            return bool(leads), leads[0] if leads else None
        if audience.kind == "contacts":
            return person.partner_id is not None and person.role == Role.REQUESTER.value, person.partner_id
        if audience.kind == "partners":
            wanted = {self._by_name.get(n.casefold()) for n in audience.names} - {None}
            mine = [pid for pid in ([person.partner_id] if person.partner_id is not None else []) + leads
                    if pid in wanted]
            return bool(mine), mine[0] if mine else None
        return (person.email or "").lower() in audience.names, own


async def _active(store: Store) -> list[tuple[Survey, SurveyDefinition]]:
    return [(s, SurveyDefinition.from_json(s.definition)) for s in await store.surveys.active()]


async def _due(store: Store, now: datetime) -> list[Person]:
    """Everyone in an active survey's audience whose schedule has fired in their zone, and who
    has not been invited to that run yet: what a tick has to do (usually no one)."""
    surveys = await _active(store)
    if not surveys:
        return []
    audiences = await Audiences.load(store)
    fired: dict[tuple[int, str], str | None] = {}  # (survey, zone) -> the run's period, if it fired
    invited: dict[str, set[int]] = {}  # period of a survey's run -> who was invited
    out = []
    for person in await store.people.all():
        tz = person.time_zone or "UTC"
        for survey, definition in surveys:
            assert survey.id is not None and person.id is not None
            if not audiences.partner_of(definition, person)[0]:
                continue
            if (survey.id, tz) not in fired:
                moment = _fired(survey, definition, tz, now)
                fired[survey.id, tz] = moment.astimezone(zone(tz)).date().isoformat() if moment else None
            period = fired[survey.id, tz]
            if period is None:
                continue
            if f"{survey.id} {period}" not in invited:
                run = await store.surveys.run_of(survey_id=survey.id, period=period)
                invited[f"{survey.id} {period}"] = await store.surveys.invited(run.id) if run and run.id else set()
            if person.id not in invited[f"{survey.id} {period}"]:
                out.append(person)
                break
    return out


def _fired(survey: Survey, definition: SurveyDefinition, tz: str, now: datetime) -> datetime | None:
    """When the survey's schedule last fired in ``tz``: since it was applied, within its window."""
    window = timedelta(days=definition.window_days)
    return last_fire(definition.trigger(tz), now, max(now - window, survey.created_at))


class Invitations:
    """The ``survey-invitations`` builder, reading once per run what every recipient shares.

    Why: the Scheduler builds one person per transaction (a crash keeps what was queued), and
    re-reading the partners and surveys, re-computing each schedule and re-rendering the same
    invitation for each of 10,000 recipients cost about 5 ms a person on PostgreSQL. A run
    shares its ``now``: the surveys (checked each person, one cheap read: a changed definition
    is seen at once), the audiences, when each schedule fired in each zone, the runs and the
    invitation of each (run, zone) are kept for that ``now`` only. A run is kept once it is seen
    committed (found, not started, by this transaction), so a rolled-back start is never kept.
    """

    def __init__(self) -> None:
        self._key: tuple[object, ...] | None = None
        self._context: _Context | None = None

    async def _for(self, store: Store, now: datetime) -> _Context:
        surveys = await store.surveys.active()
        key = (now, *((s.id, s.fingerprint, s.updated_at) for s in surveys))
        if self._context is None or key != self._key:
            pairs = [(s, SurveyDefinition.from_json(s.definition)) for s in surveys]
            self._key, self._context = key, _Context(pairs, await Audiences.load(store) if pairs else None)
        return self._context

    async def build(self, store: Store, person: Person, now: datetime, period: str) -> int:
        """Invite ``person`` to each survey whose schedule fired in their zone and whose run is open."""
        assert person.id is not None
        context = await self._for(store, now)
        if context.audiences is None:
            return 0
        tz = person.time_zone or "UTC"
        added = 0
        for survey, definition in context.surveys:
            assert survey.id is not None
            member, partner_id = context.audiences.partner_of(definition, person)
            if not member:
                continue
            if (survey.id, tz) not in context.fired:
                context.fired[survey.id, tz] = _fired(survey, definition, tz, now)
            fired = context.fired[survey.id, tz]
            if fired is None:
                continue
            run_period = fired.astimezone(zone(tz)).date().isoformat()
            run = context.runs.get((survey.id, run_period))
            if run is None:
                run = await store.surveys.run_of(survey_id=survey.id, period=run_period)
                if run is not None:
                    context.runs[survey.id, run_period] = run
                else:
                    window = timedelta(days=definition.window_days)
                    run = await store.surveys.start_run(survey_id=survey.id, period=run_period,
                                                        definition=survey.definition, opens_at=fired,
                                                        closes_at=fired + window)
            assert run.id is not None
            if run.closed_at is not None or now >= run.closes_at:
                continue
            if not await store.surveys.invite(run_id=run.id, person_id=person.id, partner_id=partner_id, now=now):
                continue
            if (run.id, tz) not in context.payloads:
                context.payloads[run.id, tz] = codec.reply_to_json(invitation(run, zone(tz)))
            added += int(await store.outbox.enqueue(
                kind="survey-invitation", subject=f"survey-run:{run.id}", period=run.period, recipient_id=person.id,
                payload=context.payloads[run.id, tz], now=now, priority=SURVEY_PRIORITY,
            ))
        return added


@dataclass
class _Context:
    """What one run of ``survey-invitations`` knows (see :class:`Invitations`)."""

    surveys: list[tuple[Survey, SurveyDefinition]]
    audiences: Audiences | None
    fired: dict[tuple[int, str], datetime | None] = field(default_factory=dict)
    runs: dict[tuple[int, str], SurveyRun] = field(default_factory=dict)
    payloads: dict[tuple[int, str], dict[str, Any]] = field(default_factory=dict)


async def _to_remind(store: Store, now: datetime) -> list[Person]:
    """Everyone due a reminder: invited to an open run ``reminder_after_days`` ago or more, with
    nothing answered and no reminder yet (a query per open run: usually one or two)."""
    due: dict[int, Person] = {}
    for run in await store.surveys.runs_open(now=now):
        days = SurveyDefinition.from_json(run.definition).reminder_after_days
        if days is None or run.id is None:
            continue
        for person in await store.surveys.to_remind(run_id=run.id, invited_before=now - timedelta(days=days)):
            due.setdefault(person.id or 0, person)
    return list(due.values())


async def build_reminders(store: Store, person: Person, now: datetime, period: str) -> int:
    """One reminder per open run this person has not answered, ``reminder_after_days`` after the invitation."""
    assert person.id is not None
    added = 0
    for due in await store.surveys.unanswered(person_id=person.id, now=now):
        definition = SurveyDefinition.from_json(due.definition)
        if definition.reminder_after_days is None:
            continue
        if now < due.invitation.invited_at + timedelta(days=definition.reminder_after_days):
            continue
        run = await store.surveys.run(due.invitation.run_id)
        if run is None or run.id is None:
            continue
        if not await store.surveys.reminded(run_id=run.id, person_id=person.id, now=now):
            continue
        reply = invitation(run, zone(person.time_zone or "UTC"), reminder=True)
        added += int(await store.outbox.enqueue(
            kind="survey-reminder", subject=f"survey-run:{run.id}", period=run.period, recipient_id=person.id,
            payload=codec.reply_to_json(reply), now=now, priority=SURVEY_PRIORITY,
        ))
    return added


async def close_runs(store: Store, now: datetime) -> int:
    """Close the runs whose window ended; their respondents (who answered) are deleted."""
    return await store.surveys.close_due(now=now)


def survey_jobs() -> list[Job]:
    return [
        Job("survey-invitations", INVITATIONS_EVERY, _due, Invitations().build),
        Job("survey-reminders", REMINDERS_EVERY, _to_remind, build_reminders, prepare=close_runs),
    ]
