"""Queries and writes, each taking the caller's transaction: a :class:`~storage.tx.Tx` or a session.

Nothing here commits: the caller owns the transaction, so one turn of a conversation
(request, status change, outbox rows, conversation state) is written whole or not at all.

What a chat turn runs is plain SQL (:mod:`storage.tx`), written once for both databases;
it takes either a ``Tx`` (the engine's fast path) or an ORM session (everyone else), and
returns the same model objects either way. The rest (demo data, exports, the outbox worker)
uses the ORM.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

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
    Role,
    Status,
    StatusChange,
    utcnow,
)
from storage.tx import Sql, Tx, as_tx
from storage.types import UTCDateTime

Db = Tx | AsyncSession


def _insert(session: AsyncSession, table: Any) -> Any:
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


# --- rows to models -------------------------------------------------------------------------


def _reader(model: Any) -> tuple[str, Any]:
    """The column list to SELECT for ``model`` and a function turning one row into it.

    Rows become model objects through ``model_construct`` (no validation: the row came from
    our own table), with times, days and JSON in Python's form whichever driver read them.
    """
    columns = list(model.__table__.c)  # type: ignore[attr-defined]
    converters: list[tuple[str, Any]] = []
    for column in columns:
        kind = column.type
        if isinstance(kind, UTCDateTime | sa.DateTime):
            converters.append((column.name, Tx.dt))
        elif isinstance(kind, sa.Date):
            converters.append((column.name, Tx.day))
        elif isinstance(kind, sa.JSON):
            converters.append((column.name, Tx.json))
        elif isinstance(kind, sa.Boolean):
            converters.append((column.name, lambda v: None if v is None else bool(v)))
        else:
            converters.append((column.name, None))

    def read(row: Sequence[Any]) -> Any:
        pairs = zip(converters, row, strict=True)
        return model.model_construct(**{name: value if read is None else read(value) for (name, read), value in pairs})

    return ", ".join(f"{model.__tablename__}.{c.name}" for c in columns), read


sa.orm.configure_mappers()  # model_construct needs the attributes instrumented before any query ran
PERSON_COLUMNS, _person = _reader(Person)
PARTNER_COLUMNS, _partner = _reader(BusinessPartner)
REQUEST_COLUMNS, _request = _reader(DemandRequest)
CHANGE_COLUMNS, _change = _reader(StatusChange)
_OPEN = ", ".join(f"'{s.value}'" for s in sorted(OPEN_STATUSES))


# --- inbound events -----------------------------------------------------------------------

_CLAIM = Sql(
    "INSERT INTO processed_event (platform, event_id, at) VALUES (:platform, :event_id, :at) ON CONFLICT DO NOTHING"
)


async def claim_event(db: Db, *, platform: str, event_id: str, now: datetime) -> bool:
    """Record an inbound event id; False when it was already processed (a platform retry)."""
    tx = await as_tx(db)
    return bool(await tx.execute(_CLAIM, {"platform": platform, "event_id": event_id[:200], "at": now}))


async def forget_events_before(session: AsyncSession, *, before: datetime) -> int:
    result = await session.execute(sa.delete(ProcessedEvent).where(col(ProcessedEvent.at) < before))
    return int(result.rowcount or 0)


# --- people ---------------------------------------------------------------------------------

_PERSON_BY_IDENTITY = Sql(
    f"SELECT {PERSON_COLUMNS} FROM person JOIN identity ON identity.person_id = person.id "
    "WHERE identity.platform = :platform AND identity.workspace = :workspace AND identity.user_id = :user_id"
)
_PERSON_BY_EMAIL = Sql(f"SELECT {PERSON_COLUMNS} FROM person WHERE person.email = :email")
_PERSON_BY_DIRECTORY_ID = Sql(
    f"SELECT {PERSON_COLUMNS} FROM person JOIN identity ON identity.person_id = person.id "
    "WHERE identity.directory_id = :directory_id ORDER BY identity.id LIMIT 1"
)
_PERSON = Sql(f"SELECT {PERSON_COLUMNS} FROM person WHERE person.id = :id")
_ADD_PERSON = Sql(
    "INSERT INTO person (name, email, role, time_zone, partner_id, created_at) "
    "VALUES (:name, :email, :role, :time_zone, :partner_id, :created_at) RETURNING id"
)
_ADD_IDENTITY = Sql(
    "INSERT INTO identity (person_id, platform, workspace, user_id, directory_id, created_at) "
    "VALUES (:person_id, :platform, :workspace, :user_id, :directory_id, :created_at) ON CONFLICT DO NOTHING"
)


async def _one(db: Db, sql: Sql, params: dict[str, Any], read: Any) -> Any:
    row = await (await as_tx(db)).fetchone(sql, params)
    return read(row) if row is not None else None


async def person_by_identity(db: Db, *, platform: str, workspace: str, user_id: str) -> Person | None:
    params = {"platform": platform, "workspace": workspace, "user_id": user_id}
    return await _one(db, _PERSON_BY_IDENTITY, params, _person)  # type: ignore[no-any-return]


async def person_by_email(db: Db, email: str) -> Person | None:
    return await _one(db, _PERSON_BY_EMAIL, {"email": email.strip().lower()}, _person)  # type: ignore[no-any-return]


async def person_by_directory_id(db: Db, directory_id: str) -> Person | None:
    return await _one(db, _PERSON_BY_DIRECTORY_ID, {"directory_id": directory_id}, _person)  # type: ignore[no-any-return]


async def get_person(db: Db, person_id: int) -> Person | None:
    return await _one(db, _PERSON, {"id": person_id}, _person)  # type: ignore[no-any-return]


async def add_person(
    db: Db, *, name: str, email: str | None, role: Role, time_zone: str, partner_id: int | None = None
) -> Person:
    """A new person (the caller has checked that the email is free)."""
    values: dict[str, Any] = {
        "name": name,
        "email": email,
        "role": role.value,
        "time_zone": time_zone,
        "partner_id": partner_id,
        "created_at": utcnow(),
    }
    row = await (await as_tx(db)).fetchone(_ADD_PERSON, values)
    assert row is not None
    return Person.model_construct(id=row[0], **{**values, "role": role})


async def add_identity(
    db: Db,
    *,
    person_id: int,
    platform: str,
    workspace: str,
    user_id: str,
    directory_id: str | None = None,
) -> bool:
    """Link a platform account to a person; False if that account was already linked."""
    values = {
        "person_id": person_id,
        "platform": platform,
        "workspace": workspace,
        "user_id": user_id,
        "directory_id": directory_id,
        "created_at": utcnow(),
    }
    return bool(await (await as_tx(db)).execute(_ADD_IDENTITY, values))


async def identities_of(session: AsyncSession, person_id: int) -> Sequence[Identity]:
    stmt = select(Identity).where(Identity.person_id == person_id).order_by(col(Identity.id))
    return (await session.execute(stmt)).scalars().all()


async def people(session: AsyncSession) -> Sequence[Person]:
    return (await session.execute(select(Person).order_by(col(Person.id)))).scalars().all()


# --- partners and relationships ----------------------------------------------------------------

_PARTNERS = Sql(f"SELECT {PARTNER_COLUMNS} FROM business_partner ORDER BY business_partner.name")
_PARTNER = Sql(f"SELECT {PARTNER_COLUMNS} FROM business_partner WHERE business_partner.id = :id")
_PRIMARY_BRM = Sql(
    f"SELECT {PERSON_COLUMNS} FROM person JOIN relationship ON relationship.brm_id = person.id "
    "WHERE relationship.partner_id = :partner_id AND relationship.is_primary"
)
_OWNED_PARTNERS = Sql("SELECT partner_id FROM relationship WHERE brm_id = :brm_id ORDER BY partner_id")


async def partners(db: Db) -> list[BusinessPartner]:
    return [_partner(row) for row in await (await as_tx(db)).fetch(_PARTNERS, {})]


async def get_partner(db: Db, partner_id: int) -> BusinessPartner | None:
    return await _one(db, _PARTNER, {"id": partner_id}, _partner)  # type: ignore[no-any-return]


async def primary_brm(db: Db, partner_id: int) -> Person | None:
    return await _one(db, _PRIMARY_BRM, {"partner_id": partner_id}, _person)  # type: ignore[no-any-return]


async def partner_ids_owned_by(db: Db, brm_id: int) -> list[int]:
    return [row[0] for row in await (await as_tx(db)).fetch(_OWNED_PARTNERS, {"brm_id": brm_id})]


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


_ADD_REQUEST = Sql(
    "INSERT INTO demand_request (title, description, outcome, category, urgency, desired_date, requester_id, "
    "partner_id, brm_id, status, source_platform, source_channel, source_link, created_at, updated_at) "
    "VALUES (:title, :description, :outcome, :category, :urgency, :desired_date, :requester_id, :partner_id, "
    "(SELECT brm_id FROM relationship WHERE partner_id = :partner_id AND is_primary), :status, :source_platform, "
    ":source_channel, :source_link, :now, :now) RETURNING id, brm_id"
)
_ADD_CHANGE = Sql(
    "INSERT INTO status_change (request_id, by_person_id, at, from_status, to_status, note) "
    "VALUES (:request_id, :by_person_id, :at, :from_status, :to_status, :note)"
)


async def create_request(db: Db, new: NewRequest, *, now: datetime) -> DemandRequest:
    """Insert a request, owned by its partner's primary BRM, and its first status change."""
    tx = await as_tx(db)
    values: dict[str, Any] = {
        "title": new.title,
        "description": new.description,
        "outcome": new.outcome,
        "category": new.category,
        "urgency": new.urgency,
        "desired_date": new.desired_date,
        "requester_id": new.requester_id,
        "partner_id": new.partner_id,
        "status": Status.SUBMITTED.value,
        "source_platform": new.source_platform,
        "source_channel": new.source_channel,
        "source_link": new.source_link,
        "now": now,
    }
    row = await tx.fetchone(_ADD_REQUEST, values)
    assert row is not None
    request_id, brm_id = row[0], row[1]
    change = {
        "request_id": request_id,
        "by_person_id": new.requester_id,
        "at": now,
        "from_status": None,
        "to_status": Status.SUBMITTED.value,
        "note": "Submitted",
    }
    await tx.execute(_ADD_CHANGE, change)
    del values["now"]
    return DemandRequest.model_construct(  # type: ignore[no-any-return]
        id=request_id, brm_id=brm_id, **{**values, "status": Status.SUBMITTED}, created_at=now, updated_at=now
    )


