""""You said, we did" written in Teams (typed, "send" typed too) and delivered to the partner's people in Teams."""

from __future__ import annotations

from bot.delivery import DeliveryWorker
from storage.db import Database
from tests.conftest import FakeClock
from tests.survey_data import load_pulse
from tests.teams.conftest import ALICE, DANA, TeamsHarness

HEARD = "Tickets wait too long and nobody says why."
DOING = "A weekly ticket review with your team, from January."


async def test_a_follow_up_reaches_the_partners_people_in_teams(
    teams: TeamsHarness, demo_db: Database, clock: FakeClock
) -> None:
    await load_pulse(demo_db, now=clock())
    await teams.send(teams.personal(DANA, "hello"))  # Dana, of Finance, was invited: the bot can reach her now
    for line in ("follow up Finance", HEARD, DOING, "send"):
        await teams.send(teams.personal(ALICE, line))
    assert "Sent to the 6 people of Finance" in teams.fake.messages[-1].text

    worker = DeliveryWorker(demo_db, {"teams": teams.adapter}, clock=clock)
    before = len(teams.fake.messages)
    assert await worker.run_once() == 1, "only Dana has talked to the bot in Teams"
    (note,) = teams.fake.messages[before:]
    assert note.conversation == DANA.conversation
    assert "You said, we did: Partner pulse" in note.text and HEARD in note.text and DOING in note.text

    await teams.send(teams.personal(ALICE, "follow up Finance"))
    assert "already had its follow-up" in teams.fake.messages[-1].text
    assert await worker.run_once() == 0
