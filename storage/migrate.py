"""Schema migrations (Alembic), run on the application's own async engine.

Example::

    await upgrade(db)            # to the newest revision
    await current_revision(db)   # None for an empty database
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from storage.db import Database

MIGRATIONS = Path(__file__).with_name("migrations")


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


async def current_revision(db: Database) -> str | None:
    def _read(conn: sa.Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    async with db.connection() as conn:
        return await conn.run_sync(_read)


async def upgrade(db: Database, revision: str = "head") -> None:
    config = _config()

    def _run(conn: sa.Connection) -> None:
        config.attributes["connection"] = conn
        command.upgrade(config, revision)

    async with db.begin() as conn:
        if conn.dialect.name == "sqlite":
            # The driver opens transactions only before data changes, not before DDL: open one
            # here, so a failed migration leaves the schema exactly as it was.
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        await conn.run_sync(_run)


async def downgrade(db: Database, revision: str) -> None:
    """Undo revisions down to ``revision`` (``"base"``: an empty schema), in one transaction."""
    config = _config()

    def _run(conn: sa.Connection) -> None:
        config.attributes["connection"] = conn
        command.downgrade(config, revision)

    async with db.begin() as conn:
        if conn.dialect.name == "sqlite":
            await conn.exec_driver_sql("BEGIN IMMEDIATE")
        await conn.run_sync(_run)


def upgrade_sql(url: str, out: TextIO, *, start: str | None = None) -> None:
    """Write the SQL that upgrades a database at ``start`` (default: empty) to the newest
    revision, for a DBA to run, without connecting (Alembic's offline mode).

    The environment script is handed a mock connection of the URL's dialect, which only
    compiles; nothing is sent anywhere.
    """
    config = Config(output_buffer=out)
    config.set_main_option("script_location", str(MIGRATIONS))

    def _never(sql: object, *args: object, **kwargs: object) -> None:
        raise RuntimeError("offline mode never executes")  # alembic writes through its own mock

    config.attributes["connection"] = sa.create_mock_engine(sa.make_url(url), _never)
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


async def autogenerate(db: Database, message: str) -> None:
    """Write a new revision from the difference between the tables and the database."""
    config = _config()

    def _run(conn: sa.Connection) -> None:
        config.attributes["connection"] = conn
        command.revision(config, message=message, autogenerate=True)

    async with db.begin() as conn:
        await conn.run_sync(_run)
