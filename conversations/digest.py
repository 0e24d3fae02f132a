"""The weekly leader digest: its figures gathered from storage, and the neutral message built from them.

:func:`gather` asks :class:`storage.digest.Digests` for each figure at the end of the week
reported on and a week earlier (SQL aggregates; the lists are short and bounded), judges
relationships with :func:`conversations.health.judge`, groups look-alike demand of different
partners (:func:`conversations.matching.connected`), and returns a :class:`Digest`.
:func:`render` turns it into one :class:`Reply`: a few lines per section, every number with its
change from the week before, long lists cut to their first items with "and N more", and buttons
to open a request or ask its BRM for an update (``digest:act``). Slack, Teams and the terminal
render that reply natively; it stays inside Slack's 50 blocks and a Teams card's size.

The digest of week ``2026-W47`` reports on that ISO week (Monday 00:00 to Monday 00:00 in the
reader's time zone) and is sent on the Monday after it.

Example::

    week = Week.last_complete(now, tz)
    digest = await gather(store, scope_for(leader), week=week, tz=tz, now=now)
    reply = render(digest, tz=tz)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as clock_time
from zoneinfo import ZoneInfo

from conversations.health import DEFAULT_STATUS_LIMIT_DAYS, Level, judge
from conversations.matching import Opportunity, connected
from conversations.messages import Choices, Option, Reply, Text, TextStyle
from storage.digest import TACTICAL, Item, Scope, SnoozeLine
from storage.models import OPEN_STATUSES, DemandRequest, Person, Relationship, Role, Status
from storage.store import Store

ACTION = "digest:act"
KIND = "digest"
ASK_KIND = "update-ask"
TOP = 5  # items per list before "and N more"
LINES = 8  # lines per section before "and N more"
MIX_DAYS = 90
DUMPING_SHARE = 0.8  # a partner's demand this tactical, over at least DUMPING_MIN requests, is flagged
DUMPING_MIN = 5
STILL_MONTHS = 6
CONNECTED_DAYS = 90
CONNECTED_SCAN = 400  # the newest open requests compared; the matcher is quadratic
SPARKS = "▁▂▃▄▅▆▇█"
MIN_GROUP = 3  # the anonymity floor: a run's figure for a partner needs this many answers, never fewer
_WEEK = re.compile(r"^\s*(\d{4})-?W(\d{1,2})\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class Week:
    """An ISO week, ``2026-W47``."""

    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> Week:
        match = _WEEK.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a week like 2026-W47")
        year, number = int(match.group(1)), int(match.group(2))
        try:
            date.fromisocalendar(year, number, 1)
        except ValueError:
            raise ValueError(f"{year} has no week {number}") from None
        return cls(year, number)

    @classmethod
    def containing(cls, moment: datetime, tz: ZoneInfo) -> Week:
        year, number, _ = moment.astimezone(tz).isocalendar()
        return cls(year, number)

    @classmethod
    def last_complete(cls, now: datetime, tz: ZoneInfo) -> Week:
        """The week before the one ``now`` is in (in ``tz``): what a Monday digest reports on."""
        return cls.containing(now.astimezone(tz) - timedelta(days=7), tz)

    def start(self, tz: ZoneInfo) -> datetime:
        monday = date.fromisocalendar(self.year, self.number, 1)
        return datetime.combine(monday, clock_time(0), tzinfo=tz)

    def __str__(self) -> str:
        return f"{self.year}-W{self.number:02d}"


def scope_for(person: Person) -> Scope | None:
    """What ``person``'s digest covers: leaders and admins everything, a BRM their partners'
    demand (a preview), anyone else nothing (None)."""
    if person.role in (Role.LEADER, Role.ADMIN):
        return Scope()
    if person.role == Role.BRM:
        return Scope(brm_id=person.id)
    return None


@dataclass(frozen=True, slots=True)
class RelationshipLine:
    partner: str
    brm: str
    level: Level
    reasons: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PulseLine:
    partner: str
    figures: tuple[float | None, ...]  # one per run, oldest first; None under the threshold


@dataclass(frozen=True, slots=True)
class MixLine:
    partner: str
    requests: int
    tactical: int
    prev_requests: int
    prev_tactical: int

    @property
    def share(self) -> float:
        return self.tactical / self.requests if self.requests else 0.0

    @property
    def flagged(self) -> bool:
        return self.requests >= DUMPING_MIN and self.share >= DUMPING_SHARE


@dataclass(frozen=True, slots=True)
class ValueLine:
    item: Item
    answer: str | None
    comment: str | None


@dataclass(slots=True)
class Digest:
    """Every figure of one digest, each as (this week, the week before) where it changes."""

    week: Week
    start: datetime
    end: datetime
    whose: str
    new: tuple[int, int] = (0, 0)
    new_top: list[Item] = field(default_factory=list)
    pipeline: dict[str, tuple[int, int]] = field(default_factory=dict)
    oldest: dict[str, Item] = field(default_factory=dict)
    stalled: tuple[int, int] = (0, 0)
    watch: tuple[int, int] = (0, 0)
    relationships: list[RelationshipLine] = field(default_factory=list)
    stuck: tuple[int, int] = (0, 0)
    stuck_top: list[Item] = field(default_factory=list)
    pulse_title: str | None = None
    pulse_runs: int = 0
    pulse: list[PulseLine] = field(default_factory=list)
    pulse_hidden: int = 0
    mix: list[MixLine] = field(default_factory=list)
    still: list[tuple[str, str, datetime]] = field(default_factory=list)
    still_before: int = 0
    snoozes: list[SnoozeLine] = field(default_factory=list)
    snoozes_before: int = 0
    snoozed_titles: dict[str, str] = field(default_factory=dict)
    value_counts: dict[str, int] = field(default_factory=dict)
    value_before: int = 0
    value_top: list[ValueLine] = field(default_factory=list)
    followed_up: list[str] = field(default_factory=list)
    followed_up_before: int = 0
    opportunities: list[Opportunity] = field(default_factory=list)


async def gather(store: Store, scope: Scope, *, week: Week, tz: ZoneInfo, now: datetime, whose: str) -> Digest:
    """Every figure of the digest of ``week`` for ``scope``. ``whose`` names the scope in the heading."""
    start = week.start(tz).astimezone(now.tzinfo)
    end = start + timedelta(days=7)
    at = min(end, now)
    prev = at - timedelta(days=7)
    d = Digest(week=week, start=start, end=end, whose=whose)
    this, last, d.new_top = await store.digest.new_demand(scope, start=start, end=end, limit=TOP)
    d.new = (this, last)
    d.pipeline = await store.digest.pipeline(scope, at=at, prev=prev)
    d.oldest = await store.digest.oldest_per_status(scope, at=at)
    this, last, d.stuck_top = await store.digest.stuck(scope, at=at, prev=prev, limit_days=DEFAULT_STATUS_LIMIT_DAYS,
                                                       limit=TOP)
    d.stuck = (this, last)
    await _relationships(store, scope, d, at=at, prev=prev)
    await _pulse(store, scope, d, at=at)
    names = await store.digest.partner_names(scope)
    d.mix = sorted(
        (MixLine(names.get(p, "?"), a, b, c, e) for p, a, b, c, e in
         await store.digest.mix(scope, at=at, prev=prev, days=MIX_DAYS) if a or c),
        key=lambda m: (not m.flagged, -m.share, m.partner),
    )
    d.still, d.still_before = await store.digest.maturity_still(scope, at=at, prev=prev, months=STILL_MONTHS)
    d.snoozes, d.snoozes_before = await store.digest.snoozes(scope, at=at, prev=prev)
    await _snoozed_names(store, d, names)
    counts, top = await store.digest.unconfirmed(scope, limit=TOP)
    d.value_before = d.pipeline.get(Status.DELIVERED.value, (0, 0))[1]
    d.value_counts = counts
    d.value_top = [ValueLine(item, answer or ("no answer" if reminded else None), comment)
                   for item, answer, comment, reminded in top]
    d.followed_up, d.followed_up_before = await store.digest.followed_up(scope, at=at, prev=prev)
    recent = await store.digest.recent_open(scope, at=at, days=CONNECTED_DAYS, limit=CONNECTED_SCAN)
    d.opportunities = connected(recent)
    return d


async def _relationships(store: Store, scope: Scope, d: Digest, *, at: datetime, prev: datetime) -> None:
    """Judge each primary relationship at both moments with the nudges' own rules."""
    stalled, watch = [0, 0], [0, 0]
    lines = []
    for f in await store.digest.relationships(scope, at=at, prev=prev):
        oldest = None
        if f.oldest_id is not None:
            oldest = DemandRequest.model_construct(id=f.oldest_id, status=f.oldest_status or "",
                                                   updated_at=f.oldest_updated_at or at, title=f.oldest_title or "")
        earlier = f.last_touchpoint_at if f.last_touchpoint_at is not None and f.last_touchpoint_at <= prev else None
        if f.touched_before is not None:
            logged = datetime.combine(f.touched_before, clock_time(0), tzinfo=at.tzinfo)
            earlier = max(earlier, logged) if earlier is not None else logged
        for i, (moment, last) in enumerate(((at, f.last_touchpoint_at), (prev, earlier))):
            rel = Relationship.model_construct(partner_id=f.partner_id, brm_id=f.brm_id, cadence_days=f.cadence_days,
                                               last_touchpoint_at=last)
            requests = [oldest] if oldest is not None and oldest.updated_at <= moment else []
            health = judge(rel, requests, now=moment)
            if health.level == Level.STALLED:
                stalled[i] += 1
            elif health.level == Level.WATCH:
                watch[i] += 1
            if i == 0 and health.level != Level.HEALTHY:
                lines.append(RelationshipLine(f.partner, f.brm, health.level, health.reasons))
    d.stalled, d.watch = (stalled[0], stalled[1]), (watch[0], watch[1])
    d.relationships = sorted(lines, key=lambda r: (r.level != Level.STALLED, r.partner))


