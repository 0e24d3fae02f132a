"""Queries and writes, grouped by role, on one transaction: what every caller of storage uses.

``async with db.transaction() as store:`` gives a :class:`Store`. Its parts (``store.people``,
``store.requests``, ``store.state``, ``store.outbox`` …) take keyword arguments and are handed
the clock's ``now`` by the caller; nothing here reads the wall clock or commits. Statements
are built from the tables (:mod:`storage.models`) and compiled once per dialect
(:class:`~storage.tx.Statement`); rows come back as the models, with values converted by the
columns' types.

Example::

    async with db.transaction() as store:
        person = await store.people.add(name="Dana", email="dana@example.com", role=Role.REQUESTER,
                                         time_zone="UTC", now=now)
        await store.people.link(person_id=person.id, platform="slack", workspace="T1", user_id="U1", now=now)
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import Enum
from typing import Any, cast

import sqlalchemy as sa
from sqlmodel import SQLModel

from storage.digest import Digests, ValueChecks
from storage.models import (
    OPEN_STATUSES,
    BusinessPartner,
    ConversationReference,
    DemandRequest,
    Identity,
    JobRun,
    MaturityChange,
    OutboxMessage,
    OutboxStatus,
    Person,
    ProcessedEvent,
    Relationship,
    RequestNote,
    RequestWatcher,
    Role,
    Snooze,
    Status,
    StatusChange,
    Touchpoint,
)
from storage.models import (
    ConversationState as StateRow,
)
from storage.privacy import Privacy
from storage.survey_results import SurveyResults
from storage.surveys import Surveys
from storage.tx import Row, Statement, Tx, as_model, constants, dialect_insert, insert_ignoring

sa.orm.configure_mappers()  # model_construct needs the attributes instrumented before the first query


def table(model: type[SQLModel]) -> sa.Table:
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]


PERSON = table(Person)
IDENTITY = table(Identity)
PARTNER = table(BusinessPartner)
RELATIONSHIP = table(Relationship)
REQUEST = table(DemandRequest)
CHANGE = table(StatusChange)
STATE = table(StateRow)
EVENT = table(ProcessedEvent)
OUTBOX = table(OutboxMessage)
REFERENCE = table(ConversationReference)
JOB_RUN = table(JobRun)
TOUCHPOINT = table(Touchpoint)
MATURITY_CHANGE = table(MaturityChange)
SNOOZE = table(Snooze)

P = sa.bindparam


def _names(t: sa.Table) -> list[str]:
    return [c.name for c in t.c]


def _plain(value: Any) -> Any:
    """Enumerations as the strings the database holds, so a written model reads like a read one."""
    return value.value if isinstance(value, Enum) else value


def refresh(obj: SQLModel, **values: Any) -> None:
    """Show a write on a model object read earlier: rows come back as ``model_construct`` objects,
    which take no attribute assignment through SQLAlchemy's instrumentation."""
    obj.__dict__.update(values)


def values_of(obj: SQLModel, *, skip: Sequence[str] = ("id",)) -> dict[str, Any]:
    """A model's column values (its defaults applied by the model itself), ready to insert."""
    t = table(type(obj))
    return {c.name: _plain(getattr(obj, c.name)) for c in t.c if c.name not in skip}


@functools.cache
def _insert_returning_id(t: sa.Table, keys: tuple[str, ...]) -> Statement:
    return Statement(sa.insert(t).returning(t.c.id), keys=keys)


@functools.cache
def _insert(t: sa.Table, keys: tuple[str, ...]) -> Statement:
    return Statement(sa.insert(t), keys=keys)


async def add(tx: Tx, obj: SQLModel) -> Any:
    """Insert a model object; its id (set on the object too) when the table has one."""
    t = table(type(obj))
    values = values_of(obj)
    if "id" in t.c:
        new_id = await tx.scalar(_insert_returning_id(t, tuple(values)), values)
        setattr(obj, "id", new_id)  # noqa: B010 (every table model with an id column has the attribute)
        return new_id
    await tx.count(_insert(t, tuple(values)), values)
    return None


# --- inbound events -----------------------------------------------------------------------------

_CLAIM = Statement(insert_ignoring(EVENT), keys=("platform", "event_id", "at"))
_SEEN_EVENT = Statement(
    sa.select(sa.literal(1)).where(EVENT.c.platform == P("platform"), EVENT.c.event_id == P("event_id"))
)
_FORGET_EVENTS = Statement(sa.delete(EVENT).where(EVENT.c.at < P("before", type_=EVENT.c.at.type)))


class Events:
    """Inbound event ids already handled: a platform's retry of one is recognised."""

    __slots__ = ("tx",)

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def claim(self, *, platform: str, event_id: str, now: datetime) -> bool:
        """Record an event id; False when it was recorded before (a repeat)."""
        return bool(await self.tx.count(_CLAIM, platform=platform, event_id=event_id[:200], at=now))

    async def seen(self, *, platform: str, event_id: str) -> bool:
        """Whether an event id was claimed before (a read: it claims nothing)."""
        return await self.tx.first(_SEEN_EVENT, platform=platform, event_id=event_id[:200]) is not None

    async def forget_before(self, *, before: datetime) -> int:
        return await self.tx.count(_FORGET_EVENTS, before=before)


# --- people -------------------------------------------------------------------------------------

_PERSON_BY_IDENTITY = Statement(
    sa.select(PERSON)
    .join(IDENTITY, IDENTITY.c.person_id == PERSON.c.id)
    .where(
        IDENTITY.c.platform == P("platform"),
        IDENTITY.c.workspace == P("workspace"),
        IDENTITY.c.user_id == P("user_id"),
    )
)
_PERSON_BY_EMAIL = Statement(sa.select(PERSON).where(PERSON.c.email == P("email")))
_PERSON_BY_DIRECTORY_ID = Statement(
    sa.select(PERSON)
    .join(IDENTITY, IDENTITY.c.person_id == PERSON.c.id)
    .where(IDENTITY.c.directory_id == P("directory_id"))
    .order_by(IDENTITY.c.id)
    .limit(1)
)
_PERSON = Statement(sa.select(PERSON).where(PERSON.c.id == P("id")))
_PEOPLE = Statement(sa.select(PERSON).order_by(PERSON.c.id))
_LINK = Statement(
    insert_ignoring(IDENTITY), keys=("person_id", "platform", "workspace", "user_id", "directory_id", "created_at")
)
_IDENTITIES_OF = Statement(sa.select(IDENTITY).where(IDENTITY.c.person_id == P("person_id")).order_by(IDENTITY.c.id))
_SET_EMAIL = Statement(
    sa.update(PERSON)
    .where(PERSON.c.id == P("pid"), PERSON.c.email.is_(None))
    .values(email=P("new_email", type_=PERSON.c.email.type), name=P("new_name", type_=PERSON.c.name.type))
)

_DELETE_PERSON = Statement(sa.delete(PERSON).where(PERSON.c.id == P("pid")))


@functools.cache
def _repoint_person() -> tuple[Statement, ...]:
    """An UPDATE per column that refers to a person, found in the tables' foreign keys."""
    out: list[Statement] = []
    for t in SQLModel.metadata.sorted_tables:
        for fk in t.foreign_keys:
            if fk.column is PERSON.c.id:
                col = fk.parent
                update = sa.update(t).where(col == P("old", type_=col.type))
                out.append(Statement(update.values({col.name: P("new", type_=col.type)})))
    return tuple(out)


def _unreachable_where(platform: str, workspace: str, user_ids: Sequence[str] | None) -> list[Any]:
    where = [IDENTITY.c.platform == platform, IDENTITY.c.workspace == workspace]
    if user_ids is not None:
        where.append(IDENTITY.c.user_id.in_(list(user_ids)))
    return where


