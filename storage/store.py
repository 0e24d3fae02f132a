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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from enum import Enum
from typing import Any, cast

import sqlalchemy as sa
from sqlmodel import SQLModel

from storage.models import (
    OPEN_STATUSES,
    BusinessPartner,
    ConversationReference,
    DemandRequest,
    Identity,
    OutboxMessage,
    OutboxStatus,
    Person,
    ProcessedEvent,
    Relationship,
    Role,
    Status,
    StatusChange,
)
from storage.models import (
    ConversationState as StateRow,
)
from storage.privacy import Privacy
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

P = sa.bindparam


def _names(t: sa.Table) -> list[str]:
    return [c.name for c in t.c]


def _plain(value: Any) -> Any:
    """Enumerations as the strings the database holds, so a written model reads like a read one."""
    return value.value if isinstance(value, Enum) else value


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
_FORGET_EVENTS = Statement(sa.delete(EVENT).where(EVENT.c.at < P("before", type_=EVENT.c.at.type)))


class Events:
    """Inbound event ids already handled: a platform's retry of one is recognised."""

    __slots__ = ("tx",)

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def claim(self, *, platform: str, event_id: str, now: datetime) -> bool:
        """Record an event id; False when it was recorded before (a repeat)."""
        return bool(await self.tx.count(_CLAIM, platform=platform, event_id=event_id[:200], at=now))

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
    me = P("me", type_=sa.Integer)
    if scope == "own":
        return REQUEST.c.requester_id == me
    if scope == "brm":
        owned = sa.select(RELATIONSHIP.c.partner_id).where(RELATIONSHIP.c.brm_id == me)
        return sa.or_(REQUEST.c.requester_id == me, REQUEST.c.brm_id == me, REQUEST.c.partner_id.in_(owned))
    return sa.true()