async def change_status(
    session: AsyncSession,
    request: DemandRequest,
    *,
    to: Status,
    by_person_id: int | None,
    now: datetime,
    note: str | None = None,
) -> StatusChange:
    change = StatusChange(
        request_id=request.id,  # type: ignore[arg-type]
        by_person_id=by_person_id,
        at=now,
        from_status=request.status,
        to_status=to,
        note=note,
    )
    request.status = to
    request.updated_at = now
    session.add(change)
    session.add(request)
    await session.flush()
    return change


_REQUEST = Sql(f"SELECT {REQUEST_COLUMNS} FROM demand_request WHERE demand_request.id = :id")
_HISTORY = Sql(
    f"SELECT {CHANGE_COLUMNS} FROM status_change WHERE status_change.request_id = :id ORDER BY status_change.id"
)
_OPEN_TITLES = Sql(
    f"SELECT id, title FROM demand_request WHERE partner_id = :partner_id AND status IN ({_OPEN}) ORDER BY id"
)


async def get_request(db: Db, request_id: int) -> DemandRequest | None:
    return await _one(db, _REQUEST, {"id": request_id}, _request)  # type: ignore[no-any-return]


async def status_history(db: Db, request_id: int) -> list[StatusChange]:
    return [_change(row) for row in await (await as_tx(db)).fetch(_HISTORY, {"id": request_id})]


