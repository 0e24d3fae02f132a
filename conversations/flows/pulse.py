"""Pulse survey results in chat (*pulse*, *pulse Finance*) and "you said, we did" (*follow up Finance*).

``pulse`` shows the latest run: the whole run and each of the reader's partners (a BRM's own,
everyone's for leaders and admins), with a compact trend of the satisfaction question over the
last runs (``4.2 ▇▆▅ 3.0``). ``pulse Finance`` shows one partner question by question, its
free answers (without names when the survey is anonymous) and whether it had its follow-up.
Figures come from :mod:`storage.survey_results`, which never returns a group under the
survey's ``min_group``: such a group reads "fewer than 3 answers" here as everywhere.

``follow up Finance`` (the partner's BRM, or an admin) writes what we heard and what we will
do after a run closed; the bot sends it to everyone of that partner invited to that run,
once: a second follow-up of the same run and partner is refused with what was sent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import ClassVar

from conversations import codec
from conversations.catalog import Command
from conversations.engine import FlowBase, FlowState, Step, StepHandler, Turn
from conversations.flows.common import check_text, warn
from conversations.messages import Choices, Field, Form, Inbound, Option, Reply, Text, TextStyle
from storage.models import BusinessPartner, QuestionKind, Role, Survey, SurveyFollowUp, SurveyRun
from storage.survey_results import Figure, Group, RunResults

READERS = frozenset({Role.BRM.value, Role.LEADER.value, Role.ADMIN.value})
WRITERS = frozenset({Role.BRM.value, Role.ADMIN.value})
BARS = "▁▂▃▄▅▆▇█"
GAP = "·"
TEXTS_IN_CHAT = 5
PART_LIMIT = 1000
FOLLOW_UP_KIND = "survey-follow-up"
FOLLOW_UP_PRIORITY = 1  # proactive: counts against the weekly budget, after nudges


# --- how figures read ---------------------------------------------------------------------------


def spark(series: Sequence[float | None], *, low: float = 1.0, high: float = 5.0) -> str:
    """One bar per run (``·`` where the run showed nothing), on the question's whole scale."""
    out = []
    for value in series:
        if value is None:
            out.append(GAP)
            continue
        share = (min(max(value, low), high) - low) / (high - low)
        out.append(BARS[round(share * (len(BARS) - 1))])
    return "".join(out)


def trend_text(series: Sequence[float | None]) -> str:
    """``4.2 ▇▆▅ 3.0``: the first shown value, a bar per run, the latest; just the latest if alone."""
    shown = [v for v in series if v is not None]
    if not shown:
        return ""
    if len(series) < 2 or len(shown) < 2:
        return f"{shown[-1]:.1f}"
    return f"{shown[0]:.1f} {spark(series)} {shown[-1]:.1f}"


def signed(value: float, *, decimals: int = 0) -> str:
    return f"{value:+.{decimals}f}".replace("-", "−")


def percent(rate: float | None) -> str:
    return "" if rate is None else f"{round(100 * rate)}%"


def describe_figure(figure: Figure, *, hidden_note: str, since: str | None) -> str:
    """One question's figures in a few words, or why there are none."""
    if figure.hidden:
        return hidden_note
    kind = figure.question.kind
    if kind == QuestionKind.RATING and figure.average is not None:
        out = f"{figure.average:.1f} of 5"
        if figure.change is not None and since:
            out += f" ({signed(figure.change, decimals=1)} since {since})"
        if len([v for v in figure.trend if v is not None]) > 1:
            out += f" · trend {trend_text(figure.trend)}"
        return out
    if kind == QuestionKind.NPS and figure.nps is not None:
        out = f"NPS {signed(figure.nps)}"
        if figure.change is not None and since:
            out += f" ({signed(figure.change)} since {since})"
        return out
    if kind == QuestionKind.CHOICE:
        return " · ".join(f"{option} {n}" for option, n in figure.distribution)
    return f"{figure.answers} answers"


