"""Loading a real organisation from two CSV files: people, and business partners.

``brm-bot people import people.csv`` and ``brm-bot partners import partners.csv`` read a
file whole, check every row first (a bad row is reported with its line number and nothing of
that file is written), then apply it in one transaction and say what changed. Either file may
come first: a partner named in the people file, or a person named in the partners file, that
does not exist yet is created and completed when the other file names it. A second run of the
same file changes nothing and says so. People are matched by email, ignoring case, so someone
who chatted with the bot before the import keeps their one person (and their requests).

Example::

    rows = read_people(Path("people.csv").read_text())
    changes = await apply_people(db, rows, default_time_zone="UTC", now=now, dry_run=False)
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from storage.db import Database
from storage.models import Maturity, Person, Role
from storage.store import Store, refresh

PEOPLE_HEADER = ("name", "email", "role", "time_zone", "partner")
PARTNERS_HEADER = ("partner", "executive_email", "brm_email", "cadence_days", "maturity")
DEFAULT_CADENCE_DAYS = 14
MAX_CADENCE_DAYS = 365
NOTHING_CHANGED = "nothing changed"
_EMAIL = re.compile(r"^[^@\s,;<>]+@[^@\s,;<>]+$")
_ROLES = tuple(r.value for r in Role)
_MATURITIES = tuple(m.value for m in Maturity)


class FileProblems(Exception):
    """The file cannot be imported; ``problems`` says why, one line each (with line numbers)."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class PersonRow:
    line: int
    name: str
    email: str
    role: str
    time_zone: str | None
    partner: str | None


@dataclass(frozen=True, slots=True)
class PartnerRow:
    line: int
    partner: str
    executive_email: str | None
    brm_email: str | None
    cadence_days: int
    maturity: str


def _rows(text: str, header: tuple[str, ...]) -> list[tuple[int, dict[str, str]]]:
    """(line number, values by column) of each non-empty row, after checking the header."""
    reader = csv.reader(io.StringIO(text.removeprefix("\ufeff")))
    try:
        first = next(reader)
    except StopIteration:
        raise FileProblems([f"the file is empty; its first line must be the header {','.join(header)}"]) from None
    except csv.Error as exc:
        raise FileProblems([f"line 1: {exc}"]) from None
    found = tuple(h.strip().lower() for h in first)
    if found != header:
        raise FileProblems([f"line 1: the header must be {','.join(header)} (found {','.join(found)})"])
    out: list[tuple[int, dict[str, str]]] = []
    problems: list[str] = []
    while True:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            problems.append(f"line {reader.line_num}: {exc}")
            break
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(header):
            problems.append(f"line {reader.line_num}: {len(row)} values, expected {len(header)} ({','.join(header)})")
            continue
        out.append((reader.line_num, {h: cell.strip() for h, cell in zip(header, row, strict=True)}))
    if problems:
        raise FileProblems(problems)
    return out


def _email_problem(label: str, value: str) -> str | None:
    if len(value) > 320 or not _EMAIL.match(value):
        return f"{label} {value!r} is not an email address"
    return None


def read_people(text: str) -> list[PersonRow]:
    """Every row of a people file, or :class:`FileProblems` naming each bad row."""
    rows: list[PersonRow] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for line, v in _rows(text, PEOPLE_HEADER):
        errors: list[str] = []
        email = v["email"].lower()
        if not v["name"]:
            errors.append("name is empty")
        elif len(v["name"]) > 200:
            errors.append("name is longer than 200 characters")
        if not email:
            errors.append("email is empty")
        elif problem := _email_problem("email", v["email"]):
            errors.append(problem)
        elif email in seen:
            errors.append(f"{email} is also on line {seen[email]}")
        role = v["role"].lower()
        if role not in _ROLES:
            errors.append(f"role {v['role']!r} is not one of {', '.join(_ROLES)}")
        if v["time_zone"] and not _is_zone(v["time_zone"]):
            errors.append(f"time_zone {v['time_zone']!r} is not an IANA time zone (like Europe/Berlin)")
        if len(v["partner"]) > 120:
            errors.append("partner is longer than 120 characters")
        if errors:
            problems.append(f"line {line}: " + "; ".join(errors))
            continue
        seen[email] = line
        rows.append(PersonRow(line, v["name"], email, role, v["time_zone"] or None, v["partner"] or None))
    if problems:
        raise FileProblems(problems)
    return rows


