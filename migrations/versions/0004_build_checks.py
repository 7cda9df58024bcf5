"""Codefresh build checks: a durable queue, and the outcome kept with each signing

A check is queued in the same transaction as its signing (like the alert outbox) and done after the
commit by a worker that leases rows, so a crash or a second replica neither loses nor repeats one.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("signings") as batch:
        batch.add_column(sa.Column("build_verified", sa.Boolean))
        batch.add_column(sa.Column("build_status", sa.Text))
        batch.add_column(sa.Column("build_created", UTC_DATETIME))
        batch.add_column(sa.Column("build_finished", UTC_DATETIME))
        batch.add_column(sa.Column("build_checked_at", UTC_DATETIME))
        batch.add_column(sa.Column("build_reason", sa.Text))
    op.create_table(
        "build_checks",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "signing_id", sa.Integer, sa.ForeignKey("signings.id", ondelete="CASCADE"), nullable=False, unique=True
        ),
        sa.Column("account_id", sa.Text, nullable=False),
        sa.Column("platform_url", sa.Text, nullable=False),
        sa.Column("workflow_id", sa.String(64), nullable=False),
        sa.Column("pipeline_id", sa.Text, nullable=False),
        sa.Column("not_before", UTC_DATETIME, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UTC_DATETIME, nullable=False),
        sa.Column("last_error", sa.Text),
    )
    op.create_index("ix_build_checks_next_attempt_at", "build_checks", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_table("build_checks")
    with op.batch_alter_table("signings") as batch:
        for column in ("build_reason", "build_checked_at", "build_finished", "build_created", "build_status"):
            batch.drop_column(column)
        batch.drop_column("build_verified")