def group_line(group: Group, results: RunResults, *, label: str | None = None) -> str:
    """``*Finance*: 5 of 6 answered (83%) · satisfaction 4.2 ▇▆▅ 3.0 · NPS +20``."""
    name = label or f"*{group.name}*"
    if group.hidden:
        return f"{name}: {group.invited} invited, {results.hidden_note}"
    parts = [f"{group.answered} of {group.invited} answered ({percent(group.rate)})"]
    question = results.satisfaction_question
    figure = group.figure(question.id) if question is not None else None
    if question is not None and figure is not None and figure.average is not None:
        parts.append(f"{question.id} {trend_text(figure.trend) or f'{figure.average:.1f}'}")
    nps = next((f for f in group.figures if f.question.kind == QuestionKind.NPS and f.nps is not None), None)
    if nps is not None and nps.nps is not None:
        parts.append(f"NPS {signed(nps.nps)}")
    return f"{name}: " + " · ".join(parts)


def heading(results: RunResults, partner: str | None = None) -> str:
    state = "closed" if results.closed else "still open"
    return " · ".join(x for x in (results.title, partner, f"{results.period} ({state})") if x)


# --- pulse --------------------------------------------------------------------------------------


def _named(text: str, partners: Sequence[BusinessPartner]) -> BusinessPartner | None:
    """The partner ``text`` names: its whole name or its first word, ignoring case."""
    said = " ".join(text.casefold().split())
    for partner in sorted(partners, key=lambda p: -len(p.name)):
        name = partner.name.casefold()
        if said in (name, name.split(" ")[0]):
            return partner
    return None


async def _own_partners(turn: Turn) -> list[BusinessPartner]:
    """A BRM's partners; everyone's for leaders and admins."""
    assert turn.person.id is not None
    if turn.person.role == Role.BRM:
        return [v.partner for v in await turn.store.relationships.of_brm(turn.person.id)]
    return await turn.store.partners.all()


class PulseFlow(FlowBase):
    name: ClassVar[str] = "pulse"
    title: ClassVar[str] = "pulse results"
    commands: ClassVar[tuple[Command, ...]] = (
        Command(
            words=("pulse", "pulse results", "survey results"),
            help="*pulse* (or *pulse Finance*) to see how your partners rate IT in the latest pulse survey, "
                 "with the trend",
            roles=READERS,
            slash=("pulse",),
            example="pulse Finance",
        ),
    )

    def __init__(self) -> None:
        self.steps: Mapping[str, StepHandler] = {}

    async def start(self, turn: Turn, argument: str) -> Step:
        if turn.person.role not in READERS:
            return Step.end(warn("Pulse results are for BRMs and leaders; your own answers stay with the survey. "
                                 "Type *help* to see what you can do."))
        latest = await turn.store.survey_results.latest(now=turn.now)
        if latest is None:
            return Step.end(Reply.text("No pulse survey has run yet, so there are no results to show."))
        survey, run = latest
        results = await turn.store.survey_results.results(survey, run, now=turn.now, texts=TEXTS_IN_CHAT)
        mine = await _own_partners(turn)
        if argument:
            return Step.end(self._one(turn, results, argument, mine))
        return Step.end(self._overview(turn, results, mine))

    @staticmethod
    def _overview(turn: Turn, results: RunResults, mine: Sequence[BusinessPartner]) -> Reply:
        ids = {p.id for p in mine}
        groups = [g for g in results.partners if g.partner_id in ids or
                  (g.partner_id is None and turn.person.role != Role.BRM)]
        lines = [f"• {group_line(g, results)}" for g in groups]
        if not lines:
            lines = ["• None of your partners was invited to this run."]
        return Reply.of(
            Text(heading(results), TextStyle.HEADING),
            Text(group_line(results.overall, results, label="Overall (all partners)")),
            Text("\n".join(lines)),
            Text(f"Type *pulse <partner>* for one partner's answers. A group with {results.hidden_note} "
                 "shows no figures, so no one's answers can be told apart.", TextStyle.MUTED),
        )

    @staticmethod
    def _one(turn: Turn, results: RunResults, argument: str, mine: Sequence[BusinessPartner]) -> Reply:
        partner = _named(argument, mine)
        if partner is None:
            names = ", ".join(p.name for p in mine) or "none yet"
            return warn(f"“{argument[:40]}” is not one of your partners ({names}). Type like *pulse Finance*.")
        group = results.partner(partner.id)
        if group is None:
            return Reply.text(f"No one at {partner.name} was invited to {results.title} {results.period}.")
        blocks: list[Text] = [Text(heading(results, partner.name), TextStyle.HEADING)]
        if group.hidden:
            blocks.append(Text(f"{group.invited} invited, {results.hidden_note}: no figures show, so no one's "
                               "answers can be told apart."))
            return Reply(blocks=tuple(blocks))
        blocks.append(Text(f"{group.answered} of {group.invited} answered ({percent(group.rate)})"))
        lines = []
        for figure in group.figures:
            said = describe_figure(figure, hidden_note=results.hidden_note, since=results.previous_period)
            lines.append(f"• {figure.question.text} {said}")
            if figure.texts:
                lines.extend(f"    “{t}”" for t in figure.texts)
        blocks.append(Text("\n".join(lines)))
        if group.followed_up_at is not None:
            blocks.append(Text(f"You said, we did: sent {turn.local(group.followed_up_at)}.", TextStyle.MUTED))
        elif results.closed and turn.person.role in WRITERS:
            blocks.append(Text(f"You said, we did: not yet. Type *follow up {partner.name}* to tell them what you "
                               "heard and what you will do.", TextStyle.MUTED))
        return Reply(blocks=tuple(blocks))