class People:
    __slots__ = ("tx",)

    async def mark_unreachable(
        self, *, platform: str, workspace: str, user_ids: Sequence[str] | None = None, now: datetime
    ) -> int:
        """The platform can no longer reach these accounts (``user_ids`` None: everyone in the workspace)."""
        where = [*_unreachable_where(platform, workspace, user_ids), IDENTITY.c.unreachable_at.is_(None)]
        return await self.tx.count(sa.update(IDENTITY).where(*where).values(unreachable_at=now))

    async def mark_reachable(self, *, platform: str, workspace: str, user_ids: Sequence[str] | None = None) -> int:
        """The app is installed again: these accounts can be messaged again."""
        where = [*_unreachable_where(platform, workspace, user_ids), IDENTITY.c.unreachable_at.is_not(None)]
        return await self.tx.count(sa.update(IDENTITY).where(*where).values(unreachable_at=None))

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def by_identity(self, *, platform: str, workspace: str, user_id: str) -> Person | None:
        return await self.tx.model(Person, _PERSON_BY_IDENTITY, platform=platform, workspace=workspace, user_id=user_id)

    async def by_email(self, email: str) -> Person | None:
        return await self.tx.model(Person, _PERSON_BY_EMAIL, email=email.strip().lower())

    async def by_directory_id(self, directory_id: str) -> Person | None:
        return await self.tx.model(Person, _PERSON_BY_DIRECTORY_ID, directory_id=directory_id)

    async def get(self, person_id: int) -> Person | None:
        return await self.tx.model(Person, _PERSON, id=person_id)

    async def all(self) -> list[Person]:
        return await self.tx.models(Person, _PEOPLE)

    async def add(
        self,
        *,
        name: str,
        email: str | None,
        role: Role | str,
        time_zone: str,
        now: datetime,
        partner_id: int | None = None,
    ) -> Person:
        """A new person (the caller has checked that the email is free)."""
        person = Person(
            name=name, email=email, role=_plain(role), time_zone=time_zone, partner_id=partner_id, created_at=now
        )
        await add(self.tx, person)
        return person

    async def set_email(self, *, person_id: int, email: str, name: str) -> bool:
        """Complete a person first seen without an email; False if they have one already."""
        return bool(await self.tx.count(_SET_EMAIL, pid=person_id, new_email=email.strip().lower(), new_name=name))

    async def link(
        self,
        *,
        person_id: int,
        platform: str,
        workspace: str,
        user_id: str,
        now: datetime,
        directory_id: str | None = None,
    ) -> bool:
        """Link a platform account to a person; False if that account was already linked."""
        values = {
            "person_id": person_id,
            "platform": platform,
            "workspace": workspace,
            "user_id": user_id,
            "directory_id": directory_id,
            "created_at": now,
        }
        return bool(await self.tx.count(_LINK, values))

    async def identities(self, person_id: int) -> list[Identity]:
        return await self.tx.models(Identity, _IDENTITIES_OF, person_id=person_id)

    async def merge(self, *, from_id: int, into_id: int) -> None:
        """Fold a person into another: everything pointing at ``from_id`` points at ``into_id``,
        then ``from_id`` is deleted. For a person first linked without an email (a failed profile
        look-up) who turns out to be someone already known; run it inside the turn's transaction.
        """
        for stmt in _repoint_person():
            await self.tx.count(stmt, old=from_id, new=into_id)
        await self.tx.count(_DELETE_PERSON, pid=from_id)


# --- partners and relationships ----------------------------------------------------------------

_PARTNERS = Statement(sa.select(PARTNER).order_by(PARTNER.c.name))
_PARTNER = Statement(sa.select(PARTNER).where(PARTNER.c.id == P("id")))
_PRIMARY_BRM = Statement(
    sa.select(PERSON)
    .join(RELATIONSHIP, RELATIONSHIP.c.brm_id == PERSON.c.id)
    .where(RELATIONSHIP.c.partner_id == P("partner_id"), RELATIONSHIP.c.is_primary)
)
_OWNED = Statement(
    sa.select(RELATIONSHIP.c.partner_id).where(RELATIONSHIP.c.brm_id == P("brm_id")).order_by(RELATIONSHIP.c.partner_id)
)


class Partners:
    __slots__ = ("tx",)

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def all(self) -> list[BusinessPartner]:
        return await self.tx.models(BusinessPartner, _PARTNERS)

    async def get(self, partner_id: int) -> BusinessPartner | None:
        return await self.tx.model(BusinessPartner, _PARTNER, id=partner_id)

    async def primary_brm(self, partner_id: int) -> Person | None:
        return await self.tx.model(Person, _PRIMARY_BRM, partner_id=partner_id)

    async def owned_by(self, brm_id: int) -> list[int]:
        return [int(i) for i in await self.tx.scalars(_OWNED, brm_id=brm_id)]


# --- demand requests ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NewRequest:
    title: str
    outcome: str
    category: str
    urgency: str
    partner_id: int | None
    requester_id: int
    source_platform: str
    description: str | None = None
    desired_date: date | None = None
    source_channel: str | None = None
    source_link: str | None = None


@dataclass(frozen=True, slots=True)
class RequestDetails:
    """One request with the names it shows and its status history (oldest first)."""

    request: DemandRequest
    requester: str | None
    partner: str | None
    brm: str | None
    history: list[StatusChange]


_OPEN = constants(sorted(s.value for s in OPEN_STATUSES))
_REQUEST_KEYS = tuple(c for c in _names(REQUEST) if c != "id")
_ADD_REQUEST = Statement(sa.insert(REQUEST).returning(REQUEST.c.id), keys=_REQUEST_KEYS)
_REQUEST_BY_ID = Statement(sa.select(REQUEST).where(REQUEST.c.id == P("id")))
_HISTORY = Statement(sa.select(CHANGE).where(CHANGE.c.request_id == P("id")).order_by(CHANGE.c.id))
_ALL_OPEN_TITLES = Statement(
    sa.select(REQUEST.c.id, REQUEST.c.title).where(REQUEST.c.status.in_(_OPEN)).order_by(REQUEST.c.id)
)
_OPEN_TITLES = Statement(
    sa.select(REQUEST.c.id, REQUEST.c.title)
    .where(REQUEST.c.partner_id == P("partner_id"), REQUEST.c.status.in_(_OPEN))
    .order_by(REQUEST.c.id)
)
_SET_STATUS = Statement(
    sa.update(REQUEST).where(REQUEST.c.id == P("rid")).values(status=P("to"), updated_at=P("now"))
)
_ALL_WITH_REQUESTER = Statement(
    sa.select(REQUEST, PERSON, PARTNER)
    .join(PERSON, PERSON.c.id == REQUEST.c.requester_id)
    .outerjoin(PARTNER, PARTNER.c.id == REQUEST.c.partner_id)
    .order_by(REQUEST.c.id)
)
_COUNT_REQUESTS = Statement(sa.select(sa.func.count()).select_from(REQUEST))
_REQUEST_NAMES = _names(REQUEST)
_PERSON_NAMES = _names(PERSON)
_PARTNER_NAMES = _names(PARTNER)
_CHANGE_NAMES = _names(CHANGE)


def _scope(person: Person) -> str:
    """Who sees which requests: a requester their own; a BRM also those of the partners they have
    a relationship with, and those they own; leaders and admins all of them."""
    if person.role in (Role.LEADER, Role.ADMIN):
        return "all"
    return "brm" if person.role == Role.BRM else "own"


def _visible(scope: str) -> sa.ColumnElement[bool]:
    """``mine``: requested by me; ``own``: also those I follow; ``brm``: also my partners' and the
    unassigned; anything else: all."""
    me = P("me", type_=sa.Integer)
    if scope == "mine":
        return REQUEST.c.requester_id == me
    followed = REQUEST.c.id.in_(sa.select(WATCHER.c.request_id).where(WATCHER.c.person_id == me))
    if scope == "own":
        return sa.or_(REQUEST.c.requester_id == me, followed)
    if scope == "brm":
        owned = sa.select(RELATIONSHIP.c.partner_id).where(RELATIONSHIP.c.brm_id == me)
        return sa.or_(
            REQUEST.c.requester_id == me,
            followed,
            REQUEST.c.brm_id == me,
            REQUEST.c.partner_id.in_(owned),
            REQUEST.c.brm_id.is_(None),  # unassigned: any BRM may triage it
        )
    return sa.true()


@functools.cache
def _visible_list(scope: str, only_open: bool) -> Statement:
    where = [_visible(scope)]
    if only_open:
        where.append(REQUEST.c.status.in_(_OPEN))
    # Open items first, then the newest activity.
    closed_last = sa.case((REQUEST.c.status.in_(_OPEN), 0), else_=1)
    return Statement(
        sa.select(REQUEST)
        .where(*where)
        .order_by(closed_last, REQUEST.c.updated_at.desc(), REQUEST.c.id.desc())
        .limit(P("limit"))
    )


