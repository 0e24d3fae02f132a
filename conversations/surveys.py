"""Survey definitions: the YAML an admin writes, checked whole, as a frozen value.

``brm-bot surveys apply FILE.yaml`` reads a file with :func:`parse_definition`. A file with
any problem is refused whole: every problem is reported with its line and its field, and
nothing is stored. What is stored (``survey.definition``, and a copy on each run) is
:meth:`SurveyDefinition.to_json`; its :meth:`~SurveyDefinition.fingerprint` tells an
unchanged file (comments and key order do not count) from a changed one.

Audiences:

- ``executives``: the people named as a business partner's executive (``executive_email`` in
  the partners file, ``business_partner.executive_id``).
- ``contacts``: every requester who belongs to a business partner (``person.partner_id`` set,
  role ``requester``): the partner's people, not IT's.
- ``{partners: [Finance, Sales]}``: the people who belong to those partners (any role), and
  their executives.
- ``{people: [a@x.com, ...]}``: exactly those people.

Example::

    definition = parse_definition(Path("pulse.yaml").read_text(), source="pulse.yaml")
    definition.trigger("Europe/Madrid").get_next_fire_time(None, now)
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, cast
from zoneinfo import ZoneInfo

import yaml
from apscheduler.triggers.cron import CronTrigger

from storage.models import QuestionKind

NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
QUESTION_ID = re.compile(r"^[a-z][a-z0-9_-]*$")
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
CRON_FIELDS = ("year", "month", "day", "week", "day_of_week", "hour", "minute")
TOP_FIELDS = ("name", "title", "audience", "schedule", "window_days", "reminder_after_days", "anonymous",
              "min_group", "questions")
QUESTION_FIELDS = ("id", "type", "text", "options", "required")
MIN_GROUP = 3
MAX_QUESTIONS = 20
MAX_OPTIONS = 10
MAX_WINDOW_DAYS = 60
OPTION_LIMIT = 75  # a Slack button label
TEXT_LIMIT = 300
RATING = range(1, 6)
NPS = range(0, 11)
DEFAULT_FILE = "partner-pulse.yaml"

AudienceKind = Literal["executives", "contacts", "partners", "people"]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a definition file: where, which field, what."""

    line: int  # 1-based; 0 when the whole file is at fault
    field: str
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{where}{self.field}: {self.message}"


class DefinitionError(ValueError):
    """A definition file refused whole; ``problems`` says every reason, each with line and field."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.line, p.field))
        super().__init__("\n".join(str(p) for p in self.problems))


@dataclass(frozen=True, slots=True)
class Question:
    id: str
    kind: QuestionKind
    text: str
    options: tuple[str, ...] = ()
    required: bool = True

    @property
    def values(self) -> range | None:
        """The numbers a rating or an NPS question takes."""
        return RATING if self.kind == QuestionKind.RATING else NPS if self.kind == QuestionKind.NPS else None


@dataclass(frozen=True, slots=True)
class Audience:
    kind: AudienceKind
    names: tuple[str, ...] = ()  # partner names or emails

    def __str__(self) -> str:
        return self.kind if not self.names else f"{self.kind}: {', '.join(self.names)}"


@dataclass(frozen=True, slots=True)
class SurveyDefinition:
    """A survey as its file defines it (validated)."""

    name: str
    title: str
    audience: Audience
    schedule: tuple[tuple[str, str], ...]  # cron fields, in the recipient's time zone
    window_days: int
    reminder_after_days: int | None
    anonymous: bool
    min_group: int
    questions: tuple[Question, ...]
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, hash=False, repr=False)

    def question(self, question_id: str) -> Question | None:
        return next((q for q in self.questions if q.id == question_id), None)

    def trigger(self, tz: str) -> CronTrigger:
        """The schedule in one recipient's time zone."""
        return CronTrigger(**dict(self.schedule), timezone=ZoneInfo(tz))

    def schedule_text(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.schedule)

    def to_json(self) -> dict[str, Any]:
        kind, names = self.audience.kind, list(self.audience.names)
        audience: Any = {kind: names} if names else kind
        return {
            "name": self.name,
            "title": self.title,
            "audience": audience,
            "schedule": dict(self.schedule),
            "window_days": self.window_days,
            "reminder_after_days": self.reminder_after_days,
            "anonymous": self.anonymous,
            "min_group": self.min_group,
            "questions": [
                {"id": q.id, "type": q.kind.value, "text": q.text, "options": list(q.options), "required": q.required}
                for q in self.questions
            ],
        }

    def fingerprint(self) -> str:
        """A hash of what the definition means (not of comments, spacing or key order)."""
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SurveyDefinition:
        """A definition stored by :meth:`to_json` (it was validated when applied)."""
        raw = data["audience"]
        if isinstance(raw, str):
            audience = Audience(cast(AudienceKind, raw))
        else:
            ((kind, names),) = raw.items()
            audience = Audience(cast(AudienceKind, kind), tuple(names))
        return cls(
            name=data["name"],
            title=data["title"],
            audience=audience,
            schedule=tuple((k, str(v)) for k, v in data["schedule"].items()),
            window_days=int(data["window_days"]),
            reminder_after_days=data.get("reminder_after_days"),
            anonymous=bool(data["anonymous"]),
            min_group=int(data["min_group"]),
            questions=tuple(
                Question(q["id"], QuestionKind(q["type"]), q["text"], tuple(q.get("options") or ()),
                         bool(q.get("required", True)))
                for q in data["questions"]
            ),
        )


