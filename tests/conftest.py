"""Shared fixtures: the same tests on SQLite and on PostgreSQL, an injectable clock.

The PostgreSQL leg uses ``BRM_BOT_TEST_POSTGRES_URL`` (default: the local server, database
``test``) and creates a database of its own for this run, so parallel runs do not collide.
Where no PostgreSQL answers, that leg is skipped and the run says so at the end.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlmodel import SQLModel

import storage.models  # noqa: F401  (registers the tables)
from conversations.engine import Engine
from conversations.flows import default_flows
from storage import migrate
from storage.admin import create_database, drop_database
from storage.db import Database
from storage.demo import load_demo

POSTGRES_URL = os.environ.get("BRM_BOT_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test")
_pg_status: dict[str, str] = {}


class FakeClock:
    """A clock tests move by hand: schedules and expiry without sleeping."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 23, 9, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


async def _create_pg_database() -> str:
    test_url = await create_database(POSTGRES_URL, f"brm_test_{os.getpid()}_{uuid.uuid4().hex[:6]}")
    db = Database.connect(test_url)
    try:
        await migrate.upgrade(db)
    finally:
        await db.dispose()
    return test_url


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str | None]:
    try:
        test_url = asyncio.run(_create_pg_database())
    except Exception as exc:
        _pg_status["skipped"] = (
            f"cannot use PostgreSQL at {sa.make_url(POSTGRES_URL).render_as_string()}: "
            + (f"{type(exc).__name__}: {exc}".splitlines()[0])
        )
        yield None
        return
    _pg_status["ran"] = sa.make_url(test_url).render_as_string()
    yield test_url
    asyncio.run(drop_database(POSTGRES_URL, str(sa.make_url(test_url).database)))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("template") / "template.db"

    async def build() -> None:
        db = Database.connect(f"sqlite+aiosqlite:///{path}")
        await migrate.upgrade(db)
        await db.dispose()

    asyncio.run(build())
    return path


@pytest.fixture(params=["sqlite", "postgresql"])
async def db(
    request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path, postgres_url: str | None
) -> AsyncIterator[Database]:
    """A migrated, empty database: a SQLite file, then PostgreSQL (skipped if unreachable)."""
    if request.param == "sqlite":
        path = tmp_path / "brm.db"
        shutil.copy(sqlite_template, path)
        database = Database.connect(f"sqlite+aiosqlite:///{path}")
    else:
        if postgres_url is None:
            pytest.skip(_pg_status.get("skipped", "PostgreSQL unavailable"))
        database = Database.connect(postgres_url, pool_size=5)
        async with database.transaction() as store:
            for t in reversed(SQLModel.metadata.sorted_tables):
                await store.rows(sa.delete(t))
            for t in SQLModel.metadata.sorted_tables:  # ids start at 1 again, as in a new database
                if "id" in t.c and t.c.id.primary_key:
                    sequence = sa.func.pg_get_serial_sequence(t.name, "id")
                    await store.rows(sa.select(sa.func.setval(sequence, 1, False)))
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def demo_db(db: Database, clock: FakeClock) -> Database:
    """The database with the demo organisation loaded."""
    async with db.transaction() as store:
        assert await load_demo(store, now=clock())
    return db


@pytest.fixture
def engine(demo_db: Database, clock: FakeClock) -> Engine:
    return Engine(demo_db, default_flows(), clock=clock, default_timezone="UTC")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if "skipped" in _pg_status:
        terminalreporter.write_line(f"PostgreSQL leg SKIPPED: {_pg_status['skipped']}", yellow=True)
    elif "ran" in _pg_status:
        terminalreporter.write_line(f"PostgreSQL leg ran against {_pg_status['ran']}", green=True)
