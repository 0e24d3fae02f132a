"""Test helpers: drive the engine like a person, one line at a time."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import sqlalchemy as sa
from sqlmodel import SQLModel

from conversations.engine import Engine
from conversations.messages import Action, Choices, ConversationKey, Inbound, Reply, Sender, Source

if TYPE_CHECKING:
    from storage.db import Database

M = TypeVar("M", bound=SQLModel)
_ids = itertools.count(1)


@dataclass
class Chat:
    """A person in one conversation. ``await chat.say("new request")``, then read ``chat.text``."""

    engine: Engine
    email: str = "dana@example.com"
    platform: str = "console"
    channel: str = "terminal"
    name: str | None = None
    locale: str | None = None
    replies: list[Reply] = field(default_factory=list)
    sent: int = 0  # messages and presses from the person so far

    @property
    def key(self) -> ConversationKey:
        return ConversationKey(self.platform, "local", self.channel, self.email)  # type: ignore[arg-type]

    def _inbound(self, **kwargs: object) -> Inbound:
        return Inbound(
            key=self.key,
            event_id=f"test-{next(_ids)}",
            sender=Sender(name=self.name, email=self.email, locale=self.locale),
            **kwargs,  # type: ignore[arg-type]
        )

    async def say(self, text: str, *, source: Source | None = None) -> str:
        self.sent += 1
        self.replies = await self.engine.handle(self._inbound(text=text, source=source))
        return self.text

    async def press(self, option_label: str) -> str:
        """Press the button labelled ``option_label`` in the last choices shown."""
        return await self.press_in(self.last_choices, option_label)

    async def press_in(self, choices: Choices, option_label: str) -> str:
        """Press a button of ``choices``, which may be an older message's."""
        option = next(o for o in choices.options if o.label == option_label)
        self.sent += 1
        self.replies = await self.engine.handle(self._inbound(action=Action(choices.id, option.id)))
        return self.text

    async def submit(self, form_id: str, values: dict[str, str]) -> list[Reply]:
        self.replies = await self.engine.handle(self._inbound(action=Action(form_id), form=values))
        return self.replies

    @property
    def last_choices(self) -> Choices:
        blocks = [b for r in self.replies for b in r.blocks if isinstance(b, Choices)]
        assert blocks, f"no choices in: {self.text!r}"
        return blocks[-1]

    @property
    def text(self) -> str:
        return "\n".join(r.plain_text() for r in self.replies)


async def file_request(chat: Chat, title: str = "Invoice OCR for accounts payable") -> str:
    """Run a whole intake with typical answers (the requester's own business partner, no date);
    returns the final reply text."""
    for line in (
        "new request",
        title,
        "skip",
        "Invoices are booked without manual typing",
        "Project",
        "High",
        "1",
    ):
        await chat.say(line)
    return await chat.say("submit")


async def rows_of(db: Database, model: type[M], *where: Any, order_by: Any = None) -> list[M]:
    """Every row of ``model``'s table matching ``where``, in id order: what a test looks at."""
    stmt = sa.select(model.__table__).where(*where)  # type: ignore[attr-defined]
    stmt = stmt.order_by(order_by if order_by is not None else next(iter(model.__table__.c)))  # type: ignore[attr-defined]
    async with db.transaction() as store:
        return await store.tx.models(model, stmt)


async def count_of(db: Database, model: type[SQLModel], *where: Any) -> int:
    async with db.transaction() as store:
        stmt = sa.select(sa.func.count()).select_from(model.__table__).where(*where)  # type: ignore[attr-defined]
        return int(await store.tx.scalar(stmt))
