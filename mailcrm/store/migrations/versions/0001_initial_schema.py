"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 09:20:07.922862
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailcrm.store.types

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "company",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("created_at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "folder_cursor",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("mailbox", sa.String(length=254), nullable=False),
        sa.Column("folder", sa.String(length=255), nullable=False),
        sa.Column("uidvalidity", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("last_uid", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("highestmodseq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("messages", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("last_sync_at", mailcrm.store.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("mailbox", "folder", name="uq_folder_cursor"),
    )
    op.create_table(
        "message",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("thread_key", sa.String(length=998), nullable=True),
        sa.Column("direction", sa.String(length=3), nullable=False),
        sa.Column("mailbox", sa.String(length=254), nullable=True),
        sa.Column("folder", sa.String(length=255), nullable=True),
        sa.Column("uid", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("from_address", sa.String(length=254), nullable=True),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("sent_at", mailcrm.store.types.UTCDateTime(), nullable=True),
        sa.Column("snippet", sa.Text(), nullable=True),
        sa.Column("is_auto_reply", sa.Boolean(), nullable=False),
        sa.Column("is_bounce", sa.Boolean(), nullable=False),
        sa.Column("is_malformed", sa.Boolean(), nullable=False),
        sa.Column("created_at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id"),
    )
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_message_thread_key"), ["thread_key"], unique=False)

    op.create_table(
        "salesperson",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("language", sa.String(length=35), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("created_at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
    )
    op.create_table(
        "suppression",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("address", sa.String(length=254), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("created_at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("address"),
    )
    op.create_table(
        "company_domain",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("company_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("domain", sa.String(length=253), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["company.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("domain"),
    )
    with op.batch_alter_table("company_domain", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_company_domain_company_id"), ["company_id"], unique=False)

    op.create_table(
        "customer",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("company_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("birthday", sa.Date(), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=True),
        sa.Column("language", sa.String(length=35), nullable=True),
        sa.Column("owner_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("lead_source", sa.String(length=100), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("custom", sa.JSON(), nullable=False),
        sa.Column("created_at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["company_id"], ["company.id"], ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["owner_id"], ["salesperson.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customer_company_id"), ["company_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_customer_lead_source"), ["lead_source"], unique=False)
        batch_op.create_index(batch_op.f("ix_customer_name"), ["name"], unique=False)
        batch_op.create_index("ix_customer_owner_status", ["owner_id", "status"], unique=False)

    op.create_table(
        "customer_tag",
        sa.Column("customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("tag", sa.String(length=63), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("customer_id", "tag"),
    )
    with op.batch_alter_table("customer_tag", schema=None) as batch_op:
        batch_op.create_index("ix_customer_tag_tag", ["tag"], unique=False)

    op.create_table(
        "email_address",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("address", sa.String(length=254), nullable=False),
        sa.Column("is_primary", sa.Boolean(), nullable=False),
        sa.Column("created_at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("address"),
    )
    with op.batch_alter_table("email_address", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_email_address_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "message_link",
        sa.Column("message_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("role", sa.String(length=4), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["message_pk"], ["message.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("message_pk", "customer_id", "role"),
    )
    with op.batch_alter_table("message_link", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_message_link_customer_id"), ["customer_id"], unique=False)

    op.create_table(
        "note",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("author", sa.String(length=254), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("created_at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("note", schema=None) as batch_op:
        batch_op.create_index("ix_note_customer_when", ["customer_id", "created_at"], unique=False)

    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("rule", sa.String(length=200), nullable=False),
        sa.Column("customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("occurrence", sa.String(length=100), nullable=False),
        sa.Column("template", sa.String(length=200), nullable=False),
        sa.Column("sender", sa.String(length=254), nullable=True),
        sa.Column("due_at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("message_id", sa.String(length=998), nullable=False),
        sa.Column("in_reply_to", sa.String(length=998), nullable=True),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("claimed_until", mailcrm.store.types.UTCDateTime(), nullable=True),
        sa.Column("sent_at", mailcrm.store.types.UTCDateTime(), nullable=True),
        sa.Column("created_at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("message_id"),
        sa.UniqueConstraint("rule", "customer_id", "occurrence", name="uq_outbox_occurrence"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_outbox_customer_id"), ["customer_id"], unique=False)
        batch_op.create_index("ix_outbox_state_due", ["state", "due_at"], unique=False)

    op.create_table(
        "purchase",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("purchased_at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.Column("product", sa.String(length=200), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("order_ref", sa.String(length=100), nullable=True),
        sa.Column("dedupe_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("customer_id", "dedupe_key", name="uq_purchase_customer_dedupe"),
    )
    with op.batch_alter_table("purchase", schema=None) as batch_op:
        batch_op.create_index("ix_purchase_customer_when", ["customer_id", "purchased_at"], unique=False)
        batch_op.create_index("ix_purchase_product", ["product"], unique=False)

    op.create_table(
        "timeline_event",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("customer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.Column("message_pk", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customer.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["message_pk"], ["message.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("timeline_event", schema=None) as batch_op:
        batch_op.create_index("ix_timeline_customer_at", ["customer_id", "at"], unique=False)
        batch_op.create_index(batch_op.f("ix_timeline_event_message_pk"), ["message_pk"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("timeline_event", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_timeline_event_message_pk"))
        batch_op.drop_index("ix_timeline_customer_at")

    op.drop_table("timeline_event")
    with op.batch_alter_table("purchase", schema=None) as batch_op:
        batch_op.drop_index("ix_purchase_product")
        batch_op.drop_index("ix_purchase_customer_when")

    op.drop_table("purchase")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_state_due")
        batch_op.drop_index(batch_op.f("ix_outbox_customer_id"))

    op.drop_table("outbox")
    with op.batch_alter_table("note", schema=None) as batch_op:
        batch_op.drop_index("ix_note_customer_when")

    op.drop_table("note")
    with op.batch_alter_table("message_link", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_link_customer_id"))

    op.drop_table("message_link")
    with op.batch_alter_table("email_address", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_email_address_customer_id"))

    op.drop_table("email_address")
    with op.batch_alter_table("customer_tag", schema=None) as batch_op:
        batch_op.drop_index("ix_customer_tag_tag")

    op.drop_table("customer_tag")
    with op.batch_alter_table("customer", schema=None) as batch_op:
        batch_op.drop_index("ix_customer_owner_status")
        batch_op.drop_index(batch_op.f("ix_customer_name"))
        batch_op.drop_index(batch_op.f("ix_customer_lead_source"))
        batch_op.drop_index(batch_op.f("ix_customer_company_id"))

    op.drop_table("customer")
    with op.batch_alter_table("company_domain", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_company_domain_company_id"))

    op.drop_table("company_domain")
    op.drop_table("suppression")
    op.drop_table("salesperson")
    with op.batch_alter_table("message", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_message_thread_key"))

    op.drop_table("message")
    op.drop_table("folder_cursor")
    op.drop_table("company")