@functools.cache
def _visible_one(scope: str) -> Statement:
    return Statement(sa.select(REQUEST).where(_visible(scope), REQUEST.c.id == P("id")))


@functools.cache
def _details(scope: str) -> Statement:
    """The request, three names and every status change in one statement: a row per change."""
    requester, partner, brm = PERSON.alias("requester"), PARTNER.alias("partner"), PERSON.alias("brm")
    return Statement(
        sa.select(REQUEST, requester.c.name, partner.c.name, brm.c.name, CHANGE)
        .outerjoin(requester, requester.c.id == REQUEST.c.requester_id)
        .outerjoin(partner, partner.c.id == REQUEST.c.partner_id)
        .outerjoin(brm, brm.c.id == REQUEST.c.brm_id)
        .outerjoin(CHANGE, CHANGE.c.request_id == REQUEST.c.id)
        .where(_visible(scope), REQUEST.c.id == P("id"))
        .order_by(CHANGE.c.id)
    )


class Requests:
    __slots__ = ("tx",)

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def create(self, new: NewRequest, *, now: datetime) -> DemandRequest:
        """Insert a request, owned by its partner's primary BRM, and its first status change."""
        brm = await Partners(self.tx).primary_brm(new.partner_id) if new.partner_id is not None else None
        request = DemandRequest(
            title=new.title,
            description=new.description,
            outcome=new.outcome,
            category=new.category,
            urgency=new.urgency,
            desired_date=new.desired_date,
            requester_id=new.requester_id,
            partner_id=new.partner_id,
            brm_id=brm.id if brm is not None else None,
            status=Status.SUBMITTED.value,
            source_platform=new.source_platform,
            source_channel=new.source_channel,
            source_link=new.source_link,
            created_at=now,
            updated_at=now,
        )
        values = values_of(request)
        request.id = await self.tx.scalar(_ADD_REQUEST, values)
        change = StatusChange(
            request_id=request.id,
            by_person_id=new.requester_id,
            at=now,
            from_status=None,
            to_status=Status.SUBMITTED.value,
            note=None,
        )
        await add(self.tx, change)
        return request

    async def change_status(
        self,
        request: DemandRequest,
        *,
        to: Status,
        by_person_id: int | None,
        now: datetime,
        note: str | None = None,
    ) -> StatusChange:
        assert request.id is not None
        change = StatusChange(
            request_id=request.id,
            by_person_id=by_person_id,
            at=now,
            from_status=_plain(request.status),
            to_status=to.value,
            note=note,
        )
        await self.tx.count(_SET_STATUS, rid=request.id, to=to.value, now=now)
        await add(self.tx, change)
        refresh(request, status=to.value, updated_at=now)
        return change

    async def get(self, request_id: int) -> DemandRequest | None:
        return await self.tx.model(DemandRequest, _REQUEST_BY_ID, id=request_id)

    async def history(self, request_id: int) -> list[StatusChange]:
        return await self.tx.models(StatusChange, _HISTORY, id=request_id)

    async def visible(
        self, person: Person, *, only_open: bool = False, mine_only: bool = False, limit: int = 50
    ) -> list[DemandRequest]:
        """Requests ``person`` may see, open ones first, newest activity first: a requester their own
        and those they follow, a BRM their partners'."""
        scope = "mine" if mine_only else _scope(person)
        params: dict[str, Any] = {"limit": limit, "me": person.id}
        return await self.tx.models(DemandRequest, _visible_list(scope, only_open), params)

    async def visible_one(self, person: Person, request_id: int) -> DemandRequest | None:
        return await self.tx.model(DemandRequest, _visible_one(_scope(person)), id=request_id, me=person.id)

    async def details(self, person: Person, request_id: int) -> RequestDetails | None:
        """What ``status DR-42`` shows, if ``person`` may see the request: one round trip."""
        rows = await self.tx.rows(_details(_scope(person)), id=request_id, me=person.id)
        if not rows:
            return None
        width = len(_REQUEST_NAMES)
        first = rows[0]
        history = [
            as_model(StatusChange, _CHANGE_NAMES, row[width + 3 :]) for row in rows if row[width + 3] is not None
        ]
        request = as_model(DemandRequest, _REQUEST_NAMES, first[:width])
        return RequestDetails(request, first[width], first[width + 1], first[width + 2], history)

    async def open_titles(self, partner_id: int | None) -> list[tuple[int, str]]:
        """(id, title) of the partner's open requests (every partner's for None): just what a
        duplicate check compares."""
        if partner_id is None:
            return [(row[0], row[1]) for row in await self.tx.rows(_ALL_OPEN_TITLES)]
        return [(row[0], row[1]) for row in await self.tx.rows(_OPEN_TITLES, partner_id=partner_id)]

    async def all_with_requester(self) -> list[tuple[DemandRequest, Person, BusinessPartner | None]]:
        out: list[tuple[DemandRequest, Person, BusinessPartner | None]] = []
        a, b = len(_REQUEST_NAMES), len(_REQUEST_NAMES) + len(_PERSON_NAMES)
        for row in await self.tx.rows(_ALL_WITH_REQUESTER):
            partner = as_model(BusinessPartner, _PARTNER_NAMES, row[b:]) if row[b] is not None else None
            out.append(
                (as_model(DemandRequest, _REQUEST_NAMES, row[:a]), as_model(Person, _PERSON_NAMES, row[a:b]), partner)
            )
        return out

    async def count(self) -> int:
        return int(await self.tx.scalar(_COUNT_REQUESTS))


# --- conversation state -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StateKey:
    platform: str
    workspace: str
    channel: str
    user_id: str
    thread: str = ""


@dataclass(frozen=True, slots=True)
class SavedState:
    flow: str | None
    step: str | None
    data: dict[str, Any]
    version: int
    updated_at: datetime
    schema: int = 1


class StaleState(Exception):
    """Another turn of the same conversation saved first; the caller runs the turn again."""


_KEY_COLUMNS = ("platform", "workspace", "channel", "user_id", "thread")
_STATE_WHERE = tuple(STATE.c[name] == P(name) for name in _KEY_COLUMNS)
_LOAD_STATE = Statement(
    sa.select(STATE.c.flow, STATE.c.step, STATE.c.data, STATE.c.version, STATE.c.updated_at, STATE.c.schema_version)
    .where(*_STATE_WHERE)
)
_STATE_VALUES = ("flow", "step", "data", "version", "updated_at", "schema_version")
_INSERT_STATE = Statement(insert_ignoring(STATE), keys=(*_KEY_COLUMNS, *_STATE_VALUES))
_UPDATE_STATE = Statement(
    sa.update(STATE)
    .where(*_STATE_WHERE, STATE.c.version == P("expected"))
    .values({name: P(f"new_{name}", type_=STATE.c[name].type) for name in _STATE_VALUES})
)
_DRAFTS = Statement(
    sa.select(STATE)
    .where(
        STATE.c.flow == P("flow"),
        STATE.c.updated_at < P("before", type_=STATE.c.updated_at.type),
        STATE.c.updated_at >= P("after", type_=STATE.c.updated_at.type),
    )
    .order_by(STATE.c.updated_at)
)
_DRAFTS_OF = Statement(
    sa.select(STATE)
    .where(
        STATE.c.flow == P("flow"),
        STATE.c.platform == P("platform"),
        STATE.c.workspace == P("workspace"),
        STATE.c.user_id == P("user_id"),
        STATE.c.updated_at >= P("after", type_=STATE.c.updated_at.type),
    )
    .order_by(STATE.c.updated_at.desc())
    .limit(1)
)
_DELETE_STATE_BEFORE = Statement(
    sa.delete(STATE).where(STATE.c.updated_at < P("before", type_=STATE.c.updated_at.type))
)


