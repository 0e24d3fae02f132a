"""Queries and writes, each taking the session of the caller's transaction.

Nothing here commits: the caller owns the transaction, so one turn of a conversation
(request, status change, outbox rows, conversation state) is written whole or not at all.
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
    ConversationState,
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
    utcnow,
)
from storage.types import UTCDateTime


def _insert(session: AsyncSession, table: Any) -> Any:
    dialect = session.bind.dialect.name if session.bind is not None else "sqlite"
    return postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)


# --- inbound events -----------------------------------------------------------------------


_insert_ignoring: dict[str, Any] = {}


async def _insert_or_ignore(session: AsyncSession, table: Any, values: dict[str, Any]) -> bool:
    """INSERT … ON CONFLICT DO NOTHING; True if a row was inserted.

    Plain SQL that both databases read the same, built once per table and column set:
    SQLAlchemy's own ON CONFLICT constructs are not cacheable, so they were compiled anew on
    every call, and these inserts run on every turn.
    """
    columns = table.__table__.c  # type: ignore[attr-defined]
    name = f"{table.__tablename__}:{','.join(values)}"
    stmt = _insert_ignoring.get(name)
    if stmt is None:
        sql = (
            f"INSERT INTO {table.__tablename__} ({', '.join(values)}) "
            f"VALUES ({', '.join(':' + c for c in values)}) ON CONFLICT DO NOTHING"
        )
        stmt = _insert_ignoring[name] = sa.text(sql).bindparams(
            *(sa.bindparam(c, type_=columns[c].type) for c in values)
        )
    result = await (await session.connection()).execute(stmt, values)
    return bool(result.rowcount)


async def claim_event(session: AsyncSession, *, platform: str, event_id: str, now: datetime) -> bool:
    """Record an inbound event id; False when it was already processed (a platform retry)."""
    return await _insert_or_ignore(
        session, ProcessedEvent, {"platform": platform, "event_id": event_id[:200], "at": now}
    )


async def forget_events_before(session: AsyncSession, *, before: datetime) -> int:
    result = await session.execute(sa.delete(ProcessedEvent).where(col(ProcessedEvent.at) < before))
    return int(result.rowcount or 0)


# --- people ---------------------------------------------------------------------------------


async def person_by_identity(session: AsyncSession, *, platform: str, workspace: str, user_id: str) -> Person | None:
    stmt = (
        select(Person)
        .join(Identity, col(Identity.person_id) == col(Person.id))
        .where(Identity.platform == platform, Identity.workspace == workspace, Identity.user_id == user_id)
    )
    return (await session.execute(stmt)).scalars().first()


async def person_by_email(session: AsyncSession, email: str) -> Person | None:
    stmt = select(Person).where(Person.email == email.strip().lower())
    return (await session.execute(stmt)).scalars().first()


async def person_by_directory_id(session: AsyncSession, directory_id: str) -> Person | None:
    stmt = (
        select(Person)
        .join(Identity, col(Identity.person_id) == col(Person.id))
        .where(Identity.directory_id == directory_id)
    )
    return (await session.execute(stmt)).scalars().first()


async def get_person(session: AsyncSession, person_id: int) -> Person | None:
    return await session.get(Person, person_id)


async def add_identity(
    session: AsyncSession,
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
    return await _insert_or_ignore(session, Identity, values)


async def identities_of(session: AsyncSession, person_id: int) -> Sequence[Identity]:
    stmt = select(Identity).where(Identity.person_id == person_id).order_by(col(Identity.id))
    return (await session.execute(stmt)).scalars().all()


async def people(session: AsyncSession) -> Sequence[Person]:
    return (await session.execute(select(Person).order_by(col(Person.id)))).scalars().all()


# --- partners and relationships ----------------------------------------------------------------


async def partners(session: AsyncSession) -> Sequence[BusinessPartner]:
    stmt = select(BusinessPartner).order_by(col(BusinessPartner.name))
    return (await session.execute(stmt)).scalars().all()


async def get_partner(session: AsyncSession, partner_id: int) -> BusinessPartner | None:
    return await session.get(BusinessPartner, partner_id)


async def primary_brm(session: AsyncSession, partner_id: int) -> Person | None:
    stmt = (
        select(Person)
        .join(Relationship, col(Relationship.brm_id) == col(Person.id))
        .where(Relationship.partner_id == partner_id, col(Relationship.is_primary).is_(True))
    )
    return (await session.execute(stmt)).scalars().first()


async def partner_ids_owned_by(session: AsyncSession, brm_id: int) -> list[int]:
    stmt = select(Relationship.partner_id).where(Relationship.brm_id == brm_id)
    return list((await session.execute(stmt)).scalars().all())


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


async def create_request(session: AsyncSession, new: NewRequest, *, now: datetime) -> DemandRequest:
    """Insert a request, its owning BRM and its first status change, in the caller's transaction."""
    brm = await primary_brm(session, new.partner_id) if new.partner_id is not None else None
    request = DemandRequest(
        title=new.title,
        description=new.description,
        outcome=new.outcome,
        category=new.category,
        urgency=new.urgency,
        desired_date=new.desired_date,
        requester_id=new.requester_id,
        partner_id=new.partner_id,
        brm_id=brm.id if brm else None,
        status=Status.SUBMITTED,
        source_platform=new.source_platform,
        source_channel=new.source_channel,
        source_link=new.source_link,
        created_at=now,
        updated_at=now,
    )
    session.add(request)
    await session.flush()
    session.add(
        StatusChange(
            request_id=request.id,  # type: ignore[arg-type]
            by_person_id=new.requester_id,
            at=now,
            from_status=None,
            to_status=Status.SUBMITTED,
            note="Submitted",
        )
    )
    await session.flush()
    return request


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


