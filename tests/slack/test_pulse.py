""""You said, we did" written in Slack and delivered to the partner's people through Slack."""

from __future__ import annotations

from bot.delivery import DeliveryWorker
from storage.models import OutboxMessage
from tests.conftest import FakeClock
from tests.helpers import rows_of
from tests.slack.conftest import ALICE, DANA, SlackHarness, dm_of
from tests.survey_data import load_pulse

HEARD = "Tickets wait too long and nobody says why."
DOING = "A weekly ticket review with your team, from January."


async def _say(slack: SlackHarness, text: str, *, user: str) -> None:
    await slack.dm(text, user=user)
    await slack.settle()


async def test_a_follow_up_reaches_everyone_invited_once(slack: SlackHarness, clock: FakeClock) -> None:
    data = await load_pulse(slack.db, now=clock())
    await _say(slack, "hello", user=DANA)  # Dana, of Finance, was invited: now the bot knows her in Slack
    for line in ("follow up Finance", HEARD, DOING):
        await _say(slack, line, user=ALICE)
    preview = slack.fake.called("chat.postMessage")[-1]
    assert preview.args["channel"] == dm_of(ALICE) and "This is what they will read" in preview.text
    await slack.press(preview, "Send", user=ALICE)
    await slack.settle()

    queued = await rows_of(slack.db, OutboxMessage, OutboxMessage.kind == "survey-follow-up")
    assert sorted(m.recipient_id for m in queued) == sorted(data.invited[("2026-11", "Finance")])

    worker = DeliveryWorker(slack.db, {}, clock=clock)
    worker.register(slack.adapter)
    before = len(slack.fake.called("chat.postMessage"))
    assert await worker.run_once() == 1, "only Dana has a Slack account; the others wait to be reachable"
    (posted,) = slack.fake.called("chat.postMessage")[before:]
    assert posted.args["channel"] == dm_of(DANA)
    assert "You said, we did: Partner pulse" in posted.text and HEARD in posted.text and DOING in posted.text

    await _say(slack, "follow up Finance", user=ALICE)
    assert "already had its follow-up" in slack.fake.called("chat.postMessage")[-1].text
    assert await worker.run_once() == 0
    to_dana = [c for c in slack.fake.called("chat.postMessage") if c.args["channel"] == dm_of(DANA)
               and "You said, we did" in c.text]
    assert len(to_dana) == 1