# Who sees which requests: a requester their own; a BRM also those of the partners they have a
# relationship with, and those they own; leaders and admins all of them.
_VISIBLE = {
    "own": "demand_request.requester_id = :me",
    "brm": (
        "(demand_request.requester_id = :me OR demand_request.brm_id = :me OR demand_request.partner_id IN "
        "(SELECT relationship.partner_id FROM relationship WHERE relationship.brm_id = :me))"
    ),
    "all": "1 = 1",
}


@functools.cache
def _visible_sql(scope: str, only_open: bool, one: bool) -> Sql:
    where = [_VISIBLE[scope]]
    if only_open:
        where.append(f"demand_request.status IN ({_OPEN})")
    if one:
        where.append("demand_request.id = :id")
    tail = "" if one else " ORDER BY demand_request.id DESC LIMIT :limit"
    return Sql(f"SELECT {REQUEST_COLUMNS} FROM demand_request WHERE {' AND '.join(where)}{tail}")


def _scope(person: Person) -> str:
    if person.role in (Role.LEADER, Role.ADMIN):
        return "all"
    return "brm" if person.role == Role.BRM else "own"


async def visible_requests(
    db: Db,
    person: Person,
    *,
    only_open: bool = False,
    mine_only: bool = False,
    limit: int = 50,
) -> list[DemandRequest]:
    """Requests ``person`` may see, newest first: a requester their own, a BRM their partners'."""
    sql = _visible_sql("own" if mine_only else _scope(person), only_open, False)
    params: dict[str, Any] = {"limit": limit}
    if "me" in sql.names:
        params["me"] = person.id
    return [_request(row) for row in await (await as_tx(db)).fetch(sql, params)]