async def get_request(session: AsyncSession, request_id: int) -> DemandRequest | None:
    return await session.get(DemandRequest, request_id)


async def status_history(session: AsyncSession, request_id: int) -> Sequence[StatusChange]:
    stmt = select(StatusChange).where(StatusChange.request_id == request_id).order_by(col(StatusChange.id))
    return (await session.execute(stmt)).scalars().all()


def _visible_to(person: Person, owned_partner_ids: Sequence[int]) -> Any:
    if person.role in (Role.LEADER, Role.ADMIN):
        return sa.true()
    if person.role == Role.BRM:
        return sa.or_(
            col(DemandRequest.requester_id) == person.id,
            col(DemandRequest.partner_id).in_(owned_partner_ids),
            col(DemandRequest.brm_id) == person.id,
        )
    return col(DemandRequest.requester_id) == person.id


async def visible_requests(
    session: AsyncSession,
    person: Person,
    *,
    only_open: bool = False,
    mine_only: bool = False,
    limit: int = 50,
) -> Sequence[DemandRequest]:
    """Requests ``person`` may see, newest first: a requester their own, a BRM their partners'."""
    if mine_only:
        where: Any = col(DemandRequest.requester_id) == person.id
    else:
        owned = await partner_ids_owned_by(session, person.id) if person.role == Role.BRM else []  # type: ignore[arg-type]
        where = _visible_to(person, owned)
    stmt = select(DemandRequest).where(where)
    if only_open:
        stmt = stmt.where(col(DemandRequest.status).in_([s.value for s in OPEN_STATUSES]))
    stmt = stmt.order_by(col(DemandRequest.id).desc()).limit(limit)
    return (await session.execute(stmt)).scalars().all()


async def visible_request(session: AsyncSession, person: Person, request_id: int) -> DemandRequest | None:
    owned = await partner_ids_owned_by(session, person.id) if person.role == Role.BRM else []  # type: ignore[arg-type]
    stmt = select(DemandRequest).where(DemandRequest.id == request_id, _visible_to(person, owned))
    return (await session.execute(stmt)).scalars().first()


async def open_titles_of_partner(session: AsyncSession, partner_id: int) -> list[tuple[int, str]]:
    """(id, title) of the partner's open requests: just what a duplicate check compares."""
    stmt = select(DemandRequest.id, DemandRequest.title).where(
        DemandRequest.partner_id == partner_id,
        col(DemandRequest.status).in_([s.value for s in OPEN_STATUSES]),
    )
    return [(row[0], row[1]) for row in (await session.execute(stmt)).all()]


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


async def load_state(session: AsyncSession, key: StateKey) -> SavedState | None:
    table = ConversationState.__table__  # type: ignore[attr-defined]
    stmt = sa.select(table.c.flow, table.c.step, table.c.data, table.c.version, table.c.updated_at).where(
        table.c.platform == key.platform,
        table.c.workspace == key.workspace,
        table.c.channel == key.channel,
        table.c.user_id == key.user_id,
        table.c.thread == key.thread,
    )
    row = (await (await session.connection()).execute(stmt)).first()
    return SavedState(row.flow, row.step, dict(row.data or {}), row.version, row.updated_at) if row else None


class StaleState(Exception):
    """Another turn of the same conversation saved first; the caller retries the turn."""


async def save_state(
    session: AsyncSession,
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
    params = {
        "platform": key.platform,
        "workspace": key.workspace,
        "channel": key.channel,
        "user_id": key.user_id,
        "thread": key.thread,
        "flow": flow,
        "step": step,
        "data": data,
        "updated_at": now,
    }
    if expected_version is None:
        inserted = await _insert_or_ignore(session, ConversationState, {**params, "version": 1})
        if not inserted:
            raise StaleState(key)
        return
    params.update({f"key_{k}": params.pop(k) for k in ("platform", "workspace", "channel", "user_id", "thread")})
    params.update(expected=expected_version, version=expected_version + 1)
    result = await (await session.connection()).execute(_state_update(), params)
    if not result.rowcount:
        raise StaleState(key)


@functools.cache
def _state_update() -> Any:
    """The UPDATE of every turn, built once (with a version check: see :class:`StaleState`)."""
    table = ConversationState.__table__  # type: ignore[attr-defined]
    keys = ("platform", "workspace", "channel", "user_id", "thread")
    return (
        sa.update(table)
        .where(*(table.c[k] == sa.bindparam(f"key_{k}") for k in keys), table.c.version == sa.bindparam("expected"))
        .values(
            flow=sa.bindparam("flow"),
            step=sa.bindparam("step"),
            data=sa.bindparam("data", type_=sa.JSON()),
            updated_at=sa.bindparam("updated_at", type_=UTCDateTime()),
            version=sa.bindparam("version"),
        )
    )


# --- outbox -------------------------------------------------------------------------------------


async def enqueue(
    session: AsyncSession,
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
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }
    return await _insert_or_ignore(session, OutboxMessage, values)


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