def _finish_statement(dialect: str, *, insert: bool) -> sa.Executable:
    """PostgreSQL: claim the event id and write the state in one statement, both or neither."""
    seen = (
        sa.select(sa.literal(1))
        .where(EVENT.c.platform == P("platform"), EVENT.c.event_id == P("event_id"))
        .cte("seen")
    )
    not_seen = ~sa.exists(sa.select(seen))
    if insert:
        ins = dialect_insert(dialect)
        source = sa.select(
            *(P(name, type_=STATE.c[name].type) for name in _KEY_COLUMNS),
            *(P(f"new_{name}", type_=STATE.c[name].type) for name in _STATE_VALUES),
        ).where(not_seen)
        written = (
            ins(STATE).from_select([*_KEY_COLUMNS, *_STATE_VALUES], source).on_conflict_do_nothing()
            .returning(sa.literal(1)).cte("written")
        )
    else:
        written = (
            sa.update(STATE)
            .where(*_STATE_WHERE, STATE.c.version == P("expected"), not_seen)
            .values({name: P(f"new_{name}", type_=STATE.c[name].type) for name in _STATE_VALUES})
            .returning(sa.literal(1))
            .cte("written")
        )
    claim = (
        sa.insert(EVENT)
        .from_select(
            ["platform", "event_id", "at"],
            sa.select(
                P("platform", type_=EVENT.c.platform.type),
                P("event_id", type_=EVENT.c.event_id.type),
                P("new_updated_at", type_=EVENT.c.at.type),
            ).where(sa.exists(sa.select(written))),
        )
        .returning(sa.literal(1))
        .cte("claim")
    )
    return sa.select(
        sa.exists(sa.select(seen)),
        sa.select(sa.func.count()).select_from(written).scalar_subquery(),
        sa.select(sa.func.count()).select_from(claim).scalar_subquery(),
    )


_FINISH_INSERT = Statement(functools.partial(_finish_statement, insert=True), writes=True)
_FINISH_UPDATE = Statement(functools.partial(_finish_statement, insert=False), writes=True)


def _key_params(key: StateKey) -> dict[str, Any]:
    return {
        "platform": key.platform,
        "workspace": key.workspace,
        "channel": key.channel,
        "user_id": key.user_id,
        "thread": key.thread,
    }


class States:
    """Conversation state rows, written with a version check."""

    __slots__ = ("tx",)

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def load(self, key: StateKey) -> SavedState | None:
        row = await self.tx.first(_LOAD_STATE, _key_params(key))
        if row is None:
            return None
        return SavedState(row[0], row[1], dict(row[2] or {}), row[3], row[4], row[5])

    async def save(self, key: StateKey, state: SavedState, *, expected_version: int | None) -> None:
        """Write ``state`` if nobody else did since it was read (``expected_version``; None: no row
        existed when the turn began). Raises :class:`StaleState` otherwise."""
        params = _key_params(key)
        values = _state_values(state, expected_version)
        if expected_version is None:
            written = await self.tx.count(_INSERT_STATE, {**params, **{k[4:]: v for k, v in values.items()}})
        else:
            written = await self.tx.count(_UPDATE_STATE, {**params, **values, "expected": expected_version})
        if not written:
            raise StaleState(key)

    async def finish_turn(
        self, key: StateKey, *, event_id: str, now: datetime, state: SavedState | None, expected_version: int | None
    ) -> bool:
        """Claim the turn's event id and save its conversation state, both or neither.

        False when the event was already processed (a platform retry: the caller rolls back
        whatever the turn wrote). Raises :class:`StaleState` when another turn saved the state
        first. ``state`` None saves nothing but the claim. On PostgreSQL this is one statement,
        so a turn that wrote nothing else needs no transaction; a duplicate racing it makes the
        claim fail with a unique violation and the whole statement with it.
        """
        event_id = event_id[:200]
        events = Events(self.tx)
        if state is None or self.tx.dialect != "postgresql":
            if not await events.claim(platform=key.platform, event_id=event_id, now=now):
                return False
            if state is not None:
                await self.save(key, state, expected_version=expected_version)
            return True
        params = {**_key_params(key), "event_id": event_id, **_state_values(state, expected_version)}
        if expected_version is None:
            rows = await self.tx.last(_FINISH_INSERT, params)
        else:
            rows = await self.tx.last(_FINISH_UPDATE, {**params, "expected": expected_version})
        seen, written, _claimed = rows[0]
        if seen:
            return False
        if not written:
            raise StaleState(key)
        return True

    async def forget_before(self, *, before: datetime) -> int:
        return await self.tx.count(_DELETE_STATE_BEFORE, before=before)

    async def draft_of(
        self, *, platform: str, workspace: str, user_id: str, flow: str, after: datetime
    ) -> tuple[StateKey, SavedState] | None:
        """This platform user's latest conversation still in ``flow`` since ``after`` (an unfinished draft)."""
        rows = await self.tx.models(StateRow, _DRAFTS_OF, flow=flow, platform=platform, workspace=workspace,
                                    user_id=user_id, after=after)
        if not rows:
            return None
        row = rows[0]
        key = StateKey(row.platform, row.workspace, row.channel, row.user_id, row.thread)
        return key, SavedState(row.flow, row.step, dict(row.data or {}), row.version, row.updated_at,
                               row.schema_version)

    async def left(self, *, flow: str, after: datetime, before: datetime) -> list[tuple[StateKey, SavedState]]:
        """Conversations left in ``flow`` between ``after`` and ``before`` (drafts to remind of)."""
        out = []
        for row in await self.tx.models(StateRow, _DRAFTS, flow=flow, after=after, before=before):
            key = StateKey(row.platform, row.workspace, row.channel, row.user_id, row.thread)
            saved = SavedState(row.flow, row.step, dict(row.data or {}), row.version, row.updated_at,
                               row.schema_version)
            out.append((key, saved))
        return out


def _state_values(state: SavedState, expected_version: int | None) -> dict[str, Any]:
    return {
        "new_flow": state.flow,
        "new_step": state.step,
        "new_data": state.data,
        "new_version": (expected_version or 0) + 1,
        "new_updated_at": state.updated_at,
        "new_schema_version": state.schema,
    }


# --- outbox -------------------------------------------------------------------------------------

_OUTBOX_KEYS = tuple(c for c in _names(OUTBOX) if c != "id")
_ENQUEUE = Statement(insert_ignoring(OUTBOX), keys=_OUTBOX_KEYS)
_DUE = sa.and_(
    OUTBOX.c.status.in_(
        constants([OutboxStatus.PENDING.value, OutboxStatus.SENDING.value, OutboxStatus.HELD.value])
    ),
    OUTBOX.c.next_attempt_at <= P("now", type_=OUTBOX.c.next_attempt_at.type),
)
_CLAIM_OUTBOX = Statement(
    sa.update(OUTBOX)
    .where(
        OUTBOX.c.id.in_(
            sa.select(OUTBOX.c.id)
            .where(_DUE)
            .order_by(OUTBOX.c.priority.desc(), OUTBOX.c.id)
            .limit(P("limit"))
            .with_for_update(skip_locked=True)
        )
    )
    .values(
        status=OutboxStatus.SENDING.value,
        next_attempt_at=P("lease_until", type_=OUTBOX.c.next_attempt_at.type),
        lease_token=P("token", type_=OUTBOX.c.lease_token.type),
        attempts=OUTBOX.c.attempts + 1,
    )
    .returning(*OUTBOX.c)
)
_LEASED = (
    OUTBOX.c.id == P("mid"),
    OUTBOX.c.lease_token == P("token", type_=OUTBOX.c.lease_token.type),
    OUTBOX.c.status == OutboxStatus.SENDING.value,
)
_FINISH_OUTBOX = Statement(
    sa.update(OUTBOX)
    .where(*_LEASED)
    .values(
        status=P("new_status", type_=OUTBOX.c.status.type),
        last_error=P("error", type_=OUTBOX.c.last_error.type),
        next_attempt_at=P("next_at", type_=OUTBOX.c.next_attempt_at.type),
        held_reason=None,
        sent_at=sa.func.coalesce(P("sent", type_=OUTBOX.c.sent_at.type), OUTBOX.c.sent_at),
        platform_message_id=sa.func.coalesce(P("pmid", type_=OUTBOX.c.platform_message_id.type),
                                             OUTBOX.c.platform_message_id),
    )
)
_DEFER_OUTBOX = Statement(
    sa.update(OUTBOX)
    .where(*_LEASED)
    .values(
        status=P("new_status", type_=OUTBOX.c.status.type),
        attempts=OUTBOX.c.attempts - 1,
        next_attempt_at=P("until", type_=OUTBOX.c.next_attempt_at.type),
        held_reason=P("reason", type_=OUTBOX.c.held_reason.type),
    )
)
_BUDGET_USED = Statement(
    sa.select(sa.func.count())
    .select_from(OUTBOX)
    .where(
        OUTBOX.c.recipient_id == P("rid"),
        OUTBOX.c.status == OutboxStatus.SENT.value,
        OUTBOX.c.priority > 0,
        OUTBOX.c.sent_at >= P("since", type_=OUTBOX.c.sent_at.type),
    )
)
_OUTBOX_COUNTS = Statement(sa.select(OUTBOX.c.status, sa.func.count()).group_by(OUTBOX.c.status))
_OUTBOX_HELD = Statement(
    sa.select(OUTBOX)
    .where(
        OUTBOX.c.held_reason.is_not(None),
        OUTBOX.c.status.in_(constants([OutboxStatus.PENDING.value, OutboxStatus.HELD.value])),
    )
    .order_by(OUTBOX.c.next_attempt_at, OUTBOX.c.id)
    .limit(P("limit"))
)
_OUTBOX_FAILURES = Statement(
    sa.select(OUTBOX)
    .where(OUTBOX.c.status.in_(constants([OutboxStatus.FAILED.value, OutboxStatus.UNREACHABLE.value])))
    .order_by(OUTBOX.c.id.desc())
    .limit(P("limit"))
)
_ALL_OUTBOX = Statement(sa.select(OUTBOX).order_by(OUTBOX.c.id))
UNREACHABLE_KEPT = timedelta(days=14)  # an unreachable message older than this is no longer worth sending
def _find_outbox(to: sa.ColumnElement[Any]) -> Statement:
    """The message of (kind, subject, period) for one recipient column (``to`` = :to)."""
    return Statement(
        sa.select(OUTBOX).where(
            OUTBOX.c.kind == P("kind"), OUTBOX.c.subject == P("subject"), OUTBOX.c.period == P("period"), to == P("to")
        )
    )


