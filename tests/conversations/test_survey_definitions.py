"""Survey definition files: the shipped one is valid; a bad file is refused whole, each problem
with its line and field."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from conversations.surveys import DefinitionError, SurveyDefinition, default_definition_text, parse_definition
from storage.models import QuestionKind

GOOD = """\
name: team-pulse
title: Team pulse
audience: {partners: [Finance, Operations]}
schedule: {day_of_week: mon, hour: 10}
window_days: 5
questions:
  - {id: satisfaction, type: rating, text: "How satisfied are you?"}
  - {id: role, type: choice, text: "IT's role?", options: [order taker, trusted advisor]}
  - {id: better, type: text, text: "One thing to change", required: false}
"""


def _problems(text: str) -> list[tuple[int, str]]:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(text)
    return [(p.line, p.field) for p in caught.value.problems]


def test_the_shipped_partner_pulse_is_valid_and_asks_what_the_issue_says() -> None:
    definition = parse_definition(default_definition_text())
    assert definition.name == "partner-pulse" and definition.anonymous and definition.min_group == 3
    assert [(q.id, q.kind) for q in definition.questions] == [
        ("satisfaction", QuestionKind.RATING), ("role", QuestionKind.CHOICE), ("recommend", QuestionKind.NPS),
        ("better", QuestionKind.TEXT),
    ]
    assert definition.questions[1].options == ("order taker", "trusted advisor", "strategic partner")
    assert not definition.questions[3].required and definition.reminder_after_days == 3
    # "1st mon" at 10:00 in the recipient's zone: December 2026's first Monday is the 7th
    fires = definition.trigger("Europe/Madrid").get_next_fire_time(None, datetime(2026, 12, 1, tzinfo=UTC))
    assert fires.astimezone(UTC) == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def test_defaults_and_a_round_trip_through_the_stored_json() -> None:
    definition = parse_definition(GOOD)
    assert definition.anonymous and definition.min_group == 3 and definition.reminder_after_days is None
    assert definition.audience.kind == "partners" and definition.audience.names == ("Finance", "Operations")
    assert definition.questions[0].required
    assert SurveyDefinition.from_json(definition.to_json()) == definition


def test_comments_spacing_and_key_order_do_not_change_the_fingerprint() -> None:
    plain = parse_definition(GOOD)
    reordered = GOOD.replace("title: Team pulse\n", "").replace("window_days: 5\n", "window_days: 5  # a week\n")
    reordered = "title:   Team pulse   # shown to people\n" + reordered
    assert parse_definition(reordered).fingerprint() == plain.fingerprint()
    assert parse_definition(GOOD.replace("window_days: 5", "window_days: 6")).fingerprint() != plain.fingerprint()


def test_a_bad_file_is_refused_whole_with_each_problem_at_its_line_and_field() -> None:
    bad = """\
name: Team Pulse
title: Team pulse
audience: everyone
schedule: {day: "1st mun", hour: 25}
window_days: 0
reminder_after_days: 3
anonymous: perhaps
min_group: 2
colour: blue
questions:
  - {id: satisfaction, type: rating, text: "How satisfied are you?"}
  - {id: satisfaction, type: scale, text: "Again?"}
  - {id: role, type: choice, text: "IT's role?"}
  - {id: mood, type: rating, text: "Mood?", options: [good, bad]}
  - {id: better, type: text, text: "One thing", required: maybe}
"""
    assert _problems(bad) == [
        (1, "name"),
        (3, "audience"),
        (4, "schedule.day"),
        (4, "schedule.hour"),
        (5, "window_days"),
        (7, "anonymous"),
        (8, "min_group"),
        (9, "colour"),
        (12, "questions[2].id"),
        (12, "questions[2].type"),
        (13, "questions[3].options"),
        (14, "questions[4].options"),
        (15, "questions[5].required"),
    ]


def test_the_messages_say_what_to_do() -> None:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(GOOD.replace("window_days: 5", "window_days: 5\nmin_group: 2"))
    assert str(caught.value) == (
        "line 6: min_group: 2 is too small: results show only from 3 answers or more, so no one can be picked out"
    )
    with pytest.raises(DefinitionError) as caught:
        parse_definition(GOOD.replace("{partners: [Finance, Operations]}", "{people: [dana@example, dana@example]}"))
    assert [str(p) for p in caught.value.problems] == [
        "line 3: audience.people: 'dana@example' is not an email address",
        "line 3: audience.people: 'dana@example' is not an email address",
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (("window_days: 5", "window_days: 5\nreminder_after_days: 5"), [(6, "reminder_after_days")]),
        (("schedule: {day_of_week: mon, hour: 10}", "schedule: {day_of_week: mon}"), [(4, "schedule")]),
        (("schedule: {day_of_week: mon, hour: 10}", "schedule: {second: 5, hour: 10}"), [(4, "schedule.second")]),
        (("audience: {partners: [Finance, Operations]}", "audience: {partners: [], people: [a@b.co]}"),
         [(3, "audience")]),
        (("name: team-pulse\n", ""), [(1, "name")]),
        (("  - {id: better, type: text, text: \"One thing to change\", required: false}\n", "  - better\n"),
         [(9, "questions[3]")]),
    ],
)
def test_each_rule(change: tuple[str, str], expected: list[tuple[int, str]]) -> None:
    assert _problems(GOOD.replace(*change)) == expected


def test_not_yaml_at_all() -> None:
    assert _problems("name: [unclosed\ntitle: x\n") == [(2, "yaml")]
    assert _problems("") == [(0, "file")]
