"""Dates as people write them, in the intake's desired-date step."""

from __future__ import annotations

from datetime import date

import pytest

from conversations.engine import Engine
from conversations.flows.common import natural_date, parse_date
from storage.models import DemandRequest
from tests.helpers import Chat, rows_of

MONDAY = date(2026, 11, 23)


@pytest.mark.parametrize(
    ("said", "meant"),
    [
        ("end of March", date(2027, 3, 31)),
        ("End of December", date(2026, 12, 31)),
        ("end of march 2028", date(2028, 3, 31)),
        ("31/03/2027", date(2027, 3, 31)),
        ("01.02.2027", date(2027, 2, 1)),
        ("next Friday", date(2026, 11, 27)),
        ("next monday", date(2026, 11, 30)),
        ("in 3 weeks", date(2026, 12, 14)),
        ("in 10 days", date(2026, 12, 3)),
        ("in 2 months", date(2027, 1, 23)),
        ("in a week", date(2026, 11, 30)),
        ("Q1 2027", date(2027, 3, 31)),
        ("q4", date(2026, 12, 31)),
        ("Q3", date(2027, 9, 30)),
        ("tomorrow", date(2026, 11, 24)),
        ("2027-03-31", date(2027, 3, 31)),
        ("31 Mar 2027", date(2027, 3, 31)),
    ],
)
def test_every_date_form(said: str, meant: date) -> None:
    assert parse_date(said, today=MONDAY) == (meant, None)


def test_month_first_when_the_locale_says_so_and_nonsense_is_refused() -> None:
    assert natural_date("03/31/2027", today=MONDAY, day_first=False) == date(2027, 3, 31)
    assert natural_date("31/13/2027", today=MONDAY) is None
    value, error = parse_date("end of Smarch", today=MONDAY)
    assert value is None and error is not None and "end of March" in error
    value, error = parse_date("01/01/2020", today=MONDAY)
    assert value is None and error is not None and "in the past" in error


async def test_typed_in_the_intake_and_the_option_number_skips(engine: Engine) -> None:
    chat = Chat(engine)
    for line in ("new request", "Cash forecast", "skip", "Treasury sees cash a month ahead", "idea", "low"):
        await chat.say(line)
    assert "Desired date: 31 Mar 2027" in await chat.say("end of March")
    await chat.say("submit")
    assert (await rows_of(engine.db, DemandRequest))[-1].desired_date == date(2027, 3, 31)

    chat = Chat(engine)
    for line in ("new request", "Payroll export", "skip", "Payroll closes a day earlier", "idea", "low"):
        await chat.say(line)
    assert "1. No particular date" in chat.text
    assert "Desired date: No particular date" in await chat.say("1")


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        ("end of March", "31 Mar 2027"),
        ("31/03/2027", "31 Mar 2027"),
        ("next Friday", "27 Nov 2026"),
        ("in 3 weeks", "14 Dec 2026"),
        ("Q1 2027", "31 Mar 2027"),
        ("by March", "31 Mar 2027"),
        ("2027-03-31", "31 Mar 2027"),
    ],
)
async def test_every_date_form_in_the_chat_also_with_the_urgency(engine: Engine, said: str, shown: str) -> None:
    chat = Chat(engine)
    for line in ("request Cash forecast", "Treasury sees cash a month ahead so that payments never bounce", "idea"):
        await chat.say(line)
    assert f"Desired date: {shown}" in await chat.say(f"high, {said}")
    chat = Chat(engine, email="eli@example.com")
    for line in ("request Lead routing", "Leads reach a rep within the hour so that none go cold", "idea", "low"):
        await chat.say(line)
    assert f"Desired date: {shown}" in await chat.say(said)


async def test_month_first_for_a_person_whose_locale_writes_it_so(engine: Engine) -> None:
    us = Chat(engine, locale="en-US")
    for line in ("request Cash forecast", "Treasury sees cash ahead so that payments never bounce", "idea"):
        await us.say(line)
    assert "Desired date: 02 Jan 2027" in await us.say("low, 01/02/2027")
    uk = Chat(engine, email="eli@example.com", locale="en-GB")
    for line in ("request Lead routing", "Leads reach a rep within the hour so that none go cold", "idea"):
        await uk.say(line)
    assert "Desired date: 01 Feb 2027" in await uk.say("low, 01/02/2027")
    # Only one reading is a date: that one, whatever the locale.
    for line in ("cancel", "request Territory map", "Reps see their patch so that no account is missed", "idea"):
        await uk.say(line)
    assert "Desired date: 31 Mar 2027" in await uk.say("low, 03/31/2027")