@functools.cache
def _visible_list(scope: str, only_open: bool) -> Statement:
    where = [_visible(scope)]
    if only_open:
        where.append(REQUEST.c.status.in_(_OPEN))
    return Statement(sa.select(REQUEST).where(*where).order_by(REQUEST.c.id.desc()).limit(P("limit")))


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
        request.status = to.value
        request.updated_at = now
        return change

    async def get(self, request_id: int) -> DemandRequest | None:
        return await self.tx.model(DemandRequest, _REQUEST_BY_ID, id=request_id)

    async def history(self, request_id: int) -> list[StatusChange]:
        return await self.tx.models(StatusChange, _HISTORY, id=request_id)

    async def visible(
        self, person: Person, *, only_open: bool = False, mine_only: bool = False, limit: int = 50
    ) -> list[DemandRequest]:
        """Requests ``person`` may see, newest first: a requester their own, a BRM their partners'."""
        scope = "own" if mine_only else _scope(person)
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

    async def open_titles(self, partner_id: int) -> list[tuple[int, str]]:
        """(id, title) of the partner's open requests: just what a duplicate check compares."""
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
        if state is None or self.tx.dialect != "postgresql" or self.tx.begun:
            if not await events.claim(platform=key.platform, event_id=event_id, now=now):
                return False
            if state is not None:
                await self.save(key, state, expected_version=expected_version)
            return True
        params = {**_key_params(key), "event_id": event_id, **_state_values(state, expected_version)}
        if expected_version is None:
            row = await self.tx.first(_FINISH_INSERT, params)
        else:
            row = await self.tx.first(_FINISH_UPDATE, {**params, "expected": expected_version})
        assert row is not None
        seen, written, _claimed = row
        if seen:
            return False
        if not written:
            raise StaleState(key)
        return True

    async def forget_before(self, *, before: datetime) -> int:
        return await self.tx.count(_DELETE_STATE_BEFORE, before=before)


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
    OUTBOX.c.status.in_(constants([OutboxStatus.PENDING.value, OutboxStatus.SENDING.value])),
    OUTBOX.c.next_attempt_at <= P("now", type_=OUTBOX.c.next_attempt_at.type),
)
_CLAIM_OUTBOX = Statement(
    sa.update(OUTBOX)
    .where(
        OUTBOX.c.id.in_(
            sa.select(OUTBOX.c.id).where(_DUE).order_by(OUTBOX.c.id).limit(P("limit")).with_for_update(skip_locked=True)
        )
    )
    .values(status=OutboxStatus.SENDING.value, next_attempt_at=P("lease_until", type_=OUTBOX.c.next_attempt_at.type))
    .returning(*OUTBOX.c)
)
_FINISH_OUTBOX = Statement(
    sa.update(OUTBOX)
    .where(OUTBOX.c.id == P("mid"))
    .values(
        status=P("new_status", type_=OUTBOX.c.status.type),
        attempts=OUTBOX.c.attempts + 1,
        last_error=P("error", type_=OUTBOX.c.last_error.type),
        next_attempt_at=P("next_at", type_=OUTBOX.c.next_attempt_at.type),
        sent_at=sa.func.coalesce(P("sent", type_=OUTBOX.c.sent_at.type), OUTBOX.c.sent_at),
        platform_message_id=sa.func.coalesce(P("pmid", type_=OUTBOX.c.platform_message_id.type),
                                             OUTBOX.c.platform_message_id),
    )
)
_ALL_OUTBOX = Statement(sa.select(OUTBOX).order_by(OUTBOX.c.id))
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
        self, *, kind: str, subject: str, recipient_id: int, payload: dict[str, Any], now: datetime, period: str = ""
    ) -> bool:
        """Queue a message; False if that (kind, subject, period, recipient) exists already."""
        message = OutboxMessage(
            kind=kind,
            subject=subject[:120],
            period=period,
            recipient_id=recipient_id,
            payload=payload,
            status=OutboxStatus.PENDING.value,
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
        return bool(await self.tx.count(_ENQUEUE, values_of(message)))

    async def claim(self, *, now: datetime, lease_until: datetime, limit: int = 50) -> list[OutboxMessage]:
        """Claim due messages for one worker: pending ones, and claimed ones whose lease ran out.

        A claimed row is leased until ``lease_until``; a worker that dies mid-send leaves it to
        be claimed again after that. On PostgreSQL, rows another worker is claiming are skipped.
        """
        rows = await self.tx.rows(_CLAIM_OUTBOX, now=now, lease_until=lease_until, limit=limit)
        return sorted((as_model(OutboxMessage, _OUTBOX_NAMES, row) for row in rows), key=lambda m: m.id or 0)

    async def finish(
        self,
        message_id: int,
        *,
        status: OutboxStatus,
        now: datetime,
        next_attempt_at: datetime | None = None,
        error: str | None = None,
        platform_message_id: str | None = None,
    ) -> None:
        await self.tx.count(
            _FINISH_OUTBOX,
            mid=message_id,
            new_status=status.value,
            error=error[:500] if error else None,
            next_at=next_attempt_at or now,
            sent=now if status == OutboxStatus.SENT else None,
            pmid=platform_message_id if status == OutboxStatus.SENT else None,
        )

    async def all(self) -> list[OutboxMessage]:
        return await self.tx.models(OutboxMessage, _ALL_OUTBOX)

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


class Store:
    """Everything storage offers, on one transaction (``db.transaction()`` yields it)."""

    __slots__ = ("events", "outbox", "partners", "people", "privacy", "references", "requests", "state", "tx")

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

    async def add(self, obj: SQLModel) -> Any:
        """Insert any model object (demo data, imports); its new id."""
        return await add(self.tx, obj)

    async def rows(self, stmt: sa.Executable, params: Mapping[str, Any] | None = None) -> list[Row]:
        """An ad-hoc statement built from the tables (compiled per call: for commands, not turns)."""
        return await self.tx.rows(stmt, params)
