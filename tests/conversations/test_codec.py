"""The outbox stores the messages the bot starts as JSON: every block kind must come back whole."""

from __future__ import annotations

import json
from typing import get_args

from hypothesis import given, settings
from hypothesis import strategies as st

from conversations.codec import reply_from_json, reply_to_json
from conversations.messages import Choices, Facts, Field, FieldKind, Form, Link, Option, Reply, Text, TextStyle

words = st.text(min_size=0, max_size=40)
ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz:_-0123456789", min_size=1, max_size=20)
options = st.tuples(*[st.builds(Option, id=ids, label=words, primary=st.booleans(), danger=st.booleans())] * 2)
fields = st.builds(
    Field,
    name=ids,
    label=words,
    kind=st.sampled_from(get_args(FieldKind)),
    required=st.booleans(),
    options=options,
    initial=st.none() | words,
    max_length=st.none() | st.integers(1, 3000),
    placeholder=st.none() | words,
    hint=st.none() | words,
)
blocks = st.one_of(
    st.builds(Text, text=words, style=st.sampled_from(list(TextStyle))),
    st.builds(Facts, items=st.lists(st.tuples(words, words), max_size=4).map(tuple), title=st.none() | words),
    st.builds(Choices, id=ids, prompt=words, options=options),
    st.builds(Link, url=words, label=words),
    st.builds(
        Form,
        id=ids,
        title=words,
        fields=st.lists(fields, max_size=3).map(tuple),
        submit_label=words,
        errors=st.dictionaries(ids, words, max_size=2),
        context=st.dictionaries(ids, words, max_size=2),
    ),
)
replies = st.builds(
    Reply, blocks=st.lists(blocks, min_size=1, max_size=5).map(tuple), replaces_previous=st.booleans(),
    ignored_action=st.booleans(),
)


@settings(max_examples=200, deadline=None)
@given(replies)
def test_every_block_kind_survives_the_outbox_as_json(reply: Reply) -> None:
    stored = json.loads(json.dumps(reply_to_json(reply)))  # exactly what a JSON column gives back
    assert reply_from_json(stored) == reply


def test_a_nudge_with_buttons_a_form_and_a_link_comes_back_as_it_was_queued() -> None:
    nudge = Reply.of(
        Text("Finance needs attention", TextStyle.HEADING),
        Facts((("Last touchpoint", "41 days ago\ncadence 30"),), title="Finance"),
        Choices("nudge:snooze", "Snooze?", (Option("7", "1 week"), Option("14", "2 weeks", danger=True))),
        Link("https://example.com/DR-17", "Open DR-17"),
        Form("touchpoint", "Log a touchpoint", (Field("kind", "Kind", "select", True, (Option("call", "Call"),)),)),
    )
    assert reply_from_json(json.loads(json.dumps(reply_to_json(nudge)))) == nudge