async def visible_request(db: Db, person: Person, request_id: int) -> DemandRequest | None:
    sql = _visible_sql(_scope(person), False, True)
    params: dict[str, Any] = {"id": request_id}
    if "me" in sql.names:
        params["me"] = person.id
    return await _one(db, sql, params, _request)  # type: ignore[no-any-return]


@dataclass(frozen=True, slots=True)
class RequestDetails:
    """One request with the names it shows and its status history (oldest first)."""

    request: DemandRequest
    requester: str | None
    partner: str | None
    brm: str | None
    history: list[StatusChange]


_REQUEST_WIDTH = len(DemandRequest.__table__.c)  # type: ignore[attr-defined]


@functools.cache
def _details_sql(scope: str) -> Sql:
    """The request, three names and every status change in one statement: a row per change."""
    return Sql(
        f"SELECT {REQUEST_COLUMNS}, requester.name, partner.name, brm.name, {CHANGE_COLUMNS} FROM demand_request "
        "LEFT JOIN person AS requester ON requester.id = demand_request.requester_id "
        "LEFT JOIN business_partner AS partner ON partner.id = demand_request.partner_id "
        "LEFT JOIN person AS brm ON brm.id = demand_request.brm_id "
        "LEFT JOIN status_change ON status_change.request_id = demand_request.id "
        f"WHERE {_VISIBLE[scope]} AND demand_request.id = :id ORDER BY status_change.id"
    )


async def request_details(db: Db, person: Person, request_id: int) -> RequestDetails | None:
    """What ``status DR-42`` shows, if ``person`` may see the request: one round trip."""
    sql = _details_sql(_scope(person))
    params: dict[str, Any] = {"id": request_id}
    if "me" in sql.names:
        params["me"] = person.id
    rows = await (await as_tx(db)).fetch(sql, params)
    if not rows:
        return None
    first, width = rows[0], _REQUEST_WIDTH
    history = [_change(row[width + 3 :]) for row in rows if row[width + 3] is not None]
    return RequestDetails(_request(first[:width]), first[width], first[width + 1], first[width + 2], history)


