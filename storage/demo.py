"""A small demo organisation, loaded into an empty database by ``brm-bot chat --demo``."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from storage.models import BusinessPartner, Maturity, Person, Relationship, Role, Status
from storage.store import NewRequest, Store

PARTNERS = (
    ("Finance", "Maria Lopez, CFO", Maturity.TRUSTED_ADVISOR),
    ("Sales & Marketing", "Tom Becker, CSO", Maturity.ORDER_TAKER),
    ("Operations", "Grace Kim, COO", Maturity.STRATEGIC_PARTNER),
    ("People & Culture", "Omar Haddad, CHRO", Maturity.AD_HOC),
)
# name, email, role, own partner (index into PARTNERS or None), time zone
PEOPLE = (
    ("Alice Moreno", "alice@example.com", Role.BRM, None, "Europe/Madrid"),
    ("Ben Okafor", "ben@example.com", Role.BRM, None, "Europe/London"),
    ("Priya Raman", "priya@example.com", Role.LEADER, None, "Asia/Kolkata"),
    ("Dana Whitfield", "dana@example.com", Role.REQUESTER, 0, "America/New_York"),
    ("Eli Novak", "eli@example.com", Role.REQUESTER, 1, "Europe/Prague"),
    ("Fatima Zahra", "fatima@example.com", Role.REQUESTER, 2, "Africa/Casablanca"),
    ("Gus Lindqvist", "gus@example.com", Role.REQUESTER, 3, "Europe/Stockholm"),
)
# BRM email -> partner indexes owned, with touchpoint cadence in days
OWNERSHIP = {"alice@example.com": ((0, 14), (3, 30)), "ben@example.com": ((1, 14), (2, 21))}
_FLOW = (
    Status.TRIAGED,
    Status.SHAPING,
    Status.APPROVED,
    Status.IN_DELIVERY,
    Status.DELIVERED,
    Status.VALUE_REALIZED,
)
# title, outcome, category, urgency, requester email, partner index, final status, days ago
REQUESTS = (
    (
        "Automate month-end accruals",
        "Close the books two days faster each month",
        "project",
        "high",
        "dana@example.com",
        0,
        Status.SHAPING,
        40,
    ),
    (
        "Expense report approvals on mobile",
        "Managers approve expenses within a day",
        "enhancement",
        "medium",
        "dana@example.com",
        0,
        Status.SUBMITTED,
        3,
    ),
    (
        "Vendor master data clean-up",
        "Fewer duplicate payments to suppliers",
        "service request",
        "medium",
        "dana@example.com",
        0,
        Status.DELIVERED,
        120,
    ),
    (
        "CRM lead scoring",
        "Sales reps call the most promising leads first",
        "idea",
        "medium",
        "eli@example.com",
        1,
        Status.TRIAGED,
        12,
    ),
    (
        "Campaign dashboard for regional teams",
        "Regions see campaign ROI weekly without asking analysts",
        "project",
        "high",
        "eli@example.com",
        1,
        Status.APPROVED,
        60,
    ),
    (
        "Quote tool crashes on large orders",
        "Reps can quote orders over 500 lines without errors",
        "problem",
        "critical",
        "eli@example.com",
        1,
        Status.IN_DELIVERY,
        8,
    ),
    (
        "Warehouse scanner refresh",
        "Pickers lose no time to failing scanners",
        "project",
        "medium",
        "fatima@example.com",
        2,
        Status.DEFERRED,
        90,
    ),
    (
        "Shift planning in one tool",
        "Supervisors plan shifts in an hour instead of a day",
        "idea",
        "low",
        "fatima@example.com",
        2,
        Status.SUBMITTED,
        1,
    ),
    (
        "Predictive maintenance pilot",
        "Unplanned line stops fall by a fifth",
        "project",
        "high",
        "fatima@example.com",
        2,
        Status.VALUE_REALIZED,
        300,
    ),
    (
        "Onboarding checklist automation",
        "New hires have laptops and access on day one",
        "enhancement",
        "high",
        "gus@example.com",
        3,
        Status.SHAPING,
        25,
    ),
    (
        "Employee survey tool replacement",
        "Survey results within a week instead of a month",
        "project",
        "low",
        "gus@example.com",
        3,
        Status.REJECTED,
        75,
    ),
    (
        "Learning portal single sign-on",
        "Staff reach training without a second password",
        "service request",
        "medium",
        "gus@example.com",
        3,
        Status.TRIAGED,
        6,
    ),
)


async def load_demo(store: Store, *, now: datetime) -> bool:
    """Fill an empty database with the demo organisation. False (and no change) if not empty."""
    if await store.partners.all() or await store.people.all():
        return False
    partners = [BusinessPartner(name=n, executive=e, maturity=m, created_at=now) for n, e, m in PARTNERS]
    for partner in partners:
        await store.add(partner)
    people: dict[str, Person] = {}
    for name, email, role, partner_index, tz in PEOPLE:
        partner_id = partners[partner_index].id if partner_index is not None else None
        people[email] = Person(name=name, email=email, role=role, partner_id=partner_id, time_zone=tz, created_at=now)
    for person in people.values():
        await store.add(person)
    for email, owned in OWNERSHIP.items():
        for index, cadence in owned:
            await store.add(
                Relationship(
                    partner_id=partners[index].id,  # type: ignore[arg-type]
                    brm_id=people[email].id,  # type: ignore[arg-type]
                    cadence_days=cadence,
                    last_touchpoint_at=now - timedelta(days=cadence // 2 + index * 9),
                    created_at=now,
                )
            )
    for title, outcome, category, urgency, email, index, final, days in REQUESTS:
        created = now - timedelta(days=days)
        filed = await store.requests.create(
            NewRequest(
                title=title,
                outcome=outcome,
                category=category,
                urgency=urgency,
                partner_id=partners[index].id,
                requester_id=people[email].id,  # type: ignore[arg-type]
                source_platform="console",
                source_channel="demo",
                desired_date=date.fromordinal(created.date().toordinal() + 90) if urgency != "low" else None,
            ),
            now=created,
        )
        request = filed
        assert request is not None
        brm_id = request.brm_id
        path = (
            (Status.TRIAGED, Status.DEFERRED)
            if final == Status.DEFERRED
            else (
                (Status.TRIAGED, Status.REJECTED)
                if final == Status.REJECTED
                else _FLOW[: _FLOW.index(final) + 1]
                if final in _FLOW
                else ()
            )
        )
        for step_no, status in enumerate(path, 1):
            moment = min(created + timedelta(days=step_no * max(days // (len(path) + 1), 1)), now)
            await store.requests.change_status(request, to=status, by_person_id=brm_id, now=moment)
    return True
