"""SQLModel tables.

Every time is stored timezone-aware in UTC (:class:`UTCDateTime`). Enumerations are stored
as short strings, so adding a value never needs a database enum migration.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from storage.types import UTCDateTime


def utcnow() -> datetime:
    return datetime.now(UTC)


class Role(StrEnum):
    REQUESTER = "requester"
    BRM = "brm"
    LEADER = "leader"
    ADMIN = "admin"


class Maturity(StrEnum):
    AD_HOC = "ad hoc"
    ORDER_TAKER = "order taker"
    TRUSTED_ADVISOR = "trusted advisor"
    STRATEGIC_PARTNER = "strategic partner"


class Category(StrEnum):
    IDEA = "idea"
    PROJECT = "project"
    ENHANCEMENT = "enhancement"
    SERVICE_REQUEST = "service request"
    PROBLEM = "problem"


class Urgency(StrEnum):
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"


class Status(StrEnum):
    SUBMITTED = "submitted"
    TRIAGED = "triaged"
    SHAPING = "shaping"
    APPROVED = "approved"
    DEFERRED = "deferred"
    REJECTED = "rejected"
    IN_DELIVERY = "in delivery"
    DELIVERED = "delivered"
    VALUE_REALIZED = "value realized"


OPEN_STATUSES: frozenset[Status] = frozenset(
    {Status.SUBMITTED, Status.TRIAGED, Status.SHAPING, Status.APPROVED, Status.DEFERRED, Status.IN_DELIVERY}
)


def _enum(name: str, length: int = 20) -> Any:
    return sa.Column(name, sa.String(length), nullable=False)


class BusinessPartner(SQLModel, table=True):
    """A business unit or function the provider organisation serves."""

    __tablename__ = "business_partner"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(120), nullable=False, unique=True))
    executive: str | None = Field(default=None, max_length=120)
    maturity: str = Field(default=Maturity.AD_HOC, sa_column=_enum("maturity"))
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    executive_id: int | None = None  # the person of the partners file's executive_email


class Person(SQLModel, table=True):
    __tablename__ = "person"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=200)
    email: str | None = Field(default=None, sa_column=sa.Column(sa.String(320), unique=True))
    role: str = Field(default=Role.REQUESTER, sa_column=_enum("role"))
    time_zone: str = Field(default="UTC", max_length=64)
    partner_id: int | None = Field(default=None, foreign_key="business_partner.id", index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Identity(SQLModel, table=True):
    """A person's account on one platform: one person can be on Slack and on Teams."""

    __tablename__ = "identity"
    __table_args__ = (sa.UniqueConstraint("platform", "workspace", "user_id", name="uq_identity_platform_user"),)
    id: int | None = Field(default=None, primary_key=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    platform: str = Field(max_length=16)
    workspace: str = Field(max_length=64)
    user_id: str = Field(max_length=128)
    directory_id: str | None = Field(default=None, max_length=64, index=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    # Set when the platform said the bot can no longer reach them (uninstalled, token revoked).
    unreachable_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Relationship(SQLModel, table=True):
    """A BRM's relationship with a business partner; the primary one owns the partner's demand."""

    __tablename__ = "relationship"
    __table_args__ = (
        sa.UniqueConstraint("partner_id", "brm_id", name="uq_relationship_partner_brm"),
        sa.Index(
            "uq_relationship_one_primary",
            "partner_id",
            unique=True,
            sqlite_where=sa.text("is_primary"),
            postgresql_where=sa.text("is_primary"),
        ),
    )
    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="business_partner.id")
    brm_id: int = Field(foreign_key="person.id", index=True)
    is_primary: bool = True
    cadence_days: int = 14
    last_touchpoint_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class DemandRequest(SQLModel, table=True):
    """A demand request. Its human key is ``DR-<id>``."""

    __tablename__ = "demand_request"
    __table_args__ = (
        # the digest's figures: demand of a week, time in a status (issue 14)
        sa.Index("ix_demand_request_created_at", "created_at"),
        sa.Index("ix_demand_request_status_updated", "status", "updated_at", "id"),
        sa.Index("ix_demand_request_partner_status", "partner_id", "status", "updated_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    title: str = Field(max_length=200)
    description: str | None = Field(default=None, sa_type=sa.Text)
    outcome: str = Field(sa_type=sa.Text)
    category: str = Field(sa_column=_enum("category"))
    urgency: str = Field(sa_column=_enum("urgency"))
    desired_date: date | None = None
    requester_id: int = Field(foreign_key="person.id", index=True)
    partner_id: int | None = Field(default=None, foreign_key="business_partner.id", index=True)
    brm_id: int | None = Field(default=None, foreign_key="person.id", index=True)
    status: str = Field(default=Status.SUBMITTED, sa_column=_enum("status"))
    source_platform: str = Field(max_length=16)
    source_channel: str | None = Field(default=None, max_length=128)
    source_link: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    duplicate_of_id: int | None = None  # set by "link DR-14 to DR-1"

    @property
    def key(self) -> str:
        return f"DR-{self.id}"


class StatusChange(SQLModel, table=True):
    __tablename__ = "status_change"
    __table_args__ = (sa.Index("ix_status_change_at", "at"),)  # the digest's week-on-week pipeline
    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="demand_request.id", index=True)
    by_person_id: int | None = Field(default=None, foreign_key="person.id")
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    from_status: str | None = Field(default=None, max_length=20)
    to_status: str = Field(max_length=20)
    note: str | None = Field(default=None, sa_type=sa.Text)


class ConversationState(SQLModel, table=True):
    """The active flow of one conversation. ``version`` guards concurrent turns."""

    __tablename__ = "conversation_state"
    platform: str = Field(primary_key=True, max_length=16)
    workspace: str = Field(primary_key=True, max_length=64)
    channel: str = Field(primary_key=True, max_length=128)
    user_id: str = Field(primary_key=True, max_length=128)
    thread: str = Field(default="", primary_key=True, max_length=64)
    flow: str | None = Field(default=None, max_length=32)
    step: str | None = Field(default=None, max_length=32)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    version: int = 0
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    schema_version: int = Field(default=1, sa_column=sa.Column(sa.Integer, nullable=False, server_default="1"))


class ProcessedEvent(SQLModel, table=True):
    """One row per inbound event id: a platform retry of the same event is not run twice."""

    __tablename__ = "processed_event"
    platform: str = Field(primary_key=True, max_length=16)
    event_id: str = Field(primary_key=True, max_length=200)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime, index=True)


class OutboxStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"  # claimed by a worker until next_attempt_at; then due again
    SENT = "sent"
    FAILED = "failed"
    UNREACHABLE = "unreachable"
    HELD = "held"  # over the recipient's weekly budget; due again at ``next_attempt_at``


class OutboxMessage(SQLModel, table=True):
    """A message the bot starts. Unique per (kind, subject, period, recipient).

    The recipient is a person (``recipient_id``) or a channel (``channel``, such as
    ``slack:C0123ABCD`` for the BRM team's channel): exactly one of the two is set.
    """

    __tablename__ = "outbox"
    __table_args__ = (
        sa.UniqueConstraint("kind", "subject", "period", "recipient_id", name="uq_outbox_message"),
        sa.UniqueConstraint("kind", "subject", "period", "channel", name="uq_outbox_channel_message"),
        sa.Index("ix_outbox_due", "status", "next_attempt_at"),
    )
    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=40)
    subject: str = Field(max_length=120)
    period: str = Field(default="", max_length=40)
    recipient_id: int | None = Field(default=None, foreign_key="person.id", nullable=True)
    channel: str | None = Field(default=None, max_length=250)
    payload: dict[str, Any] = Field(sa_type=sa.JSON)
    status: str = Field(default=OutboxStatus.PENDING, sa_column=_enum("status"))
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    last_error: str | None = Field(default=None, max_length=500)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    platform_message_id: str | None = Field(default=None, max_length=200)
    lease_token: str | None = Field(default=None, max_length=40)
    priority: int = Field(default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0"))
    held_reason: str | None = Field(default=None, max_length=200)


class ConversationReference(SQLModel, table=True):
    """What a platform needs to message a person or a channel later (proactive messages).

    Teams needs the full conversation reference (service URL, tenant, conversation id) that
    only an inbound activity or an install event provides. ``reference`` is that JSON.
    """

    __tablename__ = "conversation_reference"
    __table_args__ = (
        sa.UniqueConstraint("platform", "workspace", "scope", "target", name="uq_conversation_reference"),
    )
    id: int | None = Field(default=None, primary_key=True)
    platform: str = Field(max_length=16)
    workspace: str = Field(max_length=64)
    scope: str = Field(max_length=16)  # "user" or "channel"
    target: str = Field(max_length=200)  # platform user id or channel/conversation id
    reference: dict[str, Any] = Field(sa_type=sa.JSON)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# --- the bot speaks first: scheduled jobs, touchpoints, snoozes ---------------------------------


class OutboxHold(StrEnum):
    """Why a message waits (``outbox.held_reason`` starts with one of these)."""

    HOURS = "outside delivery hours"
    BUDGET = "weekly budget reached"


class JobRun(SQLModel, table=True):
    """One run of a scheduled job for one period, claimed before any work: each period runs once.

    ``lease_token`` and ``lease_until`` say who runs it; a run whose lease ran out without
    ``finished_at`` died half-way and is taken over (its work is idempotent by outbox keys).
    """

    __tablename__ = "job_run"
    __table_args__ = (sa.UniqueConstraint("job", "period", name="uq_job_run_period"),)
    id: int | None = Field(default=None, primary_key=True)
    job: str = Field(max_length=40)
    period: str = Field(max_length=80)
    lease_token: str = Field(max_length=40)
    lease_until: datetime = Field(sa_type=UTCDateTime)
    attempts: int = 1
    started_at: datetime = Field(sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    enqueued: int = 0
    forced: bool = False


class TouchpointKind(StrEnum):
    MEETING = "meeting"
    CALL = "call"
    WORKSHOP = "workshop"
    REVIEW = "review"
    INFORMAL = "informal"


class Touchpoint(SQLModel, table=True):
    """A BRM's contact with a business partner."""

    __tablename__ = "touchpoint"
    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="business_partner.id", index=True)
    brm_id: int = Field(foreign_key="person.id", index=True)
    kind: str = Field(sa_column=_enum("kind"))
    happened_on: date
    note: str | None = Field(default=None, max_length=1000)
    link: str | None = Field(default=None, max_length=1000)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class MaturityChange(SQLModel, table=True):
    """A partner's maturity stage set by someone, when."""

    __tablename__ = "maturity_change"
    id: int | None = Field(default=None, primary_key=True)
    partner_id: int = Field(foreign_key="business_partner.id", index=True)
    by_person_id: int = Field(foreign_key="person.id")
    from_stage: str = Field(max_length=20)
    to_stage: str = Field(max_length=20)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class Snooze(SQLModel, table=True):
    """A nudge item silenced by its BRM until ``until`` (leaders still see it)."""

    __tablename__ = "snooze"
    id: int | None = Field(default=None, primary_key=True)
    brm_id: int = Field(foreign_key="person.id", index=True)
    item: str = Field(max_length=60)  # "partner:3" or "request:17"
    until: datetime = Field(sa_type=UTCDateTime)
    reason: str | None = Field(default=None, max_length=300)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# --- the BRM workflow: notes on requests, watchers (issue 11) ------------------------------------


class NoteKind(StrEnum):
    QUESTION = "question"  # a BRM asks the requester
    ANSWER = "answer"  # the requester answers
    COMMENT = "comment"  # anyone who may see the request


class RequestNote(SQLModel, table=True):
    """A question, an answer or a comment kept on a request."""

    __tablename__ = "request_note"
    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="demand_request.id", index=True)
    by_person_id: int = Field(foreign_key="person.id")
    kind: str = Field(sa_column=_enum("kind", 16))
    text: str = Field(sa_type=sa.Text)
    at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class RequestWatcher(SQLModel, table=True):
    """A person told about a request's changes besides its requester (``follow DR-1``)."""

    __tablename__ = "request_watcher"
    request_id: int = Field(foreign_key="demand_request.id", primary_key=True)
    person_id: int = Field(foreign_key="person.id", primary_key=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# --- pulse surveys (issue 13) ---------------------------------------------------------------------


class QuestionKind(StrEnum):
    RATING = "rating"  # 1-5
    CHOICE = "choice"  # one of the question's options
    NPS = "nps"  # 0-10
    TEXT = "text"  # a free answer


class Survey(SQLModel, table=True):
    """A survey definition as applied from its YAML file (``brm-bot surveys apply``).

    ``definition`` is the validated file as JSON; ``fingerprint`` its hash, so re-applying an
    unchanged file changes nothing. A run copies the definition it was started with, so a
    changed file changes future runs only.
    """

    __tablename__ = "survey"
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(sa_column=sa.Column(sa.String(60), nullable=False, unique=True))
    title: str = Field(max_length=200)
    definition: dict[str, Any] = Field(sa_type=sa.JSON)
    fingerprint: str = Field(max_length=64)
    active: bool = True
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


class SurveyRun(SQLModel, table=True):
    """One scheduled run of a survey: invitations in ``period``, open until ``closes_at``."""

    __tablename__ = "survey_run"
    __table_args__ = (sa.UniqueConstraint("survey_id", "period", name="uq_survey_run_period"),)
    id: int | None = Field(default=None, primary_key=True)
    survey_id: int = Field(foreign_key="survey.id", index=True)
    period: str = Field(max_length=40)
    definition: dict[str, Any] = Field(sa_type=sa.JSON)  # the definition this run was started with
    opens_at: datetime = Field(sa_type=UTCDateTime)
    closes_at: datetime = Field(sa_type=UTCDateTime)
    closed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # respondents forgotten then


class SurveyInvitation(SQLModel, table=True):
    """Who was invited to a run (for response rates, reminders and "you said, we did")."""

    __tablename__ = "survey_invitation"
    __table_args__ = (sa.UniqueConstraint("run_id", "person_id", name="uq_survey_invitation"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="survey_run.id", index=True)
    person_id: int = Field(foreign_key="person.id", index=True)
    partner_id: int | None = Field(default=None, foreign_key="business_partner.id", index=True)
    invited_at: datetime = Field(sa_type=UTCDateTime)
    reminded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SurveyRespondent(SQLModel, table=True):
    """Who has answered a run, kept apart from the answers: it stops reminders and lets a person
    continue or replace an answer within the window. Deleted when the run closes."""

    __tablename__ = "survey_respondent"
    run_id: int = Field(foreign_key="survey_run.id", primary_key=True)
    person_id: int = Field(foreign_key="person.id", primary_key=True)
    response_id: str = Field(max_length=40)
    answered_at: datetime = Field(sa_type=UTCDateTime)


class SurveyAnswer(SQLModel, table=True):
    """One answer to one question. Anonymous runs store no ``person_id``, only the partner and
    the run; ``response_id`` groups one person's answers of one run without naming them."""

    __tablename__ = "survey_answer"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "response_id", "question_id", name="uq_survey_answer"),
        sa.Index("ix_survey_answer_run_question", "run_id", "question_id", "partner_id"),
    )
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="survey_run.id")
    partner_id: int | None = Field(default=None, foreign_key="business_partner.id")
    question_id: str = Field(max_length=40)
    kind: str = Field(sa_column=_enum("kind", 10))
    response_id: str = Field(max_length=40)
    person_id: int | None = Field(default=None, foreign_key="person.id")  # never set when anonymous
    value: int | None = None  # rating 1-5, NPS 0-10
    choice: str | None = Field(default=None, max_length=120)
    text: str | None = Field(default=None, sa_type=sa.Text)