_FIND_OUTBOX = _find_outbox(OUTBOX.c.recipient_id)
_FIND_CHANNEL_OUTBOX = _find_outbox(OUTBOX.c.channel)
_RETRY_UNREACHABLE = Statement(
    sa.update(OUTBOX)
    .where(
        OUTBOX.c.recipient_id == P("rid"),
        OUTBOX.c.status.in_(constants([OutboxStatus.UNREACHABLE.value])),
        OUTBOX.c.created_at >= P("since", type_=OUTBOX.c.created_at.type),
    )
    .values(status=OutboxStatus.PENDING.value, next_attempt_at=P("now", type_=OUTBOX.c.next_attempt_at.type))
)
_FORGET_SENT = Statement(
    sa.delete(OUTBOX).where(
        OUTBOX.c.status == OutboxStatus.SENT.value,
        OUTBOX.c.sent_at < P("before", type_=OUTBOX.c.sent_at.type),
    )
)
_OUTBOX_BY_STATUS = Statement(
    sa.select(OUTBOX.c.status, sa.func.count(), sa.func.min(OUTBOX.c.created_at)).group_by(OUTBOX.c.status)
)
_OUTBOX_NAMES = _names(OUTBOX)


class Outbox:
    """Messages the bot starts: written with the turn or job, delivered by a worker."""

    __slots__ = ("tx",)

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def enqueue(
        self,
        *,
        kind: str,
        subject: str,
        payload: dict[str, Any],
        now: datetime,
        recipient_id: int | None = None,
        channel: str | None = None,
        period: str = "",
        priority: int = 0,
        due: datetime | None = None,
    ) -> bool:
        """Queue a message; False if that (kind, subject, period, recipient) exists already.

        The recipient is a person (``recipient_id``) or a channel (``channel``, an address such as
        ``slack:C0123ABCD`` that the delivery worker understands), never both.
        ``priority`` above 0 marks a proactive message (a nudge, a survey, a digest): it counts
        against the recipient's weekly budget, and higher priorities are delivered first.
        ``due``: not before then (a platform asked to wait); default at once.
        """
        if (recipient_id is None) == (channel is None):
            raise ValueError("an outbox message goes to a person or to a channel: give exactly one")
        message = OutboxMessage(
            kind=kind,
            subject=subject[:120],
            period=period,
            recipient_id=recipient_id,
            channel=channel,
            payload=payload,
            status=OutboxStatus.PENDING.value,
            attempts=0,
            next_attempt_at=max(due, now) if due is not None else now,
            created_at=now,
            priority=priority,
        )
        return bool(await self.tx.count(_ENQUEUE, values_of(message)))

    async def claim(
        self, *, now: datetime, lease_until: datetime, limit: int = 50, token: str | None = None
    ) -> list[OutboxMessage]:
        """Claim due messages for one worker: pending and held ones, and claimed ones whose lease ran out.

        Each claimed row carries ``token`` (a fresh one when not given) until ``lease_until``;
        every later write checks it, so a worker whose lease was taken over writes nothing.
        ``attempts`` counts here, so a message that kills its worker still stops at the limit.
        Higher ``priority`` first. On PostgreSQL, rows another worker is claiming are skipped.
        """
        token = token or uuid.uuid4().hex
        rows = await self.tx.rows(_CLAIM_OUTBOX, now=now, lease_until=lease_until, limit=limit, token=token)
        messages = (as_model(OutboxMessage, _OUTBOX_NAMES, row) for row in rows)
        return sorted(messages, key=lambda m: (-m.priority, m.id or 0))

    async def finish(
        self,
        message_id: int,
        *,
        token: str | None,
        status: OutboxStatus,
        now: datetime,
        next_attempt_at: datetime | None = None,
        error: str | None = None,
        platform_message_id: str | None = None,
    ) -> bool:
        """Record a send's outcome; False (nothing written) when this lease was taken over."""
        return bool(
            await self.tx.count(
                _FINISH_OUTBOX,
                mid=message_id,
                token=token,
                new_status=status.value,
                error=error[:500] if error else None,
                next_at=next_attempt_at or now,
                sent=now if status == OutboxStatus.SENT else None,
                pmid=platform_message_id if status == OutboxStatus.SENT else None,
            )
        )

    async def defer(
        self, message_id: int, *, token: str | None, until: datetime, reason: str, held: bool = False
    ) -> bool:
        """Put a claimed message back unsent until ``until`` (the claim's attempt is given back).

        ``held`` marks it ``held`` (over a budget) rather than ``pending`` (waiting for hours).
        """
        status = OutboxStatus.HELD if held else OutboxStatus.PENDING
        return bool(
            await self.tx.count(
                _DEFER_OUTBOX, mid=message_id, token=token, new_status=status.value, until=until, reason=reason[:200]
            )
        )

    async def budget_used(self, *, recipient_id: int, since: datetime) -> int:
        """Budgeted (priority above 0) messages sent to a person since ``since``."""
        return int(await self.tx.scalar(_BUDGET_USED, rid=recipient_id, since=since))

    async def counts(self) -> dict[str, int]:
        return {str(row[0]): int(row[1]) for row in await self.tx.rows(_OUTBOX_COUNTS)}

    async def waiting(self, limit: int = 20) -> list[OutboxMessage]:
        """Messages waiting for a reason (delivery hours, the weekly budget), soonest first."""
        return await self.tx.models(OutboxMessage, _OUTBOX_HELD, limit=limit)

    async def failures(self, limit: int = 10) -> list[OutboxMessage]:
        """The last messages given up on (failed or unreachable), newest first."""
        return await self.tx.models(OutboxMessage, _OUTBOX_FAILURES, limit=limit)

    async def all(self) -> list[OutboxMessage]:
        return await self.tx.models(OutboxMessage, _ALL_OUTBOX)

    async def find(
        self, *, kind: str, subject: str, recipient_id: int | None = None, channel: str | None = None, period: str = ""
    ) -> OutboxMessage | None:
        """The message queued for (kind, subject, period, recipient or channel), to say how its delivery went."""
        if channel is not None:
            return await self.tx.model(
                OutboxMessage, _FIND_CHANNEL_OUTBOX, kind=kind, subject=subject[:120], period=period, to=channel
            )
        if recipient_id is None:
            raise ValueError("find needs a recipient_id or a channel")
        return await self.tx.model(
            OutboxMessage, _FIND_OUTBOX, kind=kind, subject=subject[:120], period=period, to=recipient_id
        )

    async def reachable_again(self, *, recipient_id: int, now: datetime) -> int:
        """The person can be reached now (they wrote to the bot, installed the app): their messages
        held as unreachable for less than ``UNREACHABLE_KEPT`` are due again. Returns how many."""
        return await self.tx.count(_RETRY_UNREACHABLE, rid=recipient_id, since=now - UNREACHABLE_KEPT, now=now)

    async def forget_sent_before(self, *, before: datetime) -> int:
        """Delete messages delivered before ``before``; failed and unreachable ones stay for the operator."""
        return await self.tx.count(_FORGET_SENT, before=before)

    async def summary(self) -> OutboxSummary:
        """How many messages are in each state, and when the oldest still waiting was queued."""
        rows = await self.tx.rows(_OUTBOX_BY_STATUS)
        counts = {str(status): int(count) for status, count, _ in rows}
        waiting = [oldest for status, _, oldest in rows if status in _WAITING and oldest is not None]
        return OutboxSummary(counts=counts, oldest_pending=min(waiting) if waiting else None)


