"""A person first linked without an email is completed, or merged, when the email arrives."""

from __future__ import annotations

import itertools

from conversations.engine import Engine
from conversations.messages import ConversationKey, Inbound, Sender
from storage.models import DemandRequest, Identity, OutboxMessage, Person, Role
from tests.helpers import count_of, rows_of

KEY = ConversationKey("slack", "T1", "D1", "U1")
_ids = itertools.count(1)


async def _say(engine: Engine, text: str, sender: Sender | None) -> str:
    replies = await engine.handle(Inbound(key=KEY, event_id=f"m{next(_ids)}", text=text, sender=sender))
    return "\n".join(r.plain_text() for r in replies)


async def _file(engine: Engine) -> str:
    for line in ("new request", "Invoice OCR for accounts payable", "skip",
                 "Invoices are booked without manual typing", "Project", "High", "1", "skip"):
        await _say(engine, line, None)
    return await _say(engine, "submit", None)


async def test_a_stand_in_with_a_request_is_merged_into_the_known_person(engine: Engine) -> None:
    assert "Submitted as" in await _file(engine)  # by a person the engine could not name
    stand_in = (await rows_of(engine.db, Identity, Identity.user_id == "U1"))[0].person_id
    assert (await rows_of(engine.db, DemandRequest, DemandRequest.requester_id == stand_in))

    text = await _say(engine, "my requests", Sender(name="Eli Novak", email="Eli@Example.com"))
    eli = (await rows_of(engine.db, Person, Person.email == "eli@example.com"))[0]
    assert (await rows_of(engine.db, Identity, Identity.user_id == "U1"))[0].person_id == eli.id
    assert await count_of(engine.db, Person, Person.id == stand_in) == 0
    assert await count_of(engine.db, DemandRequest, DemandRequest.requester_id == stand_in) == 0
    assert await count_of(engine.db, OutboxMessage, OutboxMessage.recipient_id == stand_in) == 0
    assert "Invoice OCR for accounts payable" in text, "the stand-in's request is now Eli's"
    assert eli.role == Role.REQUESTER and eli.partner_id is not None


async def test_a_stand_in_whose_email_nobody_has_gets_it(engine: Engine) -> None:
    assert await engine.needs_profile(platform="slack", workspace="T1", user_id="U1")
    await _say(engine, "help", None)
    assert await engine.needs_profile(platform="slack", workspace="T1", user_id="U1"), "no email yet"
    await _say(engine, "help", Sender(name="Nora New", email="nora@example.com"))
    person = (await rows_of(engine.db, Person, Person.email == "nora@example.com"))[0]
    assert person.name == "Nora New"
    assert (await rows_of(engine.db, Identity, Identity.user_id == "U1"))[0].person_id == person.id
    assert not await engine.needs_profile(platform="slack", workspace="T1", user_id="U1")
