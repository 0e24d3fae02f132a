"""Schema migrations (Alembic), run on the application's own async engine.

Example::

    await upgrade(db)            # to the newest revision
    await current_revision(db)   # None for an empty database
"""

from __future__ import annotations

from pathlib import Path

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


async def autogenerate(db: Database, message: str) -> None:
    """Write a new revision from the difference between the tables and the database."""
    config = _config()

    def _run(conn: sa.Connection) -> None:
        config.attributes["connection"] = conn
        command.revision(config, message=message, autogenerate=True)

    async with db.begin() as conn:
        await conn.run_sync(_run)