async def _pulse(store: Store, scope: Scope, d: Digest, *, at: datetime) -> None:
    runs = await store.digest.pulse_runs(at=at)
    questions: dict[int, str] = {}
    floors: dict[int, int] = {}
    for run_id, _, definition in runs:
        rating = next((q for q in definition.get("questions", []) if isinstance(q, dict) and q.get("type") == "rating"),
                      None)
        if rating is not None and rating.get("id"):
            questions[run_id] = str(rating["id"])
            try:
                floors[run_id] = max(MIN_GROUP, int(definition.get("min_group", MIN_GROUP)))
            except (TypeError, ValueError):
                floors[run_id] = MIN_GROUP
    if not questions:
        return
    d.pulse_title = str(runs[-1][2].get("title") or "Pulse")
    order = [r for r, _, _ in runs if r in questions]
    d.pulse_runs = len(order)
    names = await store.digest.partner_names(scope)
    table: dict[int, dict[int, float | None]] = {}
    for run_id, partner_id, average, answers in await store.digest.pulse_scores(scope, questions=questions):
        table.setdefault(partner_id, {})[run_id] = average if answers >= floors[run_id] else None
    lines = []
    for partner_id, by_run in table.items():
        figures = tuple(by_run.get(r) for r in order)
        if any(f is not None for f in figures):
            lines.append(PulseLine(names.get(partner_id, "?"), figures))
        else:
            d.pulse_hidden += 1
    d.pulse = sorted(lines, key=lambda p: p.partner)