_WAITING = frozenset({OutboxStatus.PENDING.value, OutboxStatus.SENDING.value})


@dataclass(frozen=True, slots=True)
class OutboxSummary:
    counts: Mapping[str, int]
    oldest_pending: datetime | None


# --- platform conversation references ---------------------------------------------------------

_REFERENCE_WHERE = (
    REFERENCE.c.platform == P("platform"),
    REFERENCE.c.workspace == P("workspace"),
    REFERENCE.c.scope == P("scope"),
    REFERENCE.c.target == P("target"),
)
_LOAD_REFERENCE = Statement(sa.select(REFERENCE.c.reference).where(*_REFERENCE_WHERE))


def _save_reference(dialect: str) -> sa.Executable:
    stmt = dialect_insert(dialect)(REFERENCE)
    upsert: sa.Executable = stmt.on_conflict_do_update(
        index_elements=["platform", "workspace", "scope", "target"],
        set_={"reference": stmt.excluded.reference, "updated_at": stmt.excluded.updated_at},
    )
    return upsert


_SAVE_REFERENCE = Statement(
    _save_reference, keys=("platform", "workspace", "scope", "target", "reference", "updated_at")
)


class References:
    """What a platform needs to message a person or a channel later (Teams' conversation references)."""

    __slots__ = ("tx",)

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def save(
        self, *, platform: str, workspace: str, scope: str, target: str, reference: dict[str, Any], now: datetime
    ) -> None:
        values = {
            "platform": platform,
            "workspace": workspace,
            "scope": scope,
            "target": target,
            "reference": reference,
            "updated_at": now,
        }
        await self.tx.count(_SAVE_REFERENCE, values)

    async def forget(self, *, platform: str, workspace: str, scope: str, target: str) -> int:
        """Drop a reference (the app was removed there): nothing is sent there until it is saved again."""
        return await self.tx.count(
            sa.delete(REFERENCE).where(
                REFERENCE.c.platform == platform, REFERENCE.c.workspace == workspace,
                REFERENCE.c.scope == scope, REFERENCE.c.target == target,
            )
        )

    async def load(self, *, platform: str, workspace: str, scope: str, target: str) -> dict[str, Any] | None:
        found = await self.tx.scalar(
            _LOAD_REFERENCE, platform=platform, workspace=workspace, scope=scope, target=target
        )
        return cast(dict[str, Any] | None, found)

    async def workspace_of(self, *, platform: str, scope: str, target: str) -> str | None:
        """The workspace (Teams tenant) of the newest reference to ``target``, for an address that
        names only a channel (``BRM_BOT_BRM_CHANNEL``); Teams channel ids are unique across tenants."""
        found = await self.tx.scalar(
            sa.select(REFERENCE.c.workspace)
            .where(REFERENCE.c.platform == platform, REFERENCE.c.scope == scope, REFERENCE.c.target == target)
            .order_by(REFERENCE.c.updated_at.desc())
            .limit(1)
        )
        return str(found) if found is not None else None


# --- scheduled job runs -------------------------------------------------------------------------

_JOB_RUN_KEYS = tuple(c for c in _names(JOB_RUN) if c != "id")
_INSERT_JOB_RUN = Statement(insert_ignoring(JOB_RUN), keys=_JOB_RUN_KEYS)
_JOB_PERIOD = (JOB_RUN.c.job == P("job"), JOB_RUN.c.period == P("period"))
_TAKE_OVER_RUN = Statement(
    sa.update(JOB_RUN)
    .where(
        *_JOB_PERIOD,
        JOB_RUN.c.finished_at.is_(None),
        JOB_RUN.c.lease_until < P("now", type_=JOB_RUN.c.lease_until.type),
    )
    .values(
        lease_token=P("token", type_=JOB_RUN.c.lease_token.type),
        lease_until=P("until", type_=JOB_RUN.c.lease_until.type),
        attempts=JOB_RUN.c.attempts + 1,
    )
)
_FORCE_RUN = Statement(
    sa.update(JOB_RUN)
    .where(*_JOB_PERIOD)
    .values(
        lease_token=P("token", type_=JOB_RUN.c.lease_token.type),
        lease_until=P("until", type_=JOB_RUN.c.lease_until.type),
        attempts=JOB_RUN.c.attempts + 1,
        finished_at=None,
        forced=True,
    )
)
_FINISH_RUN = Statement(
    sa.update(JOB_RUN)
    .where(*_JOB_PERIOD, JOB_RUN.c.lease_token == P("token", type_=JOB_RUN.c.lease_token.type))
    .values(
        finished_at=P("now", type_=JOB_RUN.c.finished_at.type),
        enqueued=P("enqueued", type_=JOB_RUN.c.enqueued.type),
    )
)
_UNFINISHED_RUNS = Statement(
    sa.select(JOB_RUN)
    .where(JOB_RUN.c.finished_at.is_(None), JOB_RUN.c.lease_until < P("now", type_=JOB_RUN.c.lease_until.type))
    .order_by(JOB_RUN.c.id)
)
_LAST_RUNS = Statement(
    sa.select(JOB_RUN.c.job, sa.func.max(JOB_RUN.c.started_at), sa.func.max(JOB_RUN.c.finished_at)).group_by(
        JOB_RUN.c.job
    )
)
_JOB_RUN = Statement(sa.select(JOB_RUN).where(*_JOB_PERIOD))


class Jobs:
    """Runs of scheduled jobs: a (job, period) row is claimed before any work, once per deployment."""

    __slots__ = ("tx",)

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def claim(
        self, *, job: str, period: str, token: str, now: datetime, lease_until: datetime, force: bool = False
    ) -> bool:
        """Claim the run of ``job`` for ``period``; False when another run has it or finished it.

        A run whose lease ran out unfinished (its process died) is taken over. ``force`` takes
        the period whatever its row says (``brm-bot jobs run``).
        """
        run = JobRun(job=job, period=period, lease_token=token, lease_until=lease_until, attempts=1,
                     started_at=now, finished_at=None, enqueued=0, forced=force)
        if await self.tx.count(_INSERT_JOB_RUN, values_of(run)):
            return True
        statement = _FORCE_RUN if force else _TAKE_OVER_RUN
        return bool(await self.tx.count(statement, job=job, period=period, token=token, until=lease_until, now=now))

    async def finish(self, *, job: str, period: str, token: str, now: datetime, enqueued: int) -> bool:
        """Mark the run done; False when its lease was taken over meanwhile."""
        return bool(await self.tx.count(_FINISH_RUN, job=job, period=period, token=token, now=now, enqueued=enqueued))

    async def get(self, *, job: str, period: str) -> JobRun | None:
        return await self.tx.model(JobRun, _JOB_RUN, job=job, period=period)

    async def unfinished(self, *, now: datetime) -> list[JobRun]:
        """Runs that died half-way (lease run out, never finished): the next tick finishes them."""
        return await self.tx.models(JobRun, _UNFINISHED_RUNS, now=now)

    async def last_runs(self) -> dict[str, tuple[datetime | None, datetime | None]]:
        """Per job: when its latest run started, and when its latest run finished."""
        return {str(job): (started, finished) for job, started, finished in await self.tx.rows(_LAST_RUNS)}


# --- relationships, touchpoints, snoozes --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RelationshipView:
    """A BRM's relationship with one partner, with what health needs to judge it."""

    relationship: Relationship
    partner: BusinessPartner
    brm: Person


