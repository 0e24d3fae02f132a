"""scheduled job runs, touchpoints, maturity changes, snoozes; outbox lease tokens, priority, holds

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_when = storage.types.UTCDateTime(timezone=True)
_text = sqlmodel.sql.sqltypes.AutoString


def upgrade() -> None:
    op.create_table(
        "job_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job", _text(length=40), nullable=False),
        sa.Column("period", _text(length=80), nullable=False),
        sa.Column("lease_token", _text(length=40), nullable=False),
        sa.Column("lease_until", _when, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("started_at", _when, nullable=False),
        sa.Column("finished_at", _when, nullable=True),
        sa.Column("enqueued", sa.Integer(), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("job", "period", name="uq_job_run_period"),
    )
    op.create_table(
        "touchpoint",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("brm_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("happened_on", sa.Date(), nullable=False),
        sa.Column("note", _text(length=1000), nullable=True),
        sa.Column("link", _text(length=1000), nullable=True),
        sa.Column("created_at", _when, nullable=False),
        sa.ForeignKeyConstraint(["brm_id"], ["person.id"]),
        sa.ForeignKeyConstraint(["partner_id"], ["business_partner.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("touchpoint", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_touchpoint_brm_id"), ["brm_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_touchpoint_partner_id"), ["partner_id"], unique=False)
    op.create_table(
        "maturity_change",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("partner_id", sa.Integer(), nullable=False),
        sa.Column("by_person_id", sa.Integer(), nullable=False),
        sa.Column("from_stage", _text(length=20), nullable=False),
        sa.Column("to_stage", _text(length=20), nullable=False),
        sa.Column("at", _when, nullable=False),
        sa.ForeignKeyConstraint(["by_person_id"], ["person.id"]),
        sa.ForeignKeyConstraint(["partner_id"], ["business_partner.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("maturity_change", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_maturity_change_partner_id"), ["partner_id"], unique=False)
    op.create_table(
        "snooze",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("brm_id", sa.Integer(), nullable=False),
        sa.Column("item", _text(length=60), nullable=False),
        sa.Column("until", _when, nullable=False),
        sa.Column("reason", _text(length=300), nullable=True),
        sa.Column("created_at", _when, nullable=False),
        sa.ForeignKeyConstraint(["brm_id"], ["person.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("snooze", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_snooze_brm_id"), ["brm_id"], unique=False)
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lease_token", _text(length=40), nullable=True))
        batch_op.add_column(sa.Column("priority", sa.Integer(), nullable=False, server_default="0"))
        batch_op.add_column(sa.Column("held_reason", _text(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("held_reason")
        batch_op.drop_column("priority")
        batch_op.drop_column("lease_token")
    with op.batch_alter_table("snooze", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_snooze_brm_id"))
    op.drop_table("snooze")
    with op.batch_alter_table("maturity_change", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_maturity_change_partner_id"))
    op.drop_table("maturity_change")
    with op.batch_alter_table("touchpoint", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_touchpoint_partner_id"))
        batch_op.drop_index(batch_op.f("ix_touchpoint_brm_id"))
    op.drop_table("touchpoint")
    op.drop_table("job_run")
