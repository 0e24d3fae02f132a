"""A survey invitation delivered to a Slack DM by the worker: its buttons answer, one tap each."""

from __future__ import annotations

from datetime import timedelta

from bot.delivery import DeliveryWorker
from storage.models import SurveyAnswer
from tests.conftest import FakeClock
from tests.conversations.test_surveys import FIRST_MONDAY, PULSE, apply, scheduler
from tests.helpers import rows_of
from tests.slack.conftest import DANA, SlackHarness, dm_of

ONLY_DANA = PULSE.replace("audience: contacts", "audience: {{people: [dana@example.com]}}")


async def test_tap_through_the_survey_on_the_delivered_invitation(slack: SlackHarness, clock: FakeClock) -> None:
    await apply(slack.db, clock, text=ONLY_DANA)
    clock.now = FIRST_MONDAY + timedelta(hours=15)  # 10:00 in New York
    assert await scheduler(slack.db, clock).run_now("survey-invitations") == 1
    worker = DeliveryWorker(slack.db, {}, clock=clock)
    worker.register(slack.adapter)
    assert await worker.run_once() == 1
    invitation = slack.fake.called("chat.postMessage")[-1]
    assert invitation.args["channel"] == dm_of(DANA) and "Contact pulse" in invitation.text

    sent = slack.fake.count("chat.postMessage")
    for n, (label, expected) in enumerate((("4", "2/4"), ("strategic partner", "3/4"), ("8", "4/4")), 1):
        message = slack.fake.called("chat.postMessage")[-1]
        await slack.press(message, label, user=DANA)
        await slack.settle()
        await slack.fake.wait_for("chat.postMessage", sent + n)
        assert expected in slack.fake.called("chat.postMessage")[-1].text
    await slack.dm("Share the roadmap earlier", user=DANA)
    await slack.fake.wait_for("chat.postMessage", sent + 4)
    assert "last question of *Contact pulse*" in slack.fake.called("chat.postMessage")[-1].text
    answers = await rows_of(slack.db, SurveyAnswer)
    assert [(a.question_id, a.value, a.choice, a.text, a.person_id) for a in answers] == [
        ("satisfaction", 4, None, None, None), ("role", None, "strategic partner", None, None),
        ("recommend", 8, None, None, None), ("better", None, None, "Share the roadmap earlier", None),
    ]
