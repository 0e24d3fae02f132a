"""Message shortcuts: declared by a flow, checked by the catalog; the touchpoint form they open."""

from __future__ import annotations

import dataclasses

import pytest

from conversations.catalog import QUOTED_LINK, QUOTED_PLACE, QUOTED_TEXT, Catalog, MessageShortcut
from conversations.engine import Engine
from conversations.flows import default_flows
from conversations.flows.relationships import LOG_AS_TOUCHPOINT, TouchpointFlow, guess_partner
from conversations.messages import Action, ConversationKey, Inbound, Sender
from storage.models import BusinessPartner


def _partners(*names: str) -> list[BusinessPartner]:
    return [BusinessPartner(id=n, name=name) for n, name in enumerate(names, 1)]


@pytest.mark.parametrize(
    ("message", "place", "expected"),
    [
        ("Finance wants the roadmap", "", "Finance"),
        ("the sales & marketing folks called", "", "Sales & Marketing"),
        ("laptops for starters", "people-culture-it", "People & Culture"),
        ("see you next week", "random", None),
        ("financial close is late", "", None),  # a word that merely starts like a partner's name
    ],
)
def test_the_partner_is_guessed_from_the_message_then_the_channel(message: str, place: str,
                                                                  expected: str | None) -> None:
    partners = _partners("Finance", "Sales & Marketing", "People & Culture")
    guessed = guess_partner(partners, message, place)
    assert (guessed.name if guessed else None) == expected


def test_a_brm_with_one_partner_gets_that_one() -> None:
    [only] = _partners("Operations")
    assert guess_partner([only], "hello", "") is only


def test_the_catalog_lists_log_as_touchpoint_and_refuses_a_shortcut_claimed_twice() -> None:
    catalog = Catalog(default_flows())
    assert catalog.shortcuts() == [LOG_AS_TOUCHPOINT]
    assert catalog.shortcut_flow("log_touchpoint") == "touchpoint" and catalog.shortcut_flow("nope") is None

    class Twice(TouchpointFlow):
        name = "touchpoint_again"
        commands = (dataclasses.replace(TouchpointFlow.commands[0], words=("tp again",), slash=()),)

    with pytest.raises(ValueError, match="shortcut 'log_touchpoint' is claimed by touchpoint too"):
        Catalog([*default_flows(), Twice()])

    class Bad(TouchpointFlow):
        name = "bad"
        commands = (dataclasses.replace(TouchpointFlow.commands[0], words=("bad",), slash=(),
                                        shortcut=MessageShortcut("log touchpoint!", "x", "x")),)

    with pytest.raises(ValueError, match="an id of letters and _"):
        Catalog([*default_flows(), Bad()])


async def test_a_quoted_message_opens_the_form_with_its_note_partner_and_a_safe_link(engine: Engine) -> None:
    key = ConversationKey("slack", "T1", "C1", "U0ALICE")
    alice = Sender(name="Alice Moreno", email="alice@example.com")
    long_text = "Finance call: " + "x" * 1200
    form = {QUOTED_TEXT: long_text, QUOTED_LINK: "https://acme.slack.com/archives/C1/p1", QUOTED_PLACE: "random"}
    [reply] = await engine.handle(Inbound(key, "Ev1", action=Action("touchpoint:open"), form=form, sender=alice))
    assert reply.form is not None
    fields = {f.name: f for f in reply.form.fields}
    assert fields["partner"].initial == "1" and fields["kind"].initial == "meeting"
    assert fields["note"].initial is not None and len(fields["note"].initial) == 1000
    assert reply.form.context == {"link": "https://acme.slack.com/archives/C1/p1"}

    phishing = {**form, QUOTED_LINK: "https://evil.example.com/login"}
    [reply] = await engine.handle(Inbound(key, "Ev2", action=Action("touchpoint:open"), form=phishing, sender=alice))
    assert reply.form is not None and reply.form.context == {}, "only the platform's own links are kept"
