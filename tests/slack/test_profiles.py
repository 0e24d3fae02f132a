"""Profiles that could not be read at first contact: the person is looked up again and completed."""

from __future__ import annotations

from storage.models import Identity, Person, Role
from tests.helpers import rows_of
from tests.slack.conftest import ALICE, SlackHarness


async def _person_of(slack: SlackHarness, user: str) -> Person:
    identities = await rows_of(slack.db, Identity, Identity.user_id == user)
    assert len(identities) == 1
    people = await rows_of(slack.db, Person, Person.id == identities[0].person_id)
    return people[0]


def _look_ups(slack: SlackHarness) -> int:
    return len([c for c in slack.fake.calls if c.method == "users.info"])


async def test_a_failed_first_profile_look_up_is_repaired_on_the_next_message(slack: SlackHarness) -> None:
    slack.fake.fail_once("users.info", 200, {"ok": False, "error": "internal_error"})
    await slack.dm("help", user=ALICE)
    await slack.fake.wait_for("chat.postMessage", 1)
    await slack.settle()
    stand_in = await _person_of(slack, ALICE)
    assert stand_in.email is None and stand_in.role == Role.REQUESTER, "linked for now without an email"

    await slack.dm("my requests", user=ALICE)
    await slack.fake.wait_for("chat.postMessage", 2)
    await slack.settle()
    assert _look_ups(slack) == 2, "looked up again on the next message"
    alice = await _person_of(slack, ALICE)
    assert (alice.email, alice.role, alice.name) == ("alice@example.com", Role.BRM, "Alice Moreno")
    assert not await rows_of(slack.db, Person, Person.id == stand_in.id), "the stand-in is gone"
    assert "Open demand of your business partners" in slack.fake.called("chat.postMessage")[-1].text

    await slack.dm("help", user=ALICE)
    await slack.fake.wait_for("chat.postMessage", 3)
    await slack.settle()
    assert _look_ups(slack) == 2, "no more look-ups once the person has an email"


async def test_a_slack_api_outage_at_first_contact_is_repaired_too(slack: SlackHarness) -> None:
    slack.fake.fail_once("users.info", 503, "<html>Service Unavailable</html>")
    await slack.dm("help", user=ALICE)
    await slack.fake.wait_for("chat.postMessage", 1)
    await slack.settle()
    assert "Sorry" not in slack.fake.called("chat.postMessage")[0].text
    await slack.dm("help", user=ALICE)
    await slack.fake.wait_for("chat.postMessage", 2)
    await slack.settle()
    assert (await _person_of(slack, ALICE)).role == Role.BRM
