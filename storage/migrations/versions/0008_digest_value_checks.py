"""the weekly digest and value realization: value checks; indexes for the digest's figures

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "value_check",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("requester_id", sa.Integer(), nullable=False),
        sa.Column("asked_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("reminded_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("answer", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=True),
        sa.Column("answered_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("comment", sqlmodel.sql.sqltypes.AutoString(length=1000), nullable=True),
        sa.ForeignKeyConstraint(["request_id"], ["demand_request.id"]),
        sa.ForeignKeyConstraint(["requester_id"], ["person.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("request_id", name="uq_value_check_request"),
    )
    with op.batch_alter_table("value_check", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_value_check_requester_id"), ["requester_id"], unique=False)
    with op.batch_alter_table("demand_request", schema=None) as batch_op:
        batch_op.create_index("ix_demand_request_created_at", ["created_at"], unique=False)
        batch_op.create_index("ix_demand_request_status_updated", ["status", "updated_at", "id"], unique=False)
        batch_op.create_index("ix_demand_request_partner_status", ["partner_id", "status", "updated_at"],
                              unique=False)
    with op.batch_alter_table("status_change", schema=None) as batch_op:
        batch_op.create_index("ix_status_change_at", ["at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("status_change", schema=None) as batch_op:
        batch_op.drop_index("ix_status_change_at")
    with op.batch_alter_table("demand_request", schema=None) as batch_op:
        batch_op.drop_index("ix_demand_request_partner_status")
        batch_op.drop_index("ix_demand_request_status_updated")
        batch_op.drop_index("ix_demand_request_created_at")
    with op.batch_alter_table("value_check", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_value_check_requester_id"))
    op.drop_table("value_check")