async def open_titles_of_partner(db: Db, partner_id: int) -> list[tuple[int, str]]:
    """(id, title) of the partner's open requests: just what a duplicate check compares."""
    return [(row[0], row[1]) for row in await (await as_tx(db)).fetch(_OPEN_TITLES, {"partner_id": partner_id})]


async def all_requests_with_requester(
    session: AsyncSession,
) -> list[tuple[DemandRequest, Person, BusinessPartner | None]]:
    stmt = (
        select(DemandRequest, Person, BusinessPartner)
        .join(Person, col(Person.id) == col(DemandRequest.requester_id))
        .join(BusinessPartner, col(BusinessPartner.id) == col(DemandRequest.partner_id), isouter=True)
        .order_by(col(DemandRequest.id))
    )
    return [tuple(row) for row in (await session.execute(stmt)).all()]  # type: ignore[misc]


async def count_requests(session: AsyncSession) -> int:
    return int((await session.execute(select(sa.func.count()).select_from(DemandRequest))).scalar_one())


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


_STATE_KEY = (
    "platform = :platform AND workspace = :workspace AND channel = :channel AND user_id = :user_id "
    "AND thread = :thread"
)
_LOAD_STATE = Sql(f"SELECT flow, step, data, version, updated_at FROM conversation_state WHERE {_STATE_KEY}")
_INSERT_STATE = Sql(
    "INSERT INTO conversation_state "
    "(platform, workspace, channel, user_id, thread, flow, step, data, version, updated_at) "
    "VALUES (:platform, :workspace, :channel, :user_id, :thread, :flow, :step, :data, 1, :updated_at) "
    "ON CONFLICT DO NOTHING"
)
_UPDATE_STATE = Sql(
    "UPDATE conversation_state SET flow = :flow, step = :step, data = :data, version = :version, "
    f"updated_at = :updated_at WHERE {_STATE_KEY} AND version = :expected"
)


def _key_params(key: StateKey) -> dict[str, Any]:
    return {
        "platform": key.platform,
        "workspace": key.workspace,
        "channel": key.channel,
        "user_id": key.user_id,
        "thread": key.thread,
    }


async def load_state(db: Db, key: StateKey) -> SavedState | None:
    row = await (await as_tx(db)).fetchone(_LOAD_STATE, _key_params(key))
    if row is None:
        return None
    return SavedState(row[0], row[1], dict(Tx.json(row[2]) or {}), row[3], Tx.dt(row[4]))  # type: ignore[arg-type]


class StaleState(Exception):
    """Another turn of the same conversation saved first; the caller retries the turn."""


async def save_state(
    db: Db,
    key: StateKey,
    *,
    expected_version: int | None,
    flow: str | None,
    step: str | None,
    data: dict[str, Any],
    now: datetime,
) -> None:
    """Write the state if nobody else did since it was read (``expected_version``).

    ``expected_version`` None means no row existed when the turn began.
    """
    params = {**_key_params(key), "flow": flow, "step": step, "data": data, "updated_at": now}
    if expected_version is None:
        written = await (await as_tx(db)).execute(_INSERT_STATE, params)
    else:
        params.update(expected=expected_version, version=expected_version + 1)
        written = await (await as_tx(db)).execute(_UPDATE_STATE, params)
    if not written:
        raise StaleState(key)


# --- the end of a turn ---------------------------------------------------------------------------