async def _snoozed_names(store: Store, d: Digest, partners: dict[int, str]) -> None:
    ids = [int(s.item.split(":", 1)[1]) for s in d.snoozes if s.item.startswith("request:") and
           s.item.split(":", 1)[1].isdigit()]
    titles = await store.digest.titles(ids)
    for s in d.snoozes:
        kind, _, raw = s.item.partition(":")
        if kind == "request" and raw.isdigit():
            d.snoozed_titles[s.item] = f"DR-{raw} {titles.get(int(raw), '')}".strip()
        elif kind == "partner" and raw.isdigit():
            d.snoozed_titles[s.item] = f"the {partners.get(int(raw), 'partner')} relationship"


# --- the message ----------------------------------------------------------------------------------


def change(now: float, before: float, *, unit: str = "") -> str:
    """``(+3)``, ``(−1)`` or ``(same)``: how a figure moved since last week."""
    diff = now - before
    if abs(diff) < 1e-9:
        return "(same)"
    shown = f"{abs(diff):.1f}" if isinstance(now, float) or isinstance(before, float) else f"{abs(int(diff))}"
    return f"({'+' if diff > 0 else '−'}{shown}{unit})"


def trend(figures: tuple[float | None, ...]) -> str:
    """``3.4 ▂▃▅▆ 4.1``: the first and last figures with a bar per run (``·`` under the threshold)."""
    shown = [f for f in figures if f is not None]
    bars = "".join("·" if f is None else SPARKS[min(7, max(0, round((f - 1) / 4 * 7)))] for f in figures)
    if len(figures) == 1:
        return f"{shown[0]:.1f}"
    return f"{shown[0]:.1f} {bars} {shown[-1]:.1f}"