class SurveyFollowUp(SQLModel, table=True):
    """"You said, we did": a BRM's follow-up to one partner after a run closed, sent once."""

    __tablename__ = "survey_follow_up"
    __table_args__ = (sa.UniqueConstraint("run_id", "partner_id", name="uq_survey_follow_up"),)
    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="survey_run.id", index=True)
    partner_id: int = Field(foreign_key="business_partner.id")
    by_person_id: int = Field(foreign_key="person.id")
    text: str = Field(sa_type=sa.Text)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTCDateTime)


# --- value realization (issue 14) -----------------------------------------------------------------


class ValueAnswer(StrEnum):
    YES = "yes"
    PARTLY = "partly"
    NO = "no"


class ValueCheck(SQLModel, table=True):
    """The question to a requester whether a delivered request brought its business outcome.

    One row per request (unique): a replica or a retry of the ``value-checks`` job finds it
    there and asks nothing twice. ``reminded_at`` is the one reminder; ``answer`` yes moves the
    request to value realized, partly or no notifies its BRM.
    """

    __tablename__ = "value_check"
    __table_args__ = (sa.UniqueConstraint("request_id", name="uq_value_check_request"),)
    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="demand_request.id")
    requester_id: int = Field(foreign_key="person.id", index=True)
    asked_at: datetime = Field(sa_type=UTCDateTime)
    reminded_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    answer: str | None = Field(default=None, max_length=10)
    answered_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    comment: str | None = Field(default=None, max_length=1000)
