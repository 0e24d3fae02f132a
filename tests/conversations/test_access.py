"""Who sees what: requesters their own, BRMs their partners', leaders everything."""

from __future__ import annotations

from datetime import timedelta

from conversations.engine import Engine
from conversations.messages import Sender
from storage.models import Person
from tests.helpers import Chat, count_of, rows_of


async def test_a_requester_sees_only_their_own_requests(engine: Engine) -> None:
    dana = Chat(engine, email="dana@example.com")
    mine = await dana.say("my requests")
    assert "DR-1 · Automate month-end accruals" in mine
    assert "CRM lead scoring" not in mine  # Eli's
    assert "Shaping" in await dana.say("status DR-1")
    others = await dana.say("status DR-4")
    missing = await dana.say("status DR-999")
    assert others == "I couldn't find DR-4 among the requests you can see."
    assert missing == "I couldn't find DR-999 among the requests you can see."


async def test_a_brm_sees_the_requests_of_the_partners_they_own(engine: Engine) -> None:
    alice = Chat(engine, email="alice@example.com")  # owns Finance and People & Culture
    assert "Automate month-end accruals" in await alice.say("status DR-1")
    assert "Onboarding checklist automation" in await alice.say("status DR-10")
    assert "couldn't find DR-4" in await alice.say("status dr-4")  # Sales belongs to Ben
    listing = await alice.say("mine")
    assert "Open demand of your business partners" in listing and "DR-10" in listing and "DR-4" not in listing


async def test_a_leader_sees_everything_and_keys_can_be_typed_loosely(engine: Engine) -> None:
    priya = Chat(engine, email="priya@example.com")
    for typed in ("status DR-4", "status dr4", "status #4", "status 4"):
        assert "CRM lead scoring" in await priya.say(typed)


async def test_status_without_a_key_asks_which_and_accepts_a_pick(engine: Engine) -> None:
    dana = Chat(engine)
    text = await dana.say("status")
    assert "Which request?" in text and "DR-3 Vendor master data clean-up" in text
    assert "Vendor master data clean-up" in await dana.press("DR-3 Vendor master data clean-up")
    await dana.say("status")
    assert "is not a request key" in await dana.say("the blue one")
    assert "Automate month-end accruals" in await dana.say("DR-1")


async def test_an_unknown_person_becomes_a_requester_on_first_contact(engine: Engine) -> None:
    newcomer = Chat(engine, email="zoe@example.com", name="Zoe Park")
    assert "Hi Zoe Park" in await newcomer.say("hello")
    assert "no demand requests yet" in await newcomer.say("my requests")
    assert "couldn't find DR-1" in await newcomer.say("status DR-1")
    [zoe] = await rows_of(engine.db, Person, Person.email == "zoe@example.com")
    assert zoe.role == "requester" and zoe.name == "Zoe Park"


async def test_the_same_person_on_two_platforms_is_one_person(engine: Engine) -> None:
    on_slack = Chat(engine, email="Dana@Example.com", platform="slack", channel="D1")
    assert "DR-1 · Automate month-end accruals" in await on_slack.say("mine")
    count = await count_of(engine.db, Person)
    assert count == 7  # the demo's seven people, nobody new


async def test_the_home_overview_shows_a_brm_their_partners_open_demand(engine: Engine) -> None:
    alice = Chat(engine, email="alice@example.com")
    home = (await engine.home(alice.key, Sender(email="alice@example.com"))).plain_text()
    assert "Open demand of your business partners" in home
    assert "Expense report approvals on mobile" in home  # Finance, submitted
    assert "Vendor master data clean-up" not in home  # delivered: not open
    assert "CRM lead scoring" not in home  # Sales: Ben's


async def test_the_empty_list_offers_a_new_request_by_button_or_number(engine: Engine) -> None:
    newcomer = Chat(engine, email="yara@example.com", name="Yara")
    assert "Want to file one?" in await newcomer.say("my requests")
    assert "short title" in await newcomer.press("New request")
    await newcomer.say("cancel")
    await newcomer.say("my requests")
    assert "short title" in await newcomer.say("1")


async def test_an_idle_menu_neither_expires_loudly_nor_cancels(engine: Engine, clock) -> None:
    chat = Chat(engine)
    await chat.say("hi")
    assert "nothing to cancel" in (await chat.say("cancel")).lower()
    await chat.say("hi")
    clock.advance(timedelta(hours=25))
    text = await chat.say("my requests")
    assert "expired" not in text and "Your requests" in text


async def test_a_status_shows_who_is_involved_and_the_history_in_order(engine: Engine) -> None:
    text = await Chat(engine, email="dana@example.com").say("status DR-1")
    assert "Requested by" in text and "Dana" in text
    assert "Business partner" in text and "Finance" in text
    assert "BRM" in text and "Alice" in text  # Alice owns Finance
    history = text.split("History", 1)[1]
    steps = [line.split(": ", 1)[1].split(" (")[0] for line in history.strip().splitlines()]
    assert steps == ["New → Submitted", "Submitted → Triaged", "Triaged → Shaping"]
