"""users: logins for the web dashboard and the API, API tokens, the login throttle and
the audit log

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-08 01:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

import mailcrm.store.types
from mailcrm.store.types import IdType

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_user",
        sa.Column("id", IdType, nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("salesperson_id", IdType, nullable=True),
        sa.Column("password_hash", sa.String(length=255), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.Column("updated_at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.Column("password_changed_at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.Column("last_login_at", mailcrm.store.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["salesperson_id"], ["salesperson.id"], ondelete="RESTRICT"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("email"),
        sa.UniqueConstraint("salesperson_id"),
    )
    op.create_table(
        "api_token",
        sa.Column("id", IdType, nullable=False),
        sa.Column("user_id", IdType, nullable=False),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("digest", sa.String(length=64), nullable=False),
        sa.Column("scope", sa.String(length=8), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=True),
        sa.Column("created_at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.Column("expires_at", mailcrm.store.types.UTCDateTime(), nullable=True),
        sa.Column("last_used_at", mailcrm.store.types.UTCDateTime(), nullable=True),
        sa.Column("revoked_at", mailcrm.store.types.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["app_user.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("digest"),
        sa.UniqueConstraint("prefix"),
    )
    op.create_index("ix_api_token_user_id", "api_token", ["user_id"], unique=False)
    op.create_table(
        "login_throttle",
        sa.Column("id", IdType, nullable=False),
        sa.Column("counter", sa.String(length=16), nullable=False),
        sa.Column("key", sa.String(length=254), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("last_failure_at", mailcrm.store.types.UTCDateTime(), nullable=True),
        sa.Column("locked_until", mailcrm.store.types.UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("counter", "key", name="uq_login_throttle"),
    )
    op.create_index("ix_login_throttle_last_failure_at", "login_throttle", ["last_failure_at"], unique=False)
    op.create_table(
        "audit_log",
        sa.Column("id", IdType, nullable=False),
        sa.Column("at", mailcrm.store.types.UTCDateTime(), nullable=False),
        sa.Column("actor", sa.String(length=254), nullable=False),
        sa.Column("via", sa.String(length=8), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=254), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"], unique=False)
    op.create_index("ix_audit_log_target_at", "audit_log", ["target", "at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_log_target_at", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_login_throttle_last_failure_at", table_name="login_throttle")
    op.drop_table("login_throttle")
    op.drop_index("ix_api_token_user_id", table_name="api_token")
    op.drop_table("api_token")
    op.drop_table("app_user")