def default_definition_text() -> str:
    """The ``partner-pulse`` survey that ships with the bot (``brm-bot surveys apply --default``)."""
    return resources.files("conversations").joinpath("survey_files", DEFAULT_FILE).read_text(encoding="utf-8")


# --- reading a file -------------------------------------------------------------------------------


class _Reader:
    """Collects every problem of one file, with the line of the node at fault."""

    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.lines: dict[str, int] = {}
        self._loader = yaml.SafeLoader("")

    def fail(self, node: yaml.Node | None, name: str, message: str) -> None:
        self.problems.append(Problem(node.start_mark.line + 1 if node is not None else 0, name, message))

    def scalar(self, node: yaml.Node, name: str) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.fail(node, name, "expected a single value")
            return None
        return self._loader.construct_object(node)

    def text(self, node: yaml.Node, name: str, *, limit: int) -> str | None:
        value = self.scalar(node, name)
        if value is None:
            if isinstance(node, yaml.ScalarNode):
                self.fail(node, name, "must not be empty")
            return None
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            self.fail(node, name, "expected text")
            return None
        text = " ".join(str(value).split())
        if not text:
            self.fail(node, name, "must not be empty")
            return None
        if len(text) > limit:
            self.fail(node, name, f"is {len(text)} characters long; the limit is {limit}")
            return None
        return text

    def integer(self, node: yaml.Node, name: str, *, low: int, high: int) -> int | None:
        value = self.scalar(node, name)
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(node, name, f"expected a whole number from {low} to {high}")
            return None
        if not low <= value <= high:
            self.fail(node, name, f"{value} is out of range: use a whole number from {low} to {high}")
            return None
        return value

    def boolean(self, node: yaml.Node, name: str) -> bool | None:
        value = self.scalar(node, name)
        if not isinstance(value, bool):
            self.fail(node, name, "expected true or false")
            return None
        return value

    def mapping(self, node: yaml.Node, name: str, allowed: tuple[str, ...]) -> dict[str, tuple[yaml.Node, yaml.Node]]:
        """Key -> (key node, value node); unknown and repeated keys are problems."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, name, "expected fields (key: value)")
            return {}
        out: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            where = f"{name}.{key}" if name else str(key)
            if key not in allowed:
                self.fail(key_node, where, f"unknown field; the fields are {', '.join(allowed)}")
            elif key in out:
                self.fail(key_node, where, "appears twice")
            else:
                out[key] = (key_node, value_node)
        return out


def parse_definition(text: str, *, source: str = "the file") -> SurveyDefinition:
    """The definition in ``text`` (YAML), or :class:`DefinitionError` listing every problem."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise DefinitionError([Problem(line, "yaml", f"{source} is not valid YAML: {getattr(exc, 'problem', exc)}")])\
            from None
    if root is None:
        raise DefinitionError([Problem(0, "file", f"{source} is empty")])
    r = _Reader()
    fields = r.mapping(root, "", TOP_FIELDS)
    if not fields and not r.problems:
        r.fail(root, "file", "expected a survey definition")
    for required in ("name", "title", "audience", "schedule", "window_days", "questions"):
        if fields and required not in fields:
            r.fail(root, required, "is missing")
    for key, (key_node, _) in fields.items():
        r.lines[key] = key_node.start_mark.line + 1

    def value(key: str) -> yaml.Node | None:
        return fields[key][1] if key in fields else None

    name = None
    if (node := value("name")) is not None:
        name = r.text(node, "name", limit=60)
        if name is not None and not NAME.match(name):
            r.fail(node, "name", f"{name!r} is not a survey name: use lowercase letters, digits and dashes")
            name = None
    title = r.text(node, "title", limit=200) if (node := value("title")) is not None else None
    audience = _audience(r, node) if (node := value("audience")) is not None else None
    schedule = _schedule(r, node) if (node := value("schedule")) is not None else None
    window = None
    if (node := value("window_days")) is not None:
        window = r.integer(node, "window_days", low=1, high=MAX_WINDOW_DAYS)
    reminder = None
    if (node := value("reminder_after_days")) is not None and r.scalar(node, "reminder_after_days") is not None:
        reminder = r.integer(node, "reminder_after_days", low=1, high=MAX_WINDOW_DAYS)
        if reminder is not None and window is not None and reminder >= window:
            r.fail(node, "reminder_after_days", f"must be less than window_days ({window}): the reminder comes "
                   "while the survey is open")
    anonymous = r.boolean(node, "anonymous") if (node := value("anonymous")) is not None else True
    min_group: int | None = MIN_GROUP
    if (node := value("min_group")) is not None:
        raw = r.scalar(node, "min_group")
        if isinstance(raw, int) and not isinstance(raw, bool) and raw < MIN_GROUP:
            r.fail(node, "min_group", f"{raw} is too small: results show only from {MIN_GROUP} answers or more, "
                   "so no one can be picked out")
            min_group = None
        else:
            min_group = r.integer(node, "min_group", low=MIN_GROUP, high=1000)
    questions = _questions(r, node) if (node := value("questions")) is not None else None
    if r.problems:
        raise DefinitionError(r.problems)
    assert name and title and audience and schedule is not None and window and questions is not None
    assert anonymous is not None and min_group is not None
    return SurveyDefinition(name=name, title=title, audience=audience, schedule=schedule, window_days=window,
                            reminder_after_days=reminder, anonymous=anonymous, min_group=min_group,
                            questions=questions, lines=r.lines)