def read_partners(text: str) -> list[PartnerRow]:
    """Every row of a partners file, or :class:`FileProblems` naming each bad row."""
    rows: list[PartnerRow] = []
    problems: list[str] = []
    seen: dict[str, int] = {}
    for line, v in _rows(text, PARTNERS_HEADER):
        errors: list[str] = []
        name = v["partner"]
        if not name:
            errors.append("partner is empty")
        elif len(name) > 120:
            errors.append("partner is longer than 120 characters")
        elif name.lower() in seen:
            errors.append(f"partner {name!r} is also on line {seen[name.lower()]}")
        for column in ("executive_email", "brm_email"):
            if v[column] and (problem := _email_problem(column, v[column])):
                errors.append(problem)
        cadence = DEFAULT_CADENCE_DAYS
        if v["cadence_days"]:
            try:
                cadence = int(v["cadence_days"])
            except ValueError:
                cadence = 0
            if not 1 <= cadence <= MAX_CADENCE_DAYS:
                errors.append(f"cadence_days {v['cadence_days']!r} is not a whole number from 1 to {MAX_CADENCE_DAYS}")
        maturity = " ".join(v["maturity"].lower().split()) or Maturity.AD_HOC.value
        if maturity not in _MATURITIES:
            errors.append(f"maturity {v['maturity']!r} is not one of {', '.join(_MATURITIES)}")
        if errors:
            problems.append(f"line {line}: " + "; ".join(errors))
            continue
        seen[name.lower()] = line
        rows.append(
            PartnerRow(
                line, name, v["executive_email"].lower() or None, v["brm_email"].lower() or None, cadence, maturity
            )
        )
    if problems:
        raise FileProblems(problems)
    return rows


def _is_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


class _Rollback(Exception):
    def __init__(self, changes: list[str]) -> None:
        super().__init__("dry run")
        self.changes = changes


async def _apply(db: Database, work: Callable[[Store], Awaitable[list[str]]], *, dry_run: bool) -> list[str]:
    """Run ``work`` in one transaction; a dry run rolls it back and reports the same changes."""
    try:
        async with db.transaction() as store:
            changes = await work(store)
            if dry_run:
                raise _Rollback(changes)
    except _Rollback as rolled_back:
        return rolled_back.changes
    return changes


async def _partner_id(store: Store, name: str, *, now: datetime, changes: list[str], why: str) -> int:
    partner = await store.directory.partner_by_name(name)
    if partner is None:
        partner = await store.directory.add_partner(name=name, maturity=Maturity.AD_HOC.value, now=now)
        changes.append(f"+ partner {partner.name} ({why})")
    assert partner.id is not None
    return partner.id


async def apply_people(
    db: Database, rows: Sequence[PersonRow], *, default_time_zone: str, now: datetime, dry_run: bool = False
) -> list[str]:
    """Create or complete each person of a people file; the changes, one line each."""

    async def work(store: Store) -> list[str]:
        changes: list[str] = []
        names = {p.id: p.name for p in await store.partners.all()}
        for row in rows:
            partner_id = None
            if row.partner:
                why = f"named by {row.email}"
                partner_id = await _partner_id(store, row.partner, now=now, changes=changes, why=why)
                names.setdefault(partner_id, row.partner)
            person = await store.people.by_email(row.email)
            if person is None:
                await store.people.add(
                    name=row.name,
                    email=row.email,
                    role=row.role,
                    time_zone=row.time_zone or default_time_zone,
                    partner_id=partner_id,
                    now=now,
                )
                changes.append(f"+ person {row.name} <{row.email}> ({row.role})")
                continue
            wanted = {
                "name": row.name,
                "role": row.role,
                "time_zone": row.time_zone or person.time_zone,
                "partner": partner_id,
            }
            had = {
                "name": person.name,
                "role": person.role,
                "time_zone": person.time_zone,
                "partner": person.partner_id,
            }
            differences = [
                f"{k} {_shown(had[k], names)} → {_shown(wanted[k], names)}" for k in wanted if had[k] != wanted[k]
            ]
            if differences:
                assert person.id is not None
                await store.directory.update_person(
                    person.id,
                    name=row.name,
                    role=row.role,
                    time_zone=str(wanted["time_zone"]),
                    partner_id=partner_id,
                )
                changes.append(f"~ person <{row.email}>: " + ", ".join(differences))
        return changes

    return await _apply(db, work, dry_run=dry_run)


