"""Block Kit rendering stays inside Slack's limits and never lets user text become markup."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.slack.inbound import slack_text, to_inbound
from adapters.slack.render import answered, messages, render, render_home, render_modal
from bot.delivery import DeliveryWorker
from conversations.messages import Choices, Facts, Field, Form, Link, Option, Reply, Text, TextStyle
from tests.conftest import FakeClock
from tests.slack.conftest import ALICE, DANA, SlackHarness, dm_of
from tests.slack.test_forms import GOOD, submission

HOSTILE = "<!channel> Free money <https://evil.example|your bank> & <@U0CEO>"


def texts(blocks: list[dict]) -> list[str]:
    found: list[str] = []
    for block in blocks:
        for key in ("text", "label", "hint"):
            if isinstance(block.get(key), dict):
                found.append(block[key]["text"])
        for element in block.get("elements", []) + block.get("fields", []):
            if isinstance(element.get("text"), dict):
                found.append(element["text"]["text"])
            elif isinstance(element.get("text"), str):
                found.append(element["text"])
    return found


def assert_within_limits(blocks: list[dict], *, max_blocks: int = 50) -> None:
    assert len(blocks) <= max_blocks
    action_ids: list[str] = []
    block_ids = [b["block_id"] for b in blocks if "block_id" in b]
    assert len(block_ids) == len(set(block_ids)), "block ids are unique"
    for block in blocks:
        if block["type"] == "section":
            assert 0 < len(block["text"]["text"]) <= 3000
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        if block["type"] == "context":
            assert len(block["elements"]) <= 10 and all(len(e["text"]) <= 2000 for e in block["elements"])
        if block["type"] == "actions":
            assert 0 < len(block["elements"]) <= 25
            for button in block["elements"]:
                assert len(button["text"]["text"]) <= 75
                assert len(button["value"]) <= 2000
                assert len(button["action_id"]) <= 255
                action_ids.append(button["action_id"])
    assert len(action_ids) == len(set(action_ids)), "action ids are unique"


def test_user_text_cannot_ping_everyone_or_hide_a_link() -> None:
    reply = Reply.of(
        Text(HOSTILE), Text(HOSTILE, TextStyle.MUTED), Facts(items=(("Title", HOSTILE),), title=HOSTILE),
        Choices(id="x:y", prompt=HOSTILE, options=(Option("a", HOSTILE),)),
    )
    blocks = render(reply)
    mrkdwn = [t for b in blocks if b["type"] in ("section", "context") for t in texts([b])]
    assert mrkdwn and all("<" not in t and ">" not in t for t in mrkdwn)
    assert any("&lt;!channel&gt;" in t and "&amp;" in t for t in mrkdwn)


def test_a_link_the_bot_means_is_a_link_and_its_label_is_escaped() -> None:
    (block,) = render(Reply.of(Link("https://brm.example.com/requests/13", "DR-13 <b>")))
    assert block["text"]["text"] == "<https://brm.example.com/requests/13|DR-13 &lt;b&gt;>"
    (unsafe,) = render(Reply.of(Link("javascript:alert(1)", "click")))
    assert "<" not in unsafe["text"]["text"]


def test_long_text_is_split_into_sections_and_nothing_is_lost() -> None:
    description = ("Invoices & receipts pile up. " * 400).strip()  # 11,599 characters
    blocks = render(Reply.of(Facts(items=(("Description", description),))))
    assert_within_limits(blocks)
    assert len(blocks) >= 4
    joined = " ".join(b["text"]["text"] for b in blocks)
    assert joined.count("&amp;") == 400, "no entity is cut in half at a section boundary"


def test_too_many_blocks_are_truncated_with_a_visible_note() -> None:
    blocks = render(Reply(blocks=tuple(Text(f"line {n}") for n in range(80))))
    assert len(blocks) == 50
    assert blocks[-1]["type"] == "context" and "31 more parts are not shown" in blocks[-1]["elements"][0]["text"]
    home = render_home(Reply(blocks=tuple(Text(f"line {n}") for n in range(150))))
    assert len(home["blocks"]) == 100 and "not shown" in json.dumps(home["blocks"][-1], ensure_ascii=False)


def test_many_long_options_become_several_rows_of_short_unique_buttons() -> None:
    options = tuple(Option("v" * 2500 + str(n), f"Partner number {n} " + "x" * 100) for n in range(60))
    reply = Reply.of(Choices(id="intake:partner", prompt="Which?", options=options))
    blocks = render(reply)
    assert_within_limits(blocks)
    rows = [b for b in blocks if b["type"] == "actions"]
    assert [len(r["elements"]) for r in rows] == [25, 25, 10]
    after = answered(blocks, rows[1]["block_id"], "✓ Partner number 30")
    assert not [b for b in after if b["type"] == "actions"], "every row of the answered question goes"
    assert "✓ Partner number 30" in json.dumps(after, ensure_ascii=False)


def test_replies_of_one_turn_share_a_message_without_repeating_ids() -> None:
    question = Choices(id="intake:confirm", prompt="Submit it?", options=(Option("submit", "Submit"),))
    (message,) = messages([Reply.of(question), Reply.text("again"), Reply.of(question)])
    assert_within_limits(message.blocks)
    assert "Submit it?" in message.text


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.builds(Text, st.text(max_size=7000), st.sampled_from(list(TextStyle))),
            st.builds(
                Facts,
                st.lists(st.tuples(st.text(max_size=300), st.text(max_size=5000)), max_size=8).map(tuple),
                st.one_of(st.none(), st.text(max_size=300)),
            ),
            st.builds(
                Choices,
                st.text(min_size=1, max_size=300),
                st.text(max_size=4000),
                st.lists(st.builds(Option, st.text(min_size=1, max_size=2500), st.text(max_size=200)),
                         min_size=1, max_size=60).map(tuple),
            ),
        ),
        max_size=40,
    )
)
def test_any_reply_renders_within_slack_limits(blocks: list[Text | Facts | Choices]) -> None:
    reply = Reply(blocks=tuple(blocks))
    assert_within_limits(render(reply))
    for message in messages([reply, reply]):
        assert_within_limits(message.blocks)
        assert len(message.text) <= 3000 * 1.7  # escaped fallback text stays short


def test_the_modal_keeps_inside_slack_limits() -> None:
    form = Form(
        id="intake:submit", title="A very long modal title that Slack would refuse", submit_label="Submit",
        fields=(
            Field("title", "Title", required=True, max_length=200, initial="x" * 500),
            Field("description", "Description", kind="multiline", max_length=4000, initial="y" * 5000),
            Field("urgency", "Urgency", kind="select", options=(Option("low", "Low"),), initial="nonsense"),
            Field("desired_date", "Desired date", kind="date", initial="next week"),
        ),
    )
    view = render_modal(form, private_metadata="{}")
    assert len(view["title"]["text"]) <= 24
    elements = {b["block_id"]: b["element"] for b in view["blocks"]}
    assert len(elements["title"]["initial_value"]) == 200
    assert elements["description"]["max_length"] == 3000 and len(elements["description"]["initial_value"]) == 3000
    assert "initial_option" not in elements["urgency"], "an initial value that is no option is left out"
    assert "initial_date" not in elements["desired_date"]
    assert [b["optional"] for b in view["blocks"]] == [False, True, True, True]


def test_slack_markup_is_read_back_as_what_the_person_typed() -> None:
    raw = "<@U0BOT> fix <https://x.example/a?b=1&amp;c=2|the form> for <#C0SALES|sales> &lt;asap&gt; <!here>"
    assert slack_text(raw, bot_user_id="U0BOT") == "fix the form (https://x.example/a?b=1&c=2) for #sales <asap> @here"


def test_the_bots_own_messages_and_edits_are_not_inbound() -> None:
    base = {"type": "event_callback", "event_id": "Ev1", "team_id": "T1"}
    own = {**base, "event": {"type": "message", "channel_type": "im", "channel": "D1", "user": "U0BOT",
                             "bot_id": "B1", "text": "hi", "ts": "1.0"}}
    edit = {**base, "event": {"type": "message", "subtype": "message_changed", "channel_type": "im",
                              "channel": "D1", "ts": "1.0"}}
    assert to_inbound(own, bot_user_id="U0BOT") is None
    assert to_inbound(edit) is None


async def test_a_hostile_title_is_shown_as_text_in_slack(slack: SlackHarness) -> None:
    await slack.command("request")
    (opened,) = await slack.fake.wait_for("views.open")
    await slack.interact(submission(opened, {**GOOD, "title": HOSTILE}, user=DANA))
    (confirmation,) = await slack.fake.wait_for("chat.postMessage")
    sent = json.dumps(confirmation.args)
    assert "<!channel>" not in sent and "<https://evil" not in sent
    assert "&lt;!channel&gt;" in confirmation.text


def mrkdwn_objects(node: object) -> list[dict]:
    """Every mrkdwn text object anywhere in a payload."""
    if isinstance(node, dict):
        found = [node] if node.get("type") == "mrkdwn" else []
        return found + [m for value in node.values() for m in mrkdwn_objects(value)]
    if isinstance(node, list):
        return [m for item in node for m in mrkdwn_objects(item)]
    return []


def assert_inert(payload: object) -> None:
    """No live mention or link a person typed, and no text Slack would parse on its own."""
    sent = json.dumps(payload, ensure_ascii=False)
    for live in ("<!channel>", "<@U0CEO>", "<https://evil", "<!here>"):
        assert live not in sent
    objects = mrkdwn_objects(payload)
    assert all(o.get("verbatim") is True for o in objects), "Slack auto-parses '@channel' in non-verbatim mrkdwn"


def test_every_mrkdwn_text_is_verbatim_and_a_bare_address_stays_a_link() -> None:
    reply = Reply.of(Text("@channel look"), Text("quiet", TextStyle.MUTED),
                     Facts(items=(("Source", "https://fake.slack.com/archives/C1/p1"), ("Title", "@here x"))))
    blocks = render(reply)
    assert_inert(blocks)
    assert "<https://fake.slack.com/archives/C1/p1>" in json.dumps(blocks)
    (message,) = messages([reply])
    assert_inert(message.blocks)


async def test_a_hostile_title_stays_text_in_the_modal_home_and_the_brms_notification(
    slack: SlackHarness, clock: FakeClock
) -> None:
    await slack.dm("hello", user=ALICE)  # Alice, a BRM, is reachable in Slack
    await slack.fake.wait_for("chat.postMessage")
    await slack.command("request <!channel> please")
    (opened,) = await slack.fake.wait_for("views.open")
    title = next(b for b in opened.view["blocks"] if b["block_id"] == "title")
    assert title["element"]["type"] == "plain_text_input", "an input shows its words as typed, never as markup"
    assert not [o for o in mrkdwn_objects(opened.view) if "<" in o["text"] or o.get("verbatim") is not True]
    await slack.interact(submission(opened, {**GOOD, "title": HOSTILE}))
    (_, confirmation) = await slack.fake.wait_for("chat.postMessage", 2)
    assert_inert(confirmation.args)

    await slack.event({"type": "app_home_opened", "user": DANA, "channel": dm_of(DANA), "tab": "home"})
    (home,) = await slack.fake.wait_for("views.publish")
    assert "&lt;!channel&gt;" in json.dumps(home.view) and "Free money" in home.text
    assert_inert(home.view)

    worker = DeliveryWorker(slack.db, {}, clock=clock)
    worker.register(slack.adapter)
    assert await worker.run_once() >= 1
    notice = slack.fake.called("chat.postMessage")[-1]
    assert notice.args["channel"] == dm_of(ALICE) and "Free money" in notice.text
    assert_inert(notice.args)
