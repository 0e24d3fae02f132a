"""A survey invitation delivered to Teams by the worker: Adaptive Card actions answer, typing too."""

from __future__ import annotations

import json
from datetime import timedelta

from bot.delivery import DeliveryWorker
from storage.db import Database
from storage.models import SurveyAnswer
from tests.conftest import FakeClock
from tests.conversations.test_surveys import FIRST_MONDAY, PULSE, apply, scheduler
from tests.helpers import rows_of
from tests.teams.conftest import DANA, TeamsHarness
from tests.teams.test_conversations import _last_card_with

ONLY_DANA = PULSE.replace("audience: contacts", "audience: {{people: [dana@example.com]}}")


async def test_card_actions_and_typed_answers_on_the_delivered_invitation(
    teams: TeamsHarness, demo_db: Database, clock: FakeClock
) -> None:
    await teams.send(teams.personal(DANA, "hello"))  # the bot can message Dana from now on
    await apply(demo_db, clock, text=ONLY_DANA)
    clock.now = FIRST_MONDAY + timedelta(hours=15)
    assert await scheduler(demo_db, clock).run_now("survey-invitations") == 1
    worker = DeliveryWorker(demo_db, {"teams": teams.adapter}, clock=clock)
    assert await worker.run_once() == 1
    assert "Contact pulse" in teams.fake.messages[-1].text

    card_id, _, data = _last_card_with(teams, "5")
    await teams.send(teams.submit(DANA, card_id, data))
    assert "2/4" in teams.fake.messages[-1].text
    card_id, _, data = _last_card_with(teams, "trusted advisor")
    await teams.send(teams.submit(DANA, card_id, data))
    assert "3/4" in json.dumps(teams.fake.messages[-1].body)  # the 0-10 scale is a drop-down in Teams
    await teams.send(teams.personal(DANA, "10"))  # typed
    assert "4/4" in teams.fake.messages[-1].text
    await teams.send(teams.personal(DANA, "skip"))
    assert "last question" in teams.fake.messages[-1].text
    answers = await rows_of(demo_db, SurveyAnswer)
    assert [(a.question_id, a.value, a.choice, a.text, a.person_id) for a in answers] == [
        ("satisfaction", 5, None, None, None), ("role", None, "trusted advisor", None, None),
        ("recommend", 10, None, None, None), ("better", None, None, None, None),
    ]
