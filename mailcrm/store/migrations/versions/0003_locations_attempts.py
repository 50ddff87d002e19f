"""message locations with IMAP flags (CONDSTORE), per-attempt outbox history

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 12:30:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailcrm.store.types
from mailcrm.store.types import IdType

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "message_location",
        sa.Column("id", IdType, nullable=False),
        sa.Column("message_pk", IdType, nullable=False),
        sa.Column("mailbox", sa.String(length=254), nullable=False),
        sa.Column("folder", sa.String(length=255), nullable=False),
        sa.Column("uidvalidity", IdType, nullable=True),
        sa.Column("uid", IdType, nullable=False),
        sa.Column("flags", sa.String(length=1000), nullable=False),
        sa.Column("modseq", IdType, nullable=True),
        sa.Column("expunged_at", mailcrm.store.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["message_pk"], ["message.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mailbox", "folder", "uidvalidity", "uid", name="uq_message_location"),
    )
    op.create_index("ix_message_location_message_pk", "message_location", ["message_pk"], unique=False)
    # Messages synced before this revision keep the one location they were first seen at.
    op.execute(
        "INSERT INTO message_location (message_pk, mailbox, folder, uidvalidity, uid, flags) "
        "SELECT id, mailbox, folder, NULL, uid, '' FROM message "
        "WHERE mailbox IS NOT NULL AND folder IS NOT NULL AND uid IS NOT NULL"
    )
    op.create_table(
        "outbox_attempt",
        sa.Column("id", IdType, nullable=False),
        sa.Column("outbox_id", IdType, nullable=False),
        sa.Column("at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.Column("outcome", sa.String(length=20), nullable=False),
        sa.Column("code", sa.Integer(), nullable=True),
        sa.Column("reply", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["outbox_id"], ["outbox.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_outbox_attempt_outbox_id", "outbox_attempt", ["outbox_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_outbox_attempt_outbox_id", table_name="outbox_attempt")
    op.drop_table("outbox_attempt")
    op.drop_index("ix_message_location_message_pk", table_name="message_location")
    op.drop_table("message_location")