# --- you said, we did ---------------------------------------------------------------------------


def follow_up_message(*, title: str, period: str, partner: str, heard: str, doing: str, brm: str) -> Reply:
    """What everyone of the partner invited to the run receives."""
    return Reply.of(
        Text(f"You said, we did: {title}", TextStyle.HEADING),
        Text(f"Thank you for answering the {title} ({period}). Here is what we heard from {partner}, "
             "and what we will do about it."),
        *_said(heard, doing),
        Text(f"From {brm}, your business relationship manager.", TextStyle.MUTED),
    )


HEARD_LABEL, DOING_LABEL = "What we heard: ", "\n\nWhat we will do: "


def _kept(heard: str, doing: str) -> str:
    """The follow-up as the ``survey_follow_up`` row keeps it."""
    return f"{HEARD_LABEL}{heard}{DOING_LABEL}{doing}"


def _parts(text: str) -> tuple[str, str]:
    heard, _, doing = text.removeprefix(HEARD_LABEL).partition(DOING_LABEL)
    return heard, doing


def _said(heard: str, doing: str) -> tuple[Text, Text]:
    return Text(f"*What we heard*\n{heard}"), Text(f"*What we will do*\n{doing}")


class FollowUpFlow(FlowBase):
    """*follow up Finance*: what we heard, what we will do; sent once per run and partner."""

    name: ClassVar[str] = "followup"
    title: ClassVar[str] = "follow-up to a pulse"
    keeps_draft: ClassVar[bool] = True
    commands: ClassVar[tuple[Command, ...]] = (
        Command(
            words=("follow up", "follow-up", "you said we did"),
            help="*follow up Finance* after a pulse closes, to tell the partner what you heard and what you "
                 "will do",
            roles=WRITERS,
            slash=("followup",),
            example="follow up Finance",
        ),
    )
    form_id: ClassVar[str | None] = "followup"
    # No typed form word: adapters show form words to everyone, and this form is for BRMs only.

    def __init__(self) -> None:
        self.steps: Mapping[str, StepHandler] = {"heard": self._heard, "doing": self._doing,
                                                 "confirm": self._confirm}

    async def _writable(self, turn: Turn) -> list[BusinessPartner] | Step:
        """The partners this person may follow up with, or a refusal."""
        if turn.person.role not in WRITERS:
            return Step.end(warn("Follow-ups to a pulse come from the partner's BRM. "
                                 "Type *pulse* to see the results."
                                 if turn.person.role == Role.LEADER else
                                 "Follow-ups to a pulse come from the partner's BRM. "
                                 "Type *help* to see what you can do."))
        return await _own_partners(turn)

    async def _target(
        self, turn: Turn, partner: BusinessPartner
    ) -> tuple[Survey, SurveyRun] | Step:
        """The closed run to follow up for ``partner``, or why there is none (or it had its follow-up)."""
        assert partner.id is not None
        found = await turn.store.survey_results.closed_run_of_partner(partner_id=partner.id, now=turn.now)
        if found is None:
            return Step.end(Reply.text(f"No pulse run that invited {partner.name} has closed yet: a follow-up "
                                       "comes after the run closes."))
        survey, run = found
        assert run.id is not None
        sent = await turn.store.survey_results.follow_up(run_id=run.id, partner_id=partner.id)
        if sent is not None:
            return Step.end(await self._already(turn, partner, survey, run, sent))
        return survey, run

    async def _already(
        self, turn: Turn, partner: BusinessPartner, survey: Survey, run: SurveyRun, sent: SurveyFollowUp
    ) -> Reply:
        by = await turn.store.people.get(sent.by_person_id)
        heard, doing = _parts(sent.text)
        return Reply.of(
            Text(f"{partner.name} already had its follow-up to the {survey.title} ({run.period}): sent "
                 f"{turn.local(sent.created_at)} by {by.name if by else 'a former employee'}. "
                 "One follow-up per run, so nothing new was sent.", TextStyle.WARNING),
            *_said(heard, doing),
        )

    async def start(self, turn: Turn, argument: str) -> Step:
        partners = await self._writable(turn)
        if isinstance(partners, Step):
            return partners
        if not argument:
            return await self.open_form(turn, {})
        partner = _named(argument, partners)
        if partner is None:
            names = ", ".join(p.name for p in partners) or "none yet"
            return Step.end(warn(f"“{argument[:40]}” is not one of your partners ({names}). "
                                 "Type like *follow up Finance*."))
        target = await self._target(turn, partner)
        if isinstance(target, Step):
            return target
        survey, run = target
        invited = await turn.store.survey_results.invited_people(run_id=run.id or 0, partner_id=partner.id or 0)
        data = {"partner": partner.id, "run": run.id}
        return Step(
            (Reply.of(Text(f"Follow-up to {partner.name} after the {survey.title} ({run.period}): it goes to the "
                           f"{len(invited)} people of {partner.name} who were invited."),
                      Text("First, *what we heard*: in one message, what did they tell you?")),),
            next="heard",
            data=data,
        )

    async def _heard(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        heard = inbound.text.strip()
        error = check_text("summary of what you heard", heard, minimum=10, maximum=PART_LIMIT)
        if error is not None:
            return Step((warn(error),), "heard", state.data)
        return Step((Reply.text("Now *what we will do*: in one message, what will you do about it?"),),
                    next="doing", data={**state.data, "heard": heard})

    async def _doing(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        doing = inbound.text.strip()
        error = check_text("plan", doing, minimum=10, maximum=PART_LIMIT)
        if error is not None:
            return Step((warn(error),), "doing", state.data)
        return Step(
            (Reply.of(Text("This is what they will read:", TextStyle.MUTED), *_said(str(state.data["heard"]), doing),
                      Choices(id="followup:confirm", prompt="Send it? It goes once and cannot be changed.",
                              options=(Option("send", "Send", primary=True), Option("cancel", "Cancel")))),),
            next="confirm",
            data={**state.data, "doing": doing},
        )

    async def _confirm(self, turn: Turn, state: FlowState, inbound: Inbound) -> Step:
        said = inbound.action.value if inbound.action is not None else inbound.text.strip().casefold()
        if said in ("cancel", "no", "2"):
            return Step.end(Reply.text("Not sent. Nothing was saved."))
        if said not in ("send", "yes", "1"):
            return Step((warn("Press *Send* or *Cancel* (or type send or cancel)."),), "confirm", state.data)
        partner = await turn.store.partners.get(int(state.data["partner"]))
        if partner is None:
            return Step.end(warn("That partner is gone. Nothing was sent."))
        return await self._send(turn, partner, int(state.data["run"]), str(state.data["heard"]),
                                str(state.data["doing"]))

    async def _send(self, turn: Turn, partner: BusinessPartner, run_id: int, heard: str, doing: str) -> Step:
        """Record the follow-up (once per run and partner) and queue it to everyone invited."""
        assert partner.id is not None and turn.person.id is not None
        target = await self._target(turn, partner)
        if isinstance(target, Step):
            return target
        survey, run = target
        if run.id != run_id:
            return Step.end(warn(f"A newer run of {survey.title} closed since you started; type "
                                 f"*follow up {partner.name}* again. Nothing was sent."))
        record = SurveyFollowUp(run_id=run_id, partner_id=partner.id, by_person_id=turn.person.id,
                                text=_kept(heard, doing), created_at=turn.now)
        if not await turn.store.survey_results.add_follow_up(record):
            sent = await turn.store.survey_results.follow_up(run_id=run_id, partner_id=partner.id)
            assert sent is not None
            return Step.end(await self._already(turn, partner, survey, run, sent))
        message = follow_up_message(title=survey.title, period=run.period, partner=partner.name, heard=heard,
                                    doing=doing, brm=turn.person.name)
        payload = codec.reply_to_json(message)
        people = await turn.store.survey_results.invited_people(run_id=run_id, partner_id=partner.id)
        for person_id in people:
            added = await turn.store.outbox.enqueue(
                kind=FOLLOW_UP_KIND, subject=f"run:{run_id}:partner:{partner.id}", period=run.period,
                recipient_id=person_id, payload=payload, now=turn.now, priority=FOLLOW_UP_PRIORITY,
            )
            turn.queued += int(added)
        return Step.end(Reply.text(f"Sent to the {len(people)} people of {partner.name} invited to the "
                                   f"{survey.title} ({run.period}); each gets it within their delivery hours.",
                                   TextStyle.SUCCESS))

    # --- the form ---------------------------------------------------------------------------------

    async def open_form(self, turn: Turn, prefill: Mapping[str, str]) -> Step:
        partners = await self._writable(turn)
        if isinstance(partners, Step):
            return partners
        return Step.end(Reply.of(self._form(partners, prefill, {})))

    @staticmethod
    def _form(partners: Sequence[BusinessPartner], values: Mapping[str, str], errors: Mapping[str, str]) -> Form:
        return Form(
            id="followup:submit",
            title="You said, we did",
            fields=(
                Field("partner", "Business partner", "select", True,
                      tuple(Option(str(p.id), p.name) for p in partners), values.get("partner")),
                Field("heard", "What we heard", "multiline", True, initial=values.get("heard"),
                      max_length=PART_LIMIT),
                Field("doing", "What we will do", "multiline", True, initial=values.get("doing"),
                      max_length=PART_LIMIT),
            ),
            submit_label="Send",
            errors=errors,
        )

    async def submit_form(self, turn: Turn, values: Mapping[str, str]) -> Step:
        partners = await self._writable(turn)
        if isinstance(partners, Step):
            return partners
        partner = next((p for p in partners if str(p.id) == values.get("partner", "")), None)
        errors: dict[str, str] = {}
        if partner is None:
            errors["partner"] = "Pick one of your business partners."
        heard, doing = (values.get("heard") or "").strip(), (values.get("doing") or "").strip()
        for name, label, text in (("heard", "summary of what you heard", heard), ("doing", "plan", doing)):
            error = check_text(label, text, minimum=10, maximum=PART_LIMIT)
            if error is not None:
                errors[name] = error
        if errors or partner is None:
            return Step.end(Reply.of(self._form(partners, values, errors)))
        target = await self._target(turn, partner)
        if isinstance(target, Step):
            return target
        return await self._send(turn, partner, target[1].id or 0, heard, doing)

    async def reprompt(self, turn: Turn, state: FlowState) -> tuple[Reply, ...]:
        if state.step == "heard":
            return (Reply.text("What did they tell you? Type *what we heard* in one message, or *cancel*."),)
        if state.step == "doing":
            return (Reply.text("What will you do about it? Type it in one message, or *cancel*."),)
        return (Reply.of(Choices(id="followup:confirm", prompt="Send the follow-up?",
                                 options=(Option("send", "Send", primary=True), Option("cancel", "Cancel")))),)
