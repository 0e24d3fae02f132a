"""A fixed pulse survey data set on top of the demo organisation, written straight into the tables.

Three monthly runs of ``partner-pulse`` (September, October, November 2026; all closed by the
test clock's 23 November). November, per partner:

| partner | invited | answered | satisfaction | NPS | role | free answers |
|---|---|---|---|---|---|---|
| Finance | 6 | 5 | 2,3,3,4,3 → 3.0 (Oct 4.0, Sep 4.2) | 10,9,9,6,3 → +20 | order taker 3, trusted advisor 2 | 3 |
| Sales & Marketing | 5 | 2 (hidden) | 1,2 | 2,4 | order taker 2 | 1 |
| Operations | 5 | 4 | 5,4,5,4 → 4.5 (Oct 4.3, Sep 4.0) | 9,9,10,8 → +75 | strategic partner 4 | 2 (hidden) |
| People & Culture | 3 | 1 (hidden) | 5 | 10 | trusted advisor 1 | 1 |

Overall in November: 12 of 19 answered; satisfaction 41/12 → 3.4; NPS (7 - 4) / 12 → +25. The
hidden groups hold 3 answers of each question together, so no shown group is hidden with them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from storage.db import Database
from storage.models import Person, Role, Survey, SurveyAnswer, SurveyInvitation, SurveyRun
from storage.store import Store

DEFINITION = {
    "name": "partner-pulse",
    "title": "Partner pulse",
    "anonymous": True,
    "min_group": 3,
    "questions": [
        {"id": "satisfaction", "type": "rating", "text": "How satisfied are you with IT's services?"},
        {"id": "role", "type": "choice", "text": "How would you describe IT's role for your area?",
         "options": ["order taker", "trusted advisor", "strategic partner"]},
        {"id": "recommend", "type": "nps", "text": "How likely are you to recommend IT's services?"},
        {"id": "better", "type": "text", "text": "One thing IT should do differently", "required": False},
    ],
}

# partner name -> (invited, [(satisfaction, role, recommend, better), ...]) per period
Response = tuple[int, str | None, int | None, str | None]
RUNS: dict[str, dict[str, tuple[int, list[Response]]]] = {
    "2026-09": {
        "Finance": (6, [(4, "order taker", 8, None)] * 4 + [(5, "trusted advisor", 8, None)]),
        "Operations": (5, [(4, "strategic partner", 9, None)] * 3),
    },
    "2026-10": {
        "Finance": (6, [(4, "order taker", 8, None)] * 5),
        "Operations": (5, [(4, "strategic partner", 9, None), (4, "strategic partner", 9, None),
                           (5, "strategic partner", 9, None)]),
    },
    "2026-11": {
        "Finance": (6, [(2, "order taker", 10, "Answer tickets sooner"), (3, "order taker", 9, "Faster laptops"),
                        (3, "trusted advisor", 9, "More updates on projects"), (4, "trusted advisor", 6, None),
                        (3, "order taker", 3, None)]),
        "Sales & Marketing": (5, [(1, "order taker", 2, "Nothing works"), (2, "order taker", 4, None)]),
        "Operations": (5, [(5, "strategic partner", 9, "Keep it up"), (4, "strategic partner", 9, None),
                           (5, "strategic partner", 10, "More workshops"), (4, "strategic partner", 8, None)]),
        "People & Culture": (3, [(5, "trusted advisor", 10, "Great team")]),
    },
}
OPENS = {"2026-09": datetime(2026, 9, 7, 9, tzinfo=UTC), "2026-10": datetime(2026, 10, 5, 9, tzinfo=UTC),
         "2026-11": datetime(2026, 11, 2, 9, tzinfo=UTC)}


@dataclass
class PulseData:
    survey_id: int
    runs: dict[str, int]  # period -> run id
    partners: dict[str, int]  # name -> id
    invited: dict[tuple[str, str], list[int]]  # (period, partner) -> person ids


async def _people_of(store: Store, partner_id: int, partner: str, count: int, now: datetime) -> list[int]:
    """``count`` people of the partner: the demo's own first, then new ones."""
    ids = [p.id for p in await store.people.all() if p.partner_id == partner_id and p.id is not None]
    n = 0
    while len(ids) < count:
        n += 1
        slug = partner.split(" ")[0].casefold()
        person = Person(name=f"{partner} person {n}", email=f"{slug}{n}@example.com", role=Role.REQUESTER,
                        partner_id=partner_id, time_zone="UTC", created_at=now)
        await store.add(person)
        assert person.id is not None
        ids.append(person.id)
    return ids[:count]


async def load_pulse(db: Database, *, now: datetime, runs: dict[str, dict[str, tuple[int, list[Response]]]] = RUNS,
                     definition: dict[str, object] | None = None) -> PulseData:
    """Write the survey, its runs, invitations and answers (the demo organisation must be loaded)."""
    definition = definition or DEFINITION
    async with db.transaction() as store:
        partners = {p.name: p.id for p in await store.partners.all() if p.id is not None}
        survey = Survey(name=str(definition["name"]), title=str(definition["title"]), definition=definition,
                        fingerprint="f" * 64, created_at=now, updated_at=now)
        await store.add(survey)
        assert survey.id is not None
        data = PulseData(survey.id, {}, partners, {})
        for period, by_partner in runs.items():
            opens = OPENS[period]
            run = SurveyRun(survey_id=survey.id, period=period, definition=definition, opens_at=opens,
                            closes_at=opens + timedelta(days=5),
                            closed_at=opens + timedelta(days=5) if opens + timedelta(days=5) <= now else None)
            await store.add(run)
            assert run.id is not None
            data.runs[period] = run.id
            for partner, (invited, responses) in by_partner.items():
                pid = partners[partner]
                people = await _people_of(store, pid, partner, invited, now)
                data.invited[(period, partner)] = people
                for person_id in people:
                    await store.add(SurveyInvitation(run_id=run.id, person_id=person_id, partner_id=pid,
                                                     invited_at=opens))
                for n, (satisfaction, role, recommend, better) in enumerate(responses):
                    response = f"{period}-{pid}-{n:03d}"
                    person_id = None if definition.get("anonymous", True) else people[n]
                    answers = [("satisfaction", "rating", satisfaction, None, None),
                               ("role", "choice", None, role, None), ("recommend", "nps", recommend, None, None),
                               ("better", "text", None, None, better)]
                    for qid, kind, value, choice, text in answers:
                        if value is None and choice is None and text is None:
                            continue
                        await store.add(SurveyAnswer(run_id=run.id, partner_id=pid, question_id=qid, kind=kind,
                                                     response_id=response, value=value, choice=choice, text=text,
                                                     person_id=person_id))
    return data
