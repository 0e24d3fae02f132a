"""outbox messages to a channel: the BRM team's channel (BRM_BOT_BRM_CHANNEL)

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.types

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_text = sqlmodel.sql.sqltypes.AutoString


def _outbox(*, channel: bool) -> sa.Table:
    """The outbox table as it is before this step (upgrade) or after it (downgrade).

    SQLite changes a column's nullability by copying the table; given the table, the copy needs
    no live database, so ``brm-bot db upgrade --sql`` can print the script too.
    """
    columns = [
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", _text(length=40), nullable=False),
        sa.Column("subject", _text(length=120), nullable=False),
        sa.Column("period", _text(length=40), nullable=False),
        sa.Column("recipient_id", sa.Integer(), nullable=channel),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", _text(length=500), nullable=True),
        sa.Column("created_at", storage.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", storage.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("platform_message_id", _text(length=200), nullable=True),
        sa.Column("lease_token", _text(length=40), nullable=True),
        sa.Column("priority", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("held_reason", _text(length=200), nullable=True),
    ]
    constraints: list[sa.SchemaItem] = [
        sa.ForeignKeyConstraint(["recipient_id"], ["person.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("kind", "subject", "period", "recipient_id", name="uq_outbox_message"),
        sa.Index("ix_outbox_due", "status", "next_attempt_at"),
    ]
    if channel:
        columns.append(sa.Column("channel", _text(length=250), nullable=True))
        constraints.append(
            sa.UniqueConstraint("kind", "subject", "period", "channel", name="uq_outbox_channel_message")
        )
    return sa.Table("outbox", sa.MetaData(), *columns, *constraints)


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None, copy_from=_outbox(channel=False)) as batch_op:
        batch_op.add_column(sa.Column("channel", _text(length=250), nullable=True))
        batch_op.alter_column("recipient_id", existing_type=sa.Integer(), nullable=True)
        batch_op.create_unique_constraint("uq_outbox_channel_message", ["kind", "subject", "period", "channel"])


def downgrade() -> None:
    outbox = sa.table("outbox", sa.column("recipient_id"))
    op.execute(outbox.delete().where(outbox.c.recipient_id.is_(None)))  # channel messages cannot stay
    with op.batch_alter_table("outbox", schema=None, copy_from=_outbox(channel=True)) as batch_op:
        batch_op.drop_constraint("uq_outbox_channel_message", type_="unique")
        batch_op.alter_column("recipient_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("channel")