_RELATIONSHIPS = Statement(
    sa.select(RELATIONSHIP, PARTNER, PERSON)
    .join(PARTNER, PARTNER.c.id == RELATIONSHIP.c.partner_id)
    .join(PERSON, PERSON.c.id == RELATIONSHIP.c.brm_id)
    .order_by(PERSON.c.id, PARTNER.c.name)
)
_RELATIONSHIPS_OF = Statement(
    sa.select(RELATIONSHIP, PARTNER, PERSON)
    .join(PARTNER, PARTNER.c.id == RELATIONSHIP.c.partner_id)
    .join(PERSON, PERSON.c.id == RELATIONSHIP.c.brm_id)
    .where(RELATIONSHIP.c.brm_id == P("brm_id"))
    .order_by(PARTNER.c.name)
)
_BRMS_WITH_RELATIONSHIPS = Statement(
    sa.select(PERSON)
    .where(PERSON.c.id.in_(sa.select(RELATIONSHIP.c.brm_id)))
    .order_by(PERSON.c.id)
)
_OPEN_OF_PARTNER = Statement(
    sa.select(REQUEST)
    .where(REQUEST.c.partner_id == P("partner_id"), REQUEST.c.status.in_(_OPEN))
    .order_by(REQUEST.c.id)
)
_TOUCHED = Statement(
    sa.update(RELATIONSHIP)
    .where(
        RELATIONSHIP.c.partner_id == P("partner_id"),
        sa.or_(
            RELATIONSHIP.c.last_touchpoint_at.is_(None),
            RELATIONSHIP.c.last_touchpoint_at < P("at", type_=RELATIONSHIP.c.last_touchpoint_at.type),
        ),
    )
    .values(last_touchpoint_at=P("at", type_=RELATIONSHIP.c.last_touchpoint_at.type))
)
_SET_MATURITY = Statement(
    sa.update(PARTNER).where(PARTNER.c.id == P("pid")).values(maturity=P("stage", type_=PARTNER.c.maturity.type))
)
_TOUCHPOINTS_OF = Statement(
    sa.select(TOUCHPOINT)
    .where(TOUCHPOINT.c.partner_id == P("partner_id"))
    .order_by(TOUCHPOINT.c.happened_on.desc(), TOUCHPOINT.c.id.desc())
    .limit(P("limit"))
)
_MATURITY_HISTORY = Statement(
    sa.select(MATURITY_CHANGE).where(MATURITY_CHANGE.c.partner_id == P("partner_id")).order_by(MATURITY_CHANGE.c.id)
)
_ACTIVE_SNOOZES = Statement(
    sa.select(SNOOZE)
    .where(SNOOZE.c.brm_id == P("brm_id"), SNOOZE.c.until > P("now", type_=SNOOZE.c.until.type))
    .order_by(SNOOZE.c.id)
)
_ALL_ACTIVE_SNOOZES = Statement(
    sa.select(SNOOZE).where(SNOOZE.c.until > P("now", type_=SNOOZE.c.until.type)).order_by(SNOOZE.c.id)
)
_SNOOZE_REASON = Statement(
    sa.update(SNOOZE)
    .where(SNOOZE.c.id == P("sid"), SNOOZE.c.brm_id == P("bid"))
    .values(reason=P("reason", type_=SNOOZE.c.reason.type))
)
_RELATIONSHIP_NAMES = _names(RELATIONSHIP)


def _views(rows: Sequence[Row]) -> list[RelationshipView]:
    a, b = len(_RELATIONSHIP_NAMES), len(_RELATIONSHIP_NAMES) + len(_PARTNER_NAMES)
    return [
        RelationshipView(
            as_model(Relationship, _RELATIONSHIP_NAMES, row[:a]),
            as_model(BusinessPartner, _PARTNER_NAMES, row[a:b]),
            as_model(Person, _PERSON_NAMES, row[b:]),
        )
        for row in rows
    ]


class Relationships:
    """BRMs' relationships with partners, their touchpoints, maturity stages and snoozed nudges."""

    __slots__ = ("tx",)

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def of_brm(self, brm_id: int) -> list[RelationshipView]:
        return _views(await self.tx.rows(_RELATIONSHIPS_OF, brm_id=brm_id))

    async def all(self) -> list[RelationshipView]:
        return _views(await self.tx.rows(_RELATIONSHIPS))

    async def brms(self) -> list[Person]:
        """Everyone with at least one relationship (whom the nudges job considers)."""
        return await self.tx.models(Person, _BRMS_WITH_RELATIONSHIPS)

    async def open_requests(self, partner_id: int) -> list[DemandRequest]:
        return await self.tx.models(DemandRequest, _OPEN_OF_PARTNER, partner_id=partner_id)

    async def log_touchpoint(
        self,
        *,
        partner_id: int,
        brm_id: int,
        kind: str,
        happened_on: date,
        at: datetime,
        now: datetime,
        note: str | None = None,
        link: str | None = None,
    ) -> Touchpoint:
        """Record a touchpoint; ``at`` (its moment in UTC) becomes the partner's last touchpoint if later."""
        touchpoint = Touchpoint(partner_id=partner_id, brm_id=brm_id, kind=_plain(kind), happened_on=happened_on,
                                note=note, link=link, created_at=now)
        await add(self.tx, touchpoint)
        await self.tx.count(_TOUCHED, partner_id=partner_id, at=at)
        return touchpoint

    async def touchpoints(self, partner_id: int, limit: int = 10) -> list[Touchpoint]:
        return await self.tx.models(Touchpoint, _TOUCHPOINTS_OF, partner_id=partner_id, limit=limit)

    async def set_maturity(
        self, partner: BusinessPartner, *, stage: str, by_person_id: int, now: datetime
    ) -> MaturityChange:
        assert partner.id is not None
        change = MaturityChange(partner_id=partner.id, by_person_id=by_person_id, from_stage=_plain(partner.maturity),
                                to_stage=_plain(stage), at=now)
        await self.tx.count(_SET_MATURITY, pid=partner.id, stage=_plain(stage))
        await add(self.tx, change)
        return change

    async def maturity_history(self, partner_id: int) -> list[MaturityChange]:
        return await self.tx.models(MaturityChange, _MATURITY_HISTORY, partner_id=partner_id)

    async def snooze(
        self, *, brm_id: int, item: str, until: datetime, now: datetime, reason: str | None = None
    ) -> Snooze:
        snooze = Snooze(brm_id=brm_id, item=item, until=until, reason=reason, created_at=now)
        await add(self.tx, snooze)
        return snooze

    async def set_snooze_reason(self, *, snooze_id: int, brm_id: int, reason: str) -> bool:
        return bool(await self.tx.count(_SNOOZE_REASON, sid=snooze_id, bid=brm_id, reason=reason[:300]))

    async def snoozed(self, *, brm_id: int, now: datetime) -> list[Snooze]:
        """The BRM's snoozes still running at ``now``."""
        return await self.tx.models(Snooze, _ACTIVE_SNOOZES, brm_id=brm_id, now=now)

    async def all_snoozed(self, *, now: datetime) -> list[Snooze]:
        """Every running snooze: what leaders see, so snoozing never hides a problem."""
        return await self.tx.models(Snooze, _ALL_ACTIVE_SNOOZES, now=now)


class Store:
    """Everything storage offers, on one transaction (``db.transaction()`` yields it)."""

    __slots__ = (
        "digest",
        "directory",
        "events",
        "jobs",
        "outbox",
        "partners",
        "people",
        "privacy",
        "references",
        "relationships",
        "requests",
        "state",
        "survey_results",
        "surveys",
        "tx",
        "values",
        "workflow",
    )

    def __init__(self, tx: Tx) -> None:
        self.tx = tx
        self.privacy = Privacy(tx)
        self.events = Events(tx)
        self.people = People(tx)
        self.partners = Partners(tx)
        self.requests = Requests(tx)
        self.state = States(tx)
        self.outbox = Outbox(tx)
        self.references = References(tx)
        self.jobs = Jobs(tx)
        self.relationships = Relationships(tx)
        self.directory = Directory(tx)
        self.workflow = Workflow(tx)
        self.surveys = Surveys(tx)
        self.survey_results = SurveyResults(tx)
        self.digest = Digests(tx)
        self.values = ValueChecks(tx)

    async def add(self, obj: SQLModel) -> Any:
        """Insert any model object (demo data, imports); its new id."""
        return await add(self.tx, obj)

    async def rows(self, stmt: sa.Executable, params: Mapping[str, Any] | None = None) -> list[Row]:
        """An ad-hoc statement built from the tables (compiled per call: for commands, not turns)."""
        return await self.tx.rows(stmt, params)