_SEEN = "seen AS (SELECT 1 FROM processed_event WHERE platform = :platform AND event_id = :event_id)"
_CLAIM_AFTER = (
    "claim AS (INSERT INTO processed_event (platform, event_id, at) "
    "SELECT :platform, :event_id, :updated_at WHERE EXISTS (SELECT 1 FROM {written}) RETURNING 1)"
)
_FINISH_UPDATE = Sql(
    f"WITH {_SEEN}, "
    "written AS (UPDATE conversation_state SET flow = :flow, step = :step, data = :data, version = :version, "
    f"updated_at = :updated_at WHERE {_STATE_KEY} AND version = :expected AND NOT EXISTS (SELECT 1 FROM seen) "
    f"RETURNING 1), {_CLAIM_AFTER.format(written='written')} "
    "SELECT EXISTS (SELECT 1 FROM seen), (SELECT count(*) FROM written), (SELECT count(*) FROM claim)"
)
_FINISH_INSERT = Sql(
    f"WITH {_SEEN}, "
    "written AS (INSERT INTO conversation_state "
    "(platform, workspace, channel, user_id, thread, flow, step, data, version, updated_at) "
    "SELECT CAST(:platform AS VARCHAR), CAST(:workspace AS VARCHAR), CAST(:channel AS VARCHAR), "
    "CAST(:user_id AS VARCHAR), CAST(:thread AS VARCHAR), CAST(:flow AS VARCHAR), CAST(:step AS VARCHAR), "
    "CAST(:data AS JSON), 1, CAST(:updated_at AS TIMESTAMP WITH TIME ZONE) "
    "WHERE NOT EXISTS (SELECT 1 FROM seen) ON CONFLICT DO NOTHING RETURNING 1), "
    f"{_CLAIM_AFTER.format(written='written')} "
    "SELECT EXISTS (SELECT 1 FROM seen), (SELECT count(*) FROM written), (SELECT count(*) FROM claim)"
)


async def finish_turn(
    db: Db,
    key: StateKey,
    *,
    event_id: str,
    now: datetime,
    state: SavedState | None,
    expected_version: int | None,
) -> bool:
    """Claim the turn's event id and save its conversation state, both or neither.

    False when the event was already processed (a platform retry: the caller rolls back
    whatever the turn wrote). Raises :class:`StaleState` when another turn saved the state
    first. ``state`` None saves nothing but the claim.

    On PostgreSQL this is one statement, so a turn that wrote nothing else needs no
    transaction; a duplicate racing it makes the claim fail with a unique violation and the
    whole statement with it (the caller runs the turn again and finds the duplicate).
    """
    tx = await as_tx(db)
    event_id = event_id[:200]
    if state is None or tx.dialect != "postgresql":
        if not await claim_event(tx, platform=key.platform, event_id=event_id, now=now):
            return False
        if state is None:
            return True
        await save_state(
            tx, key, expected_version=expected_version, flow=state.flow, step=state.step, data=state.data, now=now
        )
        return True
    params = {
        **_key_params(key),
        "event_id": event_id,
        "flow": state.flow,
        "step": state.step,
        "data": state.data,
        "updated_at": now,
    }
    if expected_version is None:
        rows = await tx.last(_FINISH_INSERT, params)
    else:
        rows = await tx.last(_FINISH_UPDATE, {**params, "expected": expected_version, "version": expected_version + 1})
    seen, written, _claimed = rows[0]
    if seen:
        return False
    if not written:
        raise StaleState(key)
    return True


# --- outbox -------------------------------------------------------------------------------------

_ENQUEUE = Sql(
    "INSERT INTO outbox (kind, subject, period, recipient_id, payload, status, attempts, next_attempt_at, created_at) "
    "VALUES (:kind, :subject, :period, :recipient_id, :payload, :status, 0, :now, :now) ON CONFLICT DO NOTHING"
)


