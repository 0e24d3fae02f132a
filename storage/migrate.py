"""Schema migrations (Alembic), on a connection the database hands over.

Example::

    await upgrade(db)            # to the newest revision
    await current_revision(db)   # None for an empty database
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers the tables)
from storage.db import Database

MIGRATIONS = Path(__file__).with_name("migrations")
T = TypeVar("T")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


async def _run(db: Database, work: Callable[[sa.Connection], T]) -> T:
    async with db.migration_connection() as conn:
        if isinstance(conn, AsyncConnection):
            return await conn.run_sync(work)
        return work(conn)


async def current_revision(db: Database) -> str | None:
    return await _run(db, lambda conn: MigrationContext.configure(conn).get_current_revision())


async def upgrade(db: Database, revision: str = "head") -> None:
    config = _config()

    def work(conn: sa.Connection) -> None:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)

    await _run(db, work)


async def downgrade(db: Database, revision: str) -> None:
    """Undo revisions down to ``revision`` (``"base"``: an empty schema), in one transaction."""
    config = _config()

    def work(conn: sa.Connection) -> None:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)

    await _run(db, work)


def upgrade_sql(url: str, out: TextIO, *, start: str | None = None) -> None:
    """Write the SQL that upgrades a database at ``start`` (default: empty) to the newest
    revision, for a DBA to run, without connecting (Alembic's offline mode).

    The environment script is handed a mock connection of the URL's dialect, which only
    compiles; nothing is sent anywhere.
    """
    config = Config(output_buffer=out)
    config.set_main_option("script_location", str(MIGRATIONS))

    def never(sql: object, *args: object, **kwargs: object) -> None:
        raise RuntimeError("offline mode never executes")  # alembic writes through its own mock

    config.attributes["connection"] = sa.create_mock_engine(sa.make_url(url), never)
    command.upgrade(config, f"{start}:head" if start else "head", sql=True)


@dataclass(frozen=True, slots=True)
class Revision:
    revision: str
    down_revision: str | None
    message: str


def history() -> Iterator[Revision]:
    """Every revision this version knows, newest first."""
    for script in ScriptDirectory.from_config(_config()).walk_revisions():
        down = script.down_revision
        yield Revision(
            revision=script.revision,
            down_revision=down if isinstance(down, str) or down is None else ",".join(down),
            message=(script.doc or "").strip(),
        )


def known_revision(revision: str) -> bool:
    """Whether ``revision`` names a revision of this version (or ``base``)."""
    return revision == "base" or any(r.revision == revision for r in history())


async def differences(db: Database) -> list[Any]:
    """What Alembic's compare finds between the migrated database and the models ([] when equal)."""

    def work(conn: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, SQLModel.metadata))

    return await _run(db, work)


async def autogenerate(db: Database, message: str) -> None:
    """Write a new revision from the difference between the tables and the database."""
    config = _config()

    def work(conn: sa.Connection) -> None:
        config.attributes["connection"] = conn
        command.revision(config, message=message, autogenerate=True)

    await _run(db, work)
