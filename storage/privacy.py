"""Forgetting a person (``brm-bot people forget EMAIL``).

Their personal data goes: name and email, platform identities, conversation state, the
conversation references that reach them, the messages queued for them, and every mention of
their name, email or platform ids in any text or JSON column of any table. What the
organisation needs stays, anonymised: the person row remains as :data:`FORMER_EMPLOYEE`
(without email), so their requests, status changes and relationships keep their history.

The scan walks ``SQLModel.metadata``: a table added later is covered without a change here.
Statements are built from the tables for this one call (a command, not a turn).

Example::

    async with db.transaction() as store:
        report = await store.privacy.forget(email="dana@example.com", now=now)
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlmodel import SQLModel

from storage.models import ConversationReference, ConversationState, Identity, OutboxMessage, Person
from storage.tx import Tx

FORMER_EMPLOYEE = "former employee"
MIN_NEEDLE = 4  # shorter names or ids would match inside unrelated words


def _table(model: type[SQLModel]) -> sa.Table:
    return cast(sa.Table, model.__table__)  # type: ignore[attr-defined]


PERSON = _table(Person)
IDENTITY = _table(Identity)
STATE = _table(ConversationState)
REFERENCE = _table(ConversationReference)
OUTBOX = _table(OutboxMessage)


@dataclass
class Forgotten:
    """What :meth:`Privacy.forget` did; ``found`` False when nobody had that email (nothing changed)."""

    found: bool
    person_id: int | None = None
    identities: int = 0
    states: int = 0
    references: int = 0
    outbox: int = 0
    mentions: dict[str, int] = field(default_factory=dict)  # table -> rows rewritten


def text_like(column: sa.Column[Any]) -> bool:
    """A column holding text or JSON (SQLModel's ``AutoString`` decorates ``String``)."""
    kind = column.type
    if isinstance(kind, sa.TypeDecorator):
        kind = kind.impl_instance
    return isinstance(kind, sa.String | sa.JSON)


def scrub(value: Any, pattern: re.Pattern[str], replacement: str) -> Any:
    """``value`` with every match of ``pattern`` replaced, inside JSON objects and lists too."""
    if isinstance(value, str):
        return pattern.sub(replacement, value)
    if isinstance(value, list):
        return [scrub(v, pattern, replacement) for v in value]
    if isinstance(value, dict):
        return {scrub(k, pattern, replacement): scrub(v, pattern, replacement) for k, v in value.items()}
    return value


def needles_of(person: Person, identities: Sequence[Identity]) -> list[str]:
    """What names the person: their email, their name, their platform and directory ids."""
    found = [person.email or "", person.name]
    for identity in identities:
        found += [identity.user_id, identity.directory_id or ""]
    return sorted({n.strip() for n in found if n and len(n.strip()) >= MIN_NEEDLE}, key=len, reverse=True)


class Privacy:
    """Erasing a person's personal data; see the module's notes."""

    __slots__ = ("tx",)

    def __init__(self, tx: Tx) -> None:
        self.tx = tx

    async def forget(self, *, email: str, now: datetime) -> Forgotten:
        email = email.strip().lower()
        person = await self.tx.model(Person, sa.select(PERSON).where(sa.func.lower(PERSON.c.email) == email))
        if person is None or person.id is None:
            return Forgotten(found=False)
        pid = person.id
        identities = await self.tx.models(Identity, sa.select(IDENTITY).where(IDENTITY.c.person_id == pid))
        needles = needles_of(person, identities)
        report = Forgotten(found=True, person_id=pid)

        users = [(i.platform, i.workspace, i.user_id) for i in identities]
        if person.email:
            users.append(("console", "local", person.email))
        for platform, workspace, user_id in users:
            report.states += await self.tx.count(sa.delete(STATE).where(
                STATE.c.platform == platform, STATE.c.workspace == workspace, STATE.c.user_id == user_id
            ))
            report.references += await self.tx.count(sa.delete(REFERENCE).where(
                REFERENCE.c.platform == platform, REFERENCE.c.workspace == workspace,
                REFERENCE.c.scope == "user", REFERENCE.c.target == user_id,
            ))
        report.outbox = await self.tx.count(sa.delete(OUTBOX).where(OUTBOX.c.recipient_id == pid))
        report.identities = await self.tx.count(sa.delete(IDENTITY).where(IDENTITY.c.person_id == pid))
        await self.tx.count(
            sa.update(PERSON).where(PERSON.c.id == pid).values(name=FORMER_EMPLOYEE, email=None)
        )
        report.mentions = await self.scrub_everywhere(needles)
        return report

    async def scrub_everywhere(self, needles: Iterable[str], replacement: str = FORMER_EMPLOYEE) -> dict[str, int]:
        """Rewrite every text and JSON value, in every table, that mentions one of ``needles``."""
        words = [n for n in needles if n]
        if not words:
            return {}
        pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)
        # JSON may hold a name with its non-ASCII letters escaped (\u00e9): look for that spelling too.
        spellings = sorted({s.lower() for w in words for s in (w, json.dumps(w)[1:-1])})
        rewritten: dict[str, int] = {}
        for t in SQLModel.metadata.sorted_tables:
            columns = [c for c in t.c if text_like(c)]
            keys = list(t.primary_key.columns)
            if not columns or not keys:
                continue
            mentions = [
                sa.func.lower(sa.cast(c, sa.Text) if not isinstance(c.type, sa.String) else c).contains(
                    s, autoescape=True
                )
                for c in columns
                for s in spellings
            ]
            rows = await self.tx.rows(sa.select(*keys, *columns).where(sa.or_(*mentions)))
            for row in rows:
                key_values, values = row[: len(keys)], row[len(keys):]
                changed = {
                    c.name: new
                    for c, old in zip(columns, values, strict=True)
                    if (new := scrub(old, pattern, replacement)) != old
                }
                if not changed:
                    continue
                where = [k == v for k, v in zip(keys, key_values, strict=True)]
                if any(k.name in changed for k in keys):
                    await self.tx.count(sa.delete(t).where(*where))  # a row keyed by their data goes whole
                else:
                    await self.tx.count(sa.update(t).where(*where).values(**changed))
                rewritten[t.name] = rewritten.get(t.name, 0) + 1
        return rewritten