async def enqueue(
    db: Db,
    *,
    kind: str,
    subject: str,
    recipient_id: int,
    payload: dict[str, Any],
    now: datetime,
    period: str = "",
) -> bool:
    """Queue a message the bot starts; False if that (kind, subject, period, recipient) exists."""
    values = {
        "kind": kind,
        "subject": subject,
        "period": period,
        "recipient_id": recipient_id,
        "payload": payload,
        "status": OutboxStatus.PENDING.value,
        "now": now,
    }
    return bool(await (await as_tx(db)).execute(_ENQUEUE, values))


async def claim_outbox(
    session: AsyncSession, *, now: datetime, lease_until: datetime, limit: int = 50
) -> Sequence[OutboxMessage]:
    """Claim due messages for one worker: pending ones, and claimed ones whose lease ran out.

    A claimed row is leased until ``lease_until``; a worker that dies mid-send leaves it to be
    claimed again after that (at-least-once). On PostgreSQL, rows another worker is claiming
    are skipped.
    """
    due = (
        col(OutboxMessage.status).in_([OutboxStatus.PENDING, OutboxStatus.SENDING]),
        col(OutboxMessage.next_attempt_at) <= now,
    )
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        stmt = select(OutboxMessage).where(*due).order_by(col(OutboxMessage.id)).limit(limit)
        rows = (await session.execute(stmt.with_for_update(skip_locked=True))).scalars().all()
        for row in rows:
            row.status = OutboxStatus.SENDING
            row.next_attempt_at = lease_until
            session.add(row)
        await session.flush()
        return rows
    # SQLite: one UPDATE takes the write lock and claims, so two processes never claim a row twice.
    table = OutboxMessage.__table__  # type: ignore[attr-defined]
    chosen = select(OutboxMessage.id).where(*due).order_by(col(OutboxMessage.id)).limit(limit).scalar_subquery()
    claimed = await session.execute(
        sa.update(table)
        .where(table.c.id.in_(chosen))
        .values(status=OutboxStatus.SENDING, next_attempt_at=lease_until)
        .returning(table.c.id)
    )
    ids = [row[0] for row in claimed.all()]
    if not ids:
        return []
    stmt = select(OutboxMessage).where(col(OutboxMessage.id).in_(ids)).order_by(col(OutboxMessage.id))
    return (await session.execute(stmt.execution_options(populate_existing=True))).scalars().all()


async def finish_outbox(
    session: AsyncSession,
    message_id: int,
    *,
    status: OutboxStatus,
    now: datetime,
    next_attempt_at: datetime | None = None,
    error: str | None = None,
    platform_message_id: str | None = None,
) -> None:
    row = await session.get(OutboxMessage, message_id)
    if row is None:
        return
    row.status = status
    row.attempts += 1
    row.last_error = error[:500] if error else None
    if status == OutboxStatus.SENT:
        row.sent_at = now
        row.platform_message_id = platform_message_id
    row.next_attempt_at = next_attempt_at or now
    session.add(row)
    await session.flush()


async def outbox_messages(session: AsyncSession) -> Sequence[OutboxMessage]:
    return (await session.execute(select(OutboxMessage).order_by(col(OutboxMessage.id)))).scalars().all()


# --- platform conversation references ---------------------------------------------------------


async def save_reference(
    session: AsyncSession,
    *,
    platform: str,
    workspace: str,
    scope: str,
    target: str,
    reference: dict[str, Any],
) -> None:
    now = utcnow()
    stmt = _insert(session, ConversationReference).values(
        platform=platform,
        workspace=workspace,
        scope=scope,
        target=target,
        reference=reference,
        updated_at=now,
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["platform", "workspace", "scope", "target"],
        set_={"reference": reference, "updated_at": now},
    )
    await session.execute(stmt)


async def load_reference(
    session: AsyncSession, *, platform: str, workspace: str, scope: str, target: str
) -> dict[str, Any] | None:
    stmt = select(ConversationReference.reference).where(
        ConversationReference.platform == platform,
        ConversationReference.workspace == workspace,
        ConversationReference.scope == scope,
        ConversationReference.target == target,
    )
    return (await session.execute(stmt)).scalars().first()