def _days(now: datetime, then: datetime) -> str:
    days = max(0, (now - then).days)
    return "1 day" if days == 1 else f"{days} days"


def _more(lines: list[str], total: int) -> list[str]:
    return lines + ([f"… and {total - len(lines)} more"] if total > len(lines) else [])


def _clip(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _item_choices(item: Item, prompt: str) -> Choices:
    options = [Option(f"open|{item.id}", f"Open {item.key}")]
    if item.brm_id is not None:
        options.append(Option(f"ask|{item.id}", f"Ask {(item.brm or 'the BRM').split(' ')[0]} for an update"))
    return Choices(id=ACTION, prompt=prompt, options=tuple(options))


def render(d: Digest, *, tz: ZoneInfo, now: datetime) -> Reply:
    """The digest as one neutral reply (see the module's docstring)."""
    at = min(d.end, now)
    first, last = d.start.astimezone(tz), (d.end - timedelta(days=1)).astimezone(tz)
    blocks: list[Text | Choices] = [
        Text(f"Weekly digest, {first:%d %b} – {last:%d %b %Y} ({d.week})", TextStyle.HEADING),
        Text(f"{d.whose}. Each figure with its change from the week before.", TextStyle.MUTED),
    ]
    # new demand
    lines = [f"*New demand:* {d.new[0]} {change(d.new[0], d.new[1])}"]
    lines += [f"• {i.key} {_clip(i.title)} ({i.partner or 'no partner'}, {i.urgency})" for i in d.new_top]
    blocks.append(Text("\n".join(_more(lines, d.new[0] + 1))))
    if d.new_top:
        blocks.append(Choices(id=ACTION, prompt="Open one of them:",
                              options=tuple(Option(f"open|{i.id}", f"Open {i.key}") for i in d.new_top)))
    # pipeline
    lines = ["*Pipeline by status* (oldest open item, by time in its status):"]
    for s in Status:
        now_count, before = d.pipeline.get(s.value, (0, 0))
        if not now_count and not before:
            continue
        line = f"• {s.value.capitalize()}: {now_count} {change(now_count, before)}"
        oldest = d.oldest.get(s.value) if s in OPEN_STATUSES else None
        if oldest is not None:
            line += f", oldest {oldest.key} {_clip(oldest.title, 60)} ({_days(at, oldest.since)})"
        lines.append(line)
    if len(lines) == 1:
        lines.append("• no requests yet")
    blocks.append(Text("\n".join(lines)))
    # relationships and stuck requests
    lines = [f"*Relationships:* {d.stalled[0]} stalled {change(*d.stalled)}, {d.watch[0]} to watch {change(*d.watch)}"]
    lines += [f"• {r.partner} ({r.level}, {r.brm}): {' · '.join(r.reasons)}" for r in d.relationships[:LINES]]
    blocks.append(Text("\n".join(_more(lines, len(d.relationships) + 1))))
    blocks.append(Text(f"*Stuck requests* (over {DEFAULT_STATUS_LIMIT_DAYS} days in one status): "
                       f"{d.stuck[0]} {change(*d.stuck)}" + ("" if d.stuck_top else ", none")))
    for i in d.stuck_top:
        prompt = f"{i.key} {_clip(i.title, 60)}: {i.status} for {_days(at, i.since)} ({i.partner or 'no partner'}, " \
                 f"BRM {i.brm or 'none'})"
        blocks.append(_item_choices(i, prompt))
    if d.stuck[0] > len(d.stuck_top):
        blocks.append(Text(f"… and {d.stuck[0] - len(d.stuck_top)} more stuck", TextStyle.MUTED))
    # pulse
    if d.pulse_title is None:
        blocks.append(Text("*Pulse:* no survey results yet"))
    else:
        lines = [f"*Pulse* ({d.pulse_title}, satisfaction 1–5 over the last {d.pulse_runs} runs; change from the run "
                 "before):"]
        for p in d.pulse[:LINES]:
            shown = [f for f in p.figures if f is not None]
            moved = change(round(shown[-1], 1), round(shown[-2], 1)) if len(shown) > 1 else ""
            lines.append(f"• {p.partner} {trend(p.figures)} {moved}".rstrip())
        lines = _more(lines, len(d.pulse) + 1)
        if d.pulse_hidden:
            lines.append(f"• {d.pulse_hidden} partner(s) with fewer than {MIN_GROUP} answers a run: not shown")
        blocks.append(Text("\n".join(lines)))
    # demand mix
    lines = [f"*Demand mix* (last {MIX_DAYS} days; tactical = "
             + ", ".join(c + "s" for c in TACTICAL) + "):"]
    for m in d.mix[:LINES]:
        share_before = m.prev_tactical / m.prev_requests if m.prev_requests else 0.0
        moved = change(round(m.share * 100), round(share_before * 100), unit=" pts")
        flag = " ⚠ almost all tactical: a dumping ground?" if m.flagged else ""
        lines.append(f"• {m.partner}: {m.tactical} of {m.requests} tactical ({m.share:.0%}) {moved}{flag}")
    if not d.mix:
        lines.append("• no requests in the window")
    blocks.append(Text("\n".join(_more(lines, len(d.mix) + 1))))
    # maturity
    lines = [f"*Maturity not moved in {STILL_MONTHS} months:* {len(d.still)} {change(len(d.still), d.still_before)}"]
    lines += [f"• {name}: {stage} since {since.astimezone(tz):%d %b %Y}" for name, stage, since in d.still[:LINES]]
    blocks.append(Text("\n".join(_more(lines, len(d.still) + 1))))
    # snoozes
    lines = [f"*Snoozed nudges:* {len(d.snoozes)} {change(len(d.snoozes), d.snoozes_before)}"]
    lines += [f"• {s.brm} snoozed {_clip(d.snoozed_titles.get(s.item, s.item), 60)} until "
              f"{s.until.astimezone(tz):%d %b}: {s.reason or 'no reason given'}" for s in d.snoozes[:LINES]]
    blocks.append(Text("\n".join(_more(lines, len(d.snoozes) + 1))))
    # value
    total = sum(d.value_counts.values())
    words = {"waiting": "not asked yet", "asked": "asked", "reminded": "no answer after a reminder",
             "partly": "said partly", "no": "said no"}
    parts = [f"{d.value_counts[k]} {w}" for k, w in words.items() if d.value_counts.get(k)]
    blocks.append(Text(f"*Delivered, value not yet confirmed:* {total} {change(total, d.value_before)}"
                       + (": " + ", ".join(parts) if parts else "")))
    for v in d.value_top:
        if v.answer is None:
            continue
        said = ("no answer after a reminder" if v.answer == "no answer" else f"the requester said {v.answer}") \
            + (f": “{_clip(v.comment, 120)}”" if v.comment else "")
        blocks.append(_item_choices(v.item, f"{v.item.key} {_clip(v.item.title, 60)} ({v.item.partner}): {said}"))
    # you said, we did
    names = ", ".join(d.followed_up[:LINES]) + (f" and {len(d.followed_up) - LINES} more"
                                                 if len(d.followed_up) > LINES else "")
    blocks.append(Text(f"*You said, we did* after their last pulse: {len(d.followed_up)} "
                       f"{change(len(d.followed_up), d.followed_up_before)}" + (f": {names}" if names else "")))
    # connected demand
    if d.opportunities:
        lines = ["*Connected demand* (look-alike requests from different partners):"]
        lines += [f"• {_clip(o.sentence(), 300)}" for o in d.opportunities[:TOP]]
        blocks.append(Text("\n".join(_more(lines, len(d.opportunities) + 1))))
    return Reply(blocks=tuple(blocks))


def ask_for_update(*, asker: str, request: DemandRequest, now: datetime) -> Reply:
    """What a BRM receives when a leader presses "Ask … for an update" in the digest."""
    return Reply.of(
        Text(f"{asker} asks for an update on {request.key} “{request.title}”", TextStyle.HEADING),
        Text(f"It is {request.status}, for {_days(now, request.updated_at)}. Type *status {request.key}* to see it, "
             f"*comment {request.key} …* to add the update, or *move {request.key} to …*."),
    )
