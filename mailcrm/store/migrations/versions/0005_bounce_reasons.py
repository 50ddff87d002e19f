"""bounce reasons: delivery reports found by sync, the reason of each outbox attempt and
suppression, sender-side issues, and the key that signs unsubscribe tokens

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07 21:40:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailcrm.store.types
from mailcrm.store.types import IdType

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_attempt", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.String(length=32), nullable=True))
        batch_op.create_index("ix_outbox_attempt_reason", ["reason"], unique=False)
    with op.batch_alter_table("suppression", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bounce_reason", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("status", sa.String(length=32), nullable=True))
    op.create_table(
        "delivery_report",
        sa.Column("id", IdType, nullable=False),
        sa.Column("at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("address", sa.String(length=254), nullable=True),
        sa.Column("customer_id", IdType, nullable=True),
        sa.Column("message_pk", IdType, nullable=True),
        sa.Column("original_message_id", sa.String(length=998), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("diagnostic", sa.Text(), nullable=True),
        sa.Column("suppressed", sa.Boolean(), nullable=False),
        sa.Column("sender_side", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["message_pk"], ["message.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_delivery_report_customer_at", "delivery_report", ["customer_id", "at"], unique=False)
    op.create_index("ix_delivery_report_reason", "delivery_report", ["reason"], unique=False)
    op.create_index("ix_delivery_report_address", "delivery_report", ["address"], unique=False)
    op.create_index("ix_delivery_report_message_pk", "delivery_report", ["message_pk"], unique=False)
    op.create_index(
        "ix_delivery_report_original_message_id", "delivery_report", ["original_message_id"], unique=False
    )
    op.create_table(
        "sender_issue",
        sa.Column("id", IdType, nullable=False),
        sa.Column("sender_domain", sa.String(length=253), nullable=False),
        sa.Column("cause", sa.String(length=32), nullable=False),
        sa.Column("receiving_domain", sa.String(length=253), nullable=False),
        sa.Column("salesperson", sa.String(length=254), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_seen", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.Column("last_seen", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("sender_domain", "cause", "receiving_domain", name="uq_sender_issue"),
    )
    op.create_table(
        "signing_key",
        sa.Column("id", IdType, nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("secret", sa.String(length=128), nullable=False),
        sa.Column("created_at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("signing_key")
    op.drop_table("sender_issue")
    op.drop_index("ix_delivery_report_original_message_id", table_name="delivery_report")
    op.drop_index("ix_delivery_report_message_pk", table_name="delivery_report")
    op.drop_index("ix_delivery_report_address", table_name="delivery_report")
    op.drop_index("ix_delivery_report_reason", table_name="delivery_report")
    op.drop_index("ix_delivery_report_customer_at", table_name="delivery_report")
    op.drop_table("delivery_report")
    with op.batch_alter_table("suppression", schema=None) as batch_op:
        batch_op.drop_column("status")
        batch_op.drop_column("bounce_reason")
    with op.batch_alter_table("outbox_attempt", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_attempt_reason")
        batch_op.drop_column("reason")