def _audience(r: _Reader, node: yaml.Node) -> Audience | None:
    if isinstance(node, yaml.ScalarNode):
        word = r.scalar(node, "audience")
        if word in ("executives", "contacts"):
            return Audience(word)
        r.fail(node, "audience", f"{word!r} is not an audience: use executives, contacts, {{partners: [...]}} or "
               "{people: [...]}")
        return None
    fields = r.mapping(node, "audience", ("partners", "people"))
    if len(fields) != 1:
        if fields:
            r.fail(node, "audience", "give either partners or people, not both")
        elif not r.problems or r.problems[-1].field != "audience":
            r.fail(node, "audience", "expected {partners: [...]} or {people: [...]}")
        return None
    ((kind, (_, items)),) = fields.items()
    where = f"audience.{kind}"
    if not isinstance(items, yaml.SequenceNode) or not items.value:
        r.fail(items, where, "expected a list with at least one entry")
        return None
    names: list[str] = []
    for item in items.value:
        text = r.text(item, where, limit=320 if kind == "people" else 120)
        if text is None:
            continue
        if kind == "people":
            text = text.lower()
            if not EMAIL.match(text):
                r.fail(item, where, f"{text!r} is not an email address")
                continue
        if text.casefold() in (n.casefold() for n in names):
            r.fail(item, where, f"{text!r} appears twice")
            continue
        names.append(text)
    return Audience(cast(AudienceKind, kind), tuple(names)) if len(names) == len(items.value) else None