def _shown(value: object, partner_names: dict[int | None, str]) -> str:
    if value is None:
        return "none"
    if isinstance(value, int):
        return partner_names.get(value, str(value))
    return str(value)


async def _person(
    store: Store, email: str, *, role: Role, partner_id: int | None, default_time_zone: str, now: datetime,
    changes: list[str], why: str,
) -> Person:
    person = await store.people.by_email(email)
    if person is None:
        person = await store.people.add(
            name=email.split("@", 1)[0],
            email=email,
            role=role,
            time_zone=default_time_zone,
            partner_id=partner_id,
            now=now,
        )
        changes.append(f"+ person <{email}> ({role.value}, {why})")
    elif role == Role.BRM and person.role == Role.REQUESTER:
        assert person.id is not None
        await store.directory.update_person(
            person.id, name=person.name, role=Role.BRM.value, time_zone=person.time_zone, partner_id=person.partner_id
        )
        refresh(person, role=Role.BRM.value)
        changes.append(f"~ person <{email}>: role requester → brm ({why})")
    return person


async def apply_partners(
    db: Database, rows: Sequence[PartnerRow], *, default_time_zone: str, now: datetime, dry_run: bool = False
) -> list[str]:
    """Create or complete each business partner, its executive and its primary BRM; the changes."""

    async def work(store: Store) -> list[str]:
        changes: list[str] = []
        for row in rows:
            partner = await store.directory.partner_by_name(row.partner)
            if partner is None:
                partner = await store.directory.add_partner(name=row.partner, maturity=row.maturity, now=now)
                changes.append(f"+ partner {partner.name} ({row.maturity})")
            assert partner.id is not None
            executive_id = partner.executive_id
            executive_name = partner.executive
            if row.executive_email:
                executive = await _person(
                    store, row.executive_email, role=Role.REQUESTER, partner_id=partner.id,
                    default_time_zone=default_time_zone, now=now, changes=changes,
                    why=f"executive of {partner.name}",
                )
                executive_id, executive_name = executive.id, executive.name
            differences = []
            if partner.maturity != row.maturity:
                differences.append(f"maturity {partner.maturity} → {row.maturity}")
            if executive_id != partner.executive_id:
                differences.append(f"executive → {row.executive_email}")
            if differences or executive_name != partner.executive:
                await store.directory.update_partner(
                    partner.id, maturity=row.maturity, executive_id=executive_id, executive=executive_name
                )
            if row.brm_email:
                brm = await _person(
                    store, row.brm_email, role=Role.BRM, partner_id=None, default_time_zone=default_time_zone,
                    now=now, changes=changes, why=f"BRM of {partner.name}",
                )
                primary = next((r for r in await store.directory.relationships(partner.id) if r.is_primary), None)
                if primary is None or primary.brm_id != brm.id:
                    differences.append(f"BRM → {row.brm_email}")
                if primary is None or primary.brm_id != brm.id or primary.cadence_days != row.cadence_days:
                    if primary is not None and primary.brm_id == brm.id:
                        differences.append(f"cadence {primary.cadence_days} → {row.cadence_days} days")
                    assert brm.id is not None
                    await store.directory.set_primary_brm(
                        partner_id=partner.id, brm_id=brm.id, cadence_days=row.cadence_days, now=now
                    )
            if differences and not any(c.startswith(f"+ partner {partner.name} ") for c in changes):
                changes.append(f"~ partner {partner.name}: " + ", ".join(differences))
        return changes

    return await _apply(db, work, dry_run=dry_run)
