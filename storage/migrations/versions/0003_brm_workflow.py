"""the BRM workflow: partner executives, duplicate links, notes and watchers on requests

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import storage.types

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("business_partner", schema=None) as batch_op:
        batch_op.add_column(sa.Column("executive_id", sa.Integer(), nullable=True))
    with op.batch_alter_table("demand_request", schema=None) as batch_op:
        batch_op.add_column(sa.Column("duplicate_of_id", sa.Integer(), nullable=True))
    op.create_table(
        "request_note",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("by_person_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["by_person_id"], ["person.id"]),
        sa.ForeignKeyConstraint(["request_id"], ["demand_request.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("request_note", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_request_note_request_id"), ["request_id"], unique=False)
    op.create_table(
        "request_watcher",
        sa.Column("request_id", sa.Integer(), nullable=False),
        sa.Column("person_id", sa.Integer(), nullable=False),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["person_id"], ["person.id"]),
        sa.ForeignKeyConstraint(["request_id"], ["demand_request.id"]),
        sa.PrimaryKeyConstraint("request_id", "person_id"),
    )


def downgrade() -> None:
    op.drop_table("request_watcher")
    with op.batch_alter_table("request_note", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_request_note_request_id"))
    op.drop_table("request_note")
    # Plain ALTER TABLE … DROP COLUMN (SQLite 3.35+): a batch copy of these tables would drop a table
    # that other tables' rows refer to.
    op.drop_column("demand_request", "duplicate_of_id")
    op.drop_column("business_partner", "executive_id")