def _schedule(r: _Reader, node: yaml.Node) -> tuple[tuple[str, str], ...] | None:
    fields = r.mapping(node, "schedule", CRON_FIELDS)
    if not fields:
        if isinstance(node, yaml.MappingNode):
            r.fail(node, "schedule", 'expected cron fields, like {day: "1st mon", hour: 10}')
        return None
    out: list[tuple[str, str]] = []
    for key in CRON_FIELDS:
        if key not in fields:
            continue
        raw = r.scalar(fields[key][1], f"schedule.{key}")
        if raw is None or isinstance(raw, bool) or not isinstance(raw, int | str):
            if raw is not None or isinstance(fields[key][1], yaml.ScalarNode):
                r.fail(fields[key][1], f"schedule.{key}", "expected a cron expression (a number or text)")
            continue
        try:
            CronTrigger(**{key: raw}, timezone="UTC")
        except ValueError as exc:
            r.fail(fields[key][1], f"schedule.{key}", f"{raw!r} is not a valid cron {key}: {exc}")
            continue
        out.append((key, str(raw)))
    if len(out) != len(fields):
        return None
    try:
        CronTrigger(**dict(out), timezone="UTC")
    except ValueError as exc:
        r.fail(node, "schedule", str(exc))
        return None
    if "hour" not in fields:
        r.fail(node, "schedule", "give an hour, so invitations come at a sensible local time")
        return None
    return tuple(out)


def _questions(r: _Reader, node: yaml.Node) -> tuple[Question, ...] | None:
    if not isinstance(node, yaml.SequenceNode) or not node.value:
        r.fail(node, "questions", "expected a list with at least one question")
        return None
    if len(node.value) > MAX_QUESTIONS:
        r.fail(node, "questions", f"{len(node.value)} questions is too many: at most {MAX_QUESTIONS}")
        return None
    out: list[Question] = []
    seen: set[str] = set()
    ok = True
    for n, item in enumerate(node.value, 1):
        where = f"questions[{n}]"
        fields = r.mapping(item, where, QUESTION_FIELDS)
        if not fields:
            ok = False
            continue
        for needed in ("id", "type", "text"):
            if needed not in fields:
                r.fail(item, f"{where}.{needed}", "is missing")
                ok = False
        qid = r.text(fields["id"][1], f"{where}.id", limit=40) if "id" in fields else None
        if qid is not None:
            if not QUESTION_ID.match(qid):
                r.fail(fields["id"][1], f"{where}.id", f"{qid!r}: use lowercase letters, digits, - and _, "
                       "starting with a letter")
                qid = None
            elif qid in seen:
                r.fail(fields["id"][1], f"{where}.id", f"{qid!r} is the id of an earlier question too")
                qid = None
            else:
                seen.add(qid)
        kind = None
        if "type" in fields:
            raw = r.scalar(fields["type"][1], f"{where}.type")
            if raw in tuple(k.value for k in QuestionKind):
                kind = QuestionKind(raw)
            else:
                r.fail(fields["type"][1], f"{where}.type", f"{raw!r} is not a question type: use rating (1-5), "
                       "choice, nps (0-10) or text")
        text = r.text(fields["text"][1], f"{where}.text", limit=TEXT_LIMIT) if "text" in fields else None
        options: tuple[str, ...] = ()
        if "options" in fields:
            if kind is not None and kind != QuestionKind.CHOICE:
                r.fail(fields["options"][0], f"{where}.options", f"only a choice question has options, not {kind}")
                ok = False
            else:
                options = _options(r, fields["options"][1], f"{where}.options") or ()
                ok = ok and bool(options)
        elif kind == QuestionKind.CHOICE:
            r.fail(item, f"{where}.options", "a choice question needs its options (at least two)")
            ok = False
        required = True
        if "required" in fields:
            given = r.boolean(fields["required"][1], f"{where}.required")
            ok = ok and given is not None
            required = bool(given) if given is not None else True
        if qid is None or kind is None or text is None:
            ok = False
            continue
        out.append(Question(qid, kind, text, options, required))
    return tuple(out) if ok else None


def _options(r: _Reader, node: yaml.Node, where: str) -> tuple[str, ...] | None:
    if not isinstance(node, yaml.SequenceNode) or not 2 <= len(node.value) <= MAX_OPTIONS:
        r.fail(node, where, f"expected a list of 2 to {MAX_OPTIONS} options")
        return None
    out: list[str] = []
    for item in node.value:
        text = r.text(item, where, limit=OPTION_LIMIT)
        if text is None:
            return None
        if text.casefold() in (o.casefold() for o in out):
            r.fail(item, where, f"{text!r} appears twice")
            return None
        if text.casefold() == "skip":
            r.fail(item, where, "'skip' is the word for passing an optional question; name the option otherwise")
            return None
        out.append(text)
    return tuple(out)