# --- the organisation: imports of people and partners (issue 11) -------------------------------

_PARTNER_BY_NAME = Statement(sa.select(PARTNER).where(sa.func.lower(PARTNER.c.name) == P("name")))
_UPDATE_PARTNER = Statement(
    sa.update(PARTNER)
    .where(PARTNER.c.id == P("pid"))
    .values(
        maturity=P("new_maturity", type_=PARTNER.c.maturity.type),
        executive_id=P("new_executive_id", type_=PARTNER.c.executive_id.type),
        executive=P("new_executive", type_=PARTNER.c.executive.type),
    )
)
_UPDATE_PERSON = Statement(
    sa.update(PERSON)
    .where(PERSON.c.id == P("pid"))
    .values(
        name=P("new_name", type_=PERSON.c.name.type),
        role=P("new_role", type_=PERSON.c.role.type),
        time_zone=P("new_time_zone", type_=PERSON.c.time_zone.type),
        partner_id=P("new_partner_id", type_=PERSON.c.partner_id.type),
    )
)
_RELATIONSHIPS_OF_PARTNER = Statement(
    sa.select(RELATIONSHIP).where(RELATIONSHIP.c.partner_id == P("partner_id")).order_by(RELATIONSHIP.c.id)
)
_DEMOTE = Statement(
    sa.update(RELATIONSHIP)
    .where(RELATIONSHIP.c.partner_id == P("partner_id"), RELATIONSHIP.c.brm_id != P("brm_id"))
    .values(is_primary=False)
)
_PROMOTE = Statement(
    sa.update(RELATIONSHIP)
    .where(RELATIONSHIP.c.id == P("rid"))
    .values(is_primary=True, cadence_days=P("new_cadence", type_=RELATIONSHIP.c.cadence_days.type))
)
_PEOPLE_WITH_ROLE = Statement(sa.select(PERSON).where(PERSON.c.role == P("role")).order_by(PERSON.c.name))


class Directory:
    """The organisation as the import files describe it: partners, people and who owns whom."""

    __slots__ = ("tx",)

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def partner_by_name(self, name: str) -> BusinessPartner | None:
        """A partner by name, ignoring case and surrounding spaces."""
        return await self.tx.model(BusinessPartner, _PARTNER_BY_NAME, name=name.strip().lower())

    async def add_partner(self, *, name: str, maturity: str, now: datetime) -> BusinessPartner:
        partner = BusinessPartner(name=name.strip(), maturity=maturity, created_at=now)
        await add(self.tx, partner)
        return partner

    async def update_partner(
        self, partner_id: int, *, maturity: str, executive_id: int | None, executive: str | None
    ) -> None:
        await self.tx.count(
            _UPDATE_PARTNER,
            pid=partner_id,
            new_maturity=maturity,
            new_executive_id=executive_id,
            new_executive=executive[:120] if executive else None,
        )

    async def update_person(
        self, person_id: int, *, name: str, role: str, time_zone: str, partner_id: int | None
    ) -> None:
        await self.tx.count(
            _UPDATE_PERSON,
            pid=person_id,
            new_name=name,
            new_role=role,
            new_time_zone=time_zone,
            new_partner_id=partner_id,
        )

    async def relationships(self, partner_id: int) -> list[Relationship]:
        return await self.tx.models(Relationship, _RELATIONSHIPS_OF_PARTNER, partner_id=partner_id)

    async def set_primary_brm(self, *, partner_id: int, brm_id: int, cadence_days: int, now: datetime) -> None:
        """Make ``brm_id`` the partner's primary BRM (any other BRM of the partner stays, not primary)."""
        await self.tx.count(_DEMOTE, partner_id=partner_id, brm_id=brm_id)
        existing = next((r for r in await self.relationships(partner_id) if r.brm_id == brm_id), None)
        if existing is None:
            await add(
                self.tx,
                Relationship(
                    partner_id=partner_id, brm_id=brm_id, is_primary=True, cadence_days=cadence_days, created_at=now
                ),
            )
        else:
            await self.tx.count(_PROMOTE, rid=existing.id, new_cadence=cadence_days)

    async def with_role(self, role: Role | str) -> list[Person]:
        return await self.tx.models(Person, _PEOPLE_WITH_ROLE, role=_plain(role))


# --- the BRM workflow: assignment, duplicates, notes, watchers (issue 11) ------------------------

NOTE = table(RequestNote)
WATCHER = table(RequestWatcher)

_SET_BRM = Statement(
    sa.update(REQUEST)
    .where(REQUEST.c.id == P("rid"))
    .values(brm_id=P("new_brm", type_=REQUEST.c.brm_id.type), updated_at=P("now", type_=REQUEST.c.updated_at.type))
)
_SET_DUPLICATE = Statement(
    sa.update(REQUEST)
    .where(REQUEST.c.id == P("rid"))
    .values(duplicate_of_id=P("of", type_=REQUEST.c.duplicate_of_id.type))
)
_NOTES = Statement(sa.select(NOTE).where(NOTE.c.request_id == P("rid")).order_by(NOTE.c.id))
_WATCH = Statement(insert_ignoring(WATCHER), keys=("request_id", "person_id", "created_at"))
_WATCHERS = Statement(
    sa.select(WATCHER.c.person_id).where(WATCHER.c.request_id == P("rid")).order_by(WATCHER.c.person_id)
)
_UNASSIGNED = Statement(
    sa.select(REQUEST)
    .where(REQUEST.c.status.in_(_OPEN), sa.or_(REQUEST.c.partner_id.is_(None), REQUEST.c.brm_id.is_(None)))
    .order_by(REQUEST.c.updated_at.desc(), REQUEST.c.id.desc())
    .limit(P("limit"))
)
_ALL_REQUESTS = Statement(sa.select(REQUEST).order_by(REQUEST.c.created_at, REQUEST.c.id))
_REQUESTS_OF_BRM = Statement(
    sa.select(REQUEST)
    .where(
        sa.or_(
            REQUEST.c.brm_id == P("me", type_=sa.Integer),
            REQUEST.c.partner_id.in_(
                sa.select(RELATIONSHIP.c.partner_id).where(RELATIONSHIP.c.brm_id == P("me", type_=sa.Integer))
            ),
        )
    )
    .order_by(REQUEST.c.created_at, REQUEST.c.id)
)


class Workflow:
    """What BRMs do to requests besides their status: assign, link, ask, and who watches."""

    __slots__ = ("tx",)

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def assign(self, request: DemandRequest, *, brm_id: int | None, now: datetime) -> None:
        await self.tx.count(_SET_BRM, rid=request.id, new_brm=brm_id, now=now)
        refresh(request, brm_id=brm_id, updated_at=now)

    async def link_duplicate(self, request: DemandRequest, *, of_id: int) -> None:
        await self.tx.count(_SET_DUPLICATE, rid=request.id, of=of_id)
        refresh(request, duplicate_of_id=of_id)

    async def add_note(self, *, request_id: int, by_person_id: int, kind: str, text: str, now: datetime) -> RequestNote:
        note = RequestNote(request_id=request_id, by_person_id=by_person_id, kind=kind, text=text, at=now)
        await add(self.tx, note)
        return note

    async def notes(self, request_id: int) -> list[RequestNote]:
        return await self.tx.models(RequestNote, _NOTES, rid=request_id)

    async def watch(self, *, request_id: int, person_id: int, now: datetime) -> bool:
        """Add a watcher; False if they watched it already."""
        return bool(await self.tx.count(_WATCH, request_id=request_id, person_id=person_id, created_at=now))

    async def watchers(self, request_id: int) -> list[int]:
        return [int(i) for i in await self.tx.scalars(_WATCHERS, rid=request_id)]

    async def unassigned(self, *, limit: int = 50) -> list[DemandRequest]:
        """Open requests with no business partner or no BRM, newest activity first."""
        return await self.tx.models(DemandRequest, _UNASSIGNED, limit=limit)

    async def pipeline(self, person: Person) -> list[DemandRequest]:
        """Every request a BRM owns (through a partner or directly), or every request for anyone else."""
        if person.role == Role.BRM:
            return await self.tx.models(DemandRequest, _REQUESTS_OF_BRM, me=person.id)
        return await self.tx.models(DemandRequest, _ALL_REQUESTS)
