"""``brm-bot people forget EMAIL``: no trace of the person in any table; their request stays."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlmodel import SQLModel

from conversations.engine import Engine
from storage.db import Database
from tests.bot.test_cli import INTAKE, run
from tests.conftest import FakeClock
from tests.helpers import Chat
from tests.teams.conftest import DANA as TEAMS_DANA
from tests.teams.conftest import TeamsHarness
from tests.teams.conftest import egress as egress
from tests.teams.conftest import fake as fake
from tests.teams.conftest import http as http
from tests.teams.conftest import teams as teams

DANA_TRACES = ("dana@example.com", "dana whitfield", TEAMS_DANA.id.lower(), TEAMS_DANA.aad.lower())


def is_text(column: sa.Column[Any]) -> bool:
    """Text or JSON, also behind a type decorator (SQLModel's AutoString)."""
    kind = column.type.impl_instance if isinstance(column.type, sa.TypeDecorator) else column.type
    return isinstance(kind, sa.String | sa.Text | sa.JSON)


def text_columns() -> list[tuple[sa.Table, list[sa.Column[Any]]]]:
    found = []
    for t in SQLModel.metadata.sorted_tables:
        columns = [c for c in t.c if is_text(c)]
        if columns:
            found.append((t, columns))
    return found


def traces(dump: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    return [(t, c, v) for t, c, v in dump if any(needle in v.lower() for needle in DANA_TRACES)]


async def dump_everything(db: Database) -> list[tuple[str, str, str]]:
    """Every text and JSON value of every table, as (table, column, text)."""
    dump: list[tuple[str, str, str]] = []
    async with db.transaction() as store:
        for t, columns in text_columns():
            for row in await store.rows(sa.select(*columns)):
                for column, value in zip(columns, row, strict=True):
                    if value is not None:
                        dump.append((t.name, column.name, value if isinstance(value, str) else json.dumps(value)))
    return dump


async def test_forget_leaves_no_trace_of_the_person_and_keeps_their_request_anonymised(
    engine: Engine, teams: TeamsHarness, demo_db: Database, clock: FakeClock
) -> None:
    # Dana writes in Teams (an identity, a conversation reference with her name), files a request in
    # the terminal (the BRM's notification names her), and leaves a second request half-typed.
    await teams.send(teams.personal(TEAMS_DANA, "hello"))
    dana = Chat(engine, email="dana@example.com", name="Dana Whitfield")
    for line in INTAKE[:-1]:
        await dana.say(line)
    assert "Submitted as DR-13" in dana.text
    await dana.say("new request")
    await dana.say("Half-typed idea of Dana Whitfield")
    async with demo_db.transaction() as store:
        person = await store.people.by_email("dana@example.com")
        assert person is not None and person.id is not None
        await store.outbox.enqueue(kind="digest", subject="week", recipient_id=person.id,
                                   payload={"text": "Hi Dana Whitfield"}, now=clock())
    before = traces(await dump_everything(demo_db))
    assert {t for t, _, _ in before} >= {"person", "identity", "outbox", "conversation_reference",
                                         "conversation_state"}

    async with demo_db.transaction() as store:
        done = await store.privacy.forget(email="DANA@example.com", now=clock())
    assert done.found and done.identities == 2 and done.outbox >= 1

    assert traces(await dump_everything(demo_db)) == []
    alice = Chat(engine, email="alice@example.com")
    shown = await alice.say("status DR-13")
    assert "Contract renewal reminders" in shown and "former employee" in shown

    everything = await dump_everything(demo_db)
    async with demo_db.transaction() as store:
        again = await store.privacy.forget(email="dana@example.com", now=clock())
    assert not again.found
    assert await dump_everything(demo_db) == everything


def test_the_command_asks_first_then_forgets_and_export_and_status_show_a_former_employee(tmp_path: Path) -> None:
    assert run(["chat", "--demo"], tmp_path, stdin="\n".join(INTAKE) + "\n").returncode == 0

    declined = run(["people", "forget", "dana@example.com"], tmp_path, stdin="n\n")
    assert declined.returncode == 1 and "nothing changed" in declined.stderr
    assert json.loads(run(["export", "requests"], tmp_path).stdout)[-1]["requester_email"] == "dana@example.com"

    done = run(["people", "forget", "dana@example.com", "--yes"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Forgot dana@example.com" in done.stdout

    last = json.loads(run(["export", "requests"], tmp_path).stdout)[-1]
    assert (last["key"], last["requester_name"], last["requester_email"]) == ("DR-13", "former employee", None)
    status = run(["chat", "--as", "priya@example.com"], tmp_path, stdin="status DR-13\n")
    assert "Contract renewal reminders" in status.stdout and "former employee" in status.stdout

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'bot.db'}")
    with engine.connect() as connection:
        for t, columns in text_columns():
            for row in connection.execute(sa.select(*columns)):
                text = json.dumps([str(v) for v in row]).lower()
                assert "dana@example.com" not in text and "dana whitfield" not in text, (t.name, row)
    engine.dispose()

    again = run(["people", "forget", "dana@example.com", "--yes"], tmp_path)
    assert again.returncode == 0 and "nothing to forget" in again.stdout
    bad = run(["people", "forget", "not-an-email", "--yes"], tmp_path)
    assert bad.returncode == 2 and "EMAIL" in bad.stderr


def test_help_names_the_people_command(tmp_path: Path) -> None:
    assert "forget" in run(["people", "--help"], tmp_path).stdout
