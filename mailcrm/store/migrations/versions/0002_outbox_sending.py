"""outbox sending state: retry deadline, attempt marker, ambiguous count, skip reason

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailcrm.store.types

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deadline_at", mailcrm.store.types.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column("attempt_started_at", mailcrm.store.types.UTCDateTime(), nullable=True))
        # Existing rows have had no ambiguous attempt: the default fills them.
        batch_op.add_column(
            sa.Column("ambiguous_attempts", sa.Integer(), nullable=False, server_default=sa.text("0"))
        )
        batch_op.add_column(sa.Column("skip_reason", sa.Text(), nullable=True))
        batch_op.create_index("ix_outbox_sender_sent", ["sender", "sent_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_sender_sent")
        batch_op.drop_column("skip_reason")
        batch_op.drop_column("ambiguous_attempts")
        batch_op.drop_column("attempt_started_at")
        batch_op.drop_column("deadline_at")
