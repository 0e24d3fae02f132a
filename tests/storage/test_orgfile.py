"""Loading a real organisation: people and business partners from CSV, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from conversations.engine import Engine
from conversations.flows import default_flows
from storage import orgfile
from storage.db import Database
from storage.models import BusinessPartner, Person, Relationship
from tests.helpers import Chat, count_of, rows_of

PEOPLE = """name,email,role,time_zone,partner
Alice Moreno,Alice@Example.com,brm,Europe/Madrid,
Dana Whitfield,dana@example.com,requester,,Finance
Priya Raman,priya@example.com,leader,Asia/Kolkata,
"""
PARTNERS = """partner,executive_email,brm_email,cadence_days,maturity
Finance,maria@example.com,alice@example.com,21,trusted advisor
Sales,,bob@example.com,,
"""


async def _people(db: Database, text: str, clock: object, *, dry_run: bool = False) -> list[str]:
    rows = orgfile.read_people(text)
    return await orgfile.apply_people(db, rows, default_time_zone="UTC", now=clock(), dry_run=dry_run)  # type: ignore[operator]


async def _partners(db: Database, text: str, clock: object, *, dry_run: bool = False) -> list[str]:
    rows = orgfile.read_partners(text)
    return await orgfile.apply_partners(db, rows, default_time_zone="UTC", now=clock(), dry_run=dry_run)  # type: ignore[operator]


async def _organisation(db: Database) -> dict[str, tuple[str, str, str, str | None]]:
    partners = {p.id: p.name for p in await rows_of(db, BusinessPartner)}
    return {
        p.email or "": (p.name, p.role, p.time_zone, partners.get(p.partner_id) if p.partner_id else None)
        for p in await rows_of(db, Person)
    }


@pytest.mark.parametrize("order", ["people first", "partners first"])
async def test_either_file_first_gives_the_same_organisation(db: Database, clock, order: str) -> None:
    if order == "people first":
        await _people(db, PEOPLE, clock)
        await _partners(db, PARTNERS, clock)
    else:
        await _partners(db, PARTNERS, clock)
        await _people(db, PEOPLE, clock)
    assert await _organisation(db) == {
        "alice@example.com": ("Alice Moreno", "brm", "Europe/Madrid", None),
        "dana@example.com": ("Dana Whitfield", "requester", "UTC", "Finance"),
        "priya@example.com": ("Priya Raman", "leader", "Asia/Kolkata", None),
        "maria@example.com": ("maria", "requester", "UTC", "Finance"),
        "bob@example.com": ("bob", "brm", "UTC", None),
    }
    partners = {p.name: p for p in await rows_of(db, BusinessPartner)}
    assert partners["Finance"].maturity == "trusted advisor" and partners["Sales"].maturity == "ad hoc"
    people = {p.email: p.id for p in await rows_of(db, Person)}
    relationships = {(r.partner_id, r.brm_id, r.cadence_days, r.is_primary) for r in await rows_of(db, Relationship)}
    assert relationships == {
        (partners["Finance"].id, people["alice@example.com"], 21, True),
        (partners["Sales"].id, people["bob@example.com"], 14, True),
    }
    # A second run of both files changes nothing and says so.
    assert await _people(db, PEOPLE, clock) == []
    assert await _partners(db, PARTNERS, clock) == []


async def test_a_bad_line_is_reported_with_its_number_and_nothing_is_written(db: Database, clock) -> None:
    bad = PEOPLE + "Zed,zed-at-example.com,boss,Mars/Olympus,\nAlice again,alice@EXAMPLE.com,brm,,\n"
    with pytest.raises(orgfile.FileProblems) as caught:
        orgfile.read_people(bad)
    assert caught.value.problems == [
        "line 5: email 'zed-at-example.com' is not an email address; role 'boss' is not one of requester, brm, "
        "leader, admin; time_zone 'Mars/Olympus' is not an IANA time zone (like Europe/Berlin)",
        "line 6: alice@example.com is also on line 2",
    ]
    with pytest.raises(orgfile.FileProblems, match="line 1: the header must be"):
        orgfile.read_partners(PEOPLE)
    with pytest.raises(orgfile.FileProblems, match=r"line 3: cadence_days 'often'.*maturity 'guru'"):
        orgfile.read_partners(PARTNERS.replace(",,\n", ",often,guru\n"))
    assert await count_of(db, Person) == 0


async def test_a_dry_run_shows_the_changes_and_writes_nothing(db: Database, clock) -> None:
    changes = await _partners(db, PARTNERS, clock, dry_run=True)
    assert "+ partner Finance (trusted advisor)" in changes
    assert "+ person <bob@example.com> (brm, BRM of Sales)" in changes
    assert await count_of(db, BusinessPartner) == 0 and await count_of(db, Person) == 0
    assert await _partners(db, PARTNERS, clock) == changes


async def test_a_change_is_reported_and_applied(db: Database, clock) -> None:
    await _people(db, PEOPLE, clock)
    changed = PEOPLE.replace("Priya Raman,priya@example.com,leader", "Priya R,priya@example.com,admin")
    changes = await _people(db, changed, clock)
    assert changes == ["~ person <priya@example.com>: name Priya Raman → Priya R, role leader → admin"]


async def test_someone_who_chatted_before_is_matched_by_email(db: Database, clock) -> None:
    engine = Engine(db, default_flows(), clock=clock, default_timezone="UTC")
    chat = Chat(engine, email="Alice@Example.com", name="alice (slack)")
    await chat.say("hello")
    assert await count_of(db, Person) == 1
    await _people(db, PEOPLE, clock)
    await _partners(db, PARTNERS, clock)
    alice = [p for p in await rows_of(db, Person) if p.email == "alice@example.com"]
    assert len(alice) == 1 and alice[0].role == "brm" and alice[0].name == "Alice Moreno"
    assert await count_of(db, Person) == 5
