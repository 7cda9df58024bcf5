"""signings, alert deliveries (outbox) and entry errors

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)
SIGNING_FILTERS = ("issuer", "account_id", "account_name", "pipeline_id", "pipeline_name", "verdict", "signed_at")


def upgrade() -> None:
    op.create_table(
        "signings",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("log_id", sa.Integer, sa.ForeignKey("logs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("log_url", sa.String(500), nullable=False),
        sa.Column("log_index", sa.BigInteger, nullable=False),
        sa.Column("entry_uuid", sa.String(80)),
        sa.Column("integrated_time", UTC_DATETIME),
        sa.Column("signed_at", UTC_DATETIME, nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("issuer", sa.String(500), nullable=False),
        sa.Column("identity", sa.Text),
        sa.Column("provider", sa.String(40)),
        sa.Column("account_id", sa.String(200)),
        sa.Column("account_name", sa.String(200)),
        sa.Column("pipeline_id", sa.String(200)),
        sa.Column("pipeline_name", sa.String(500)),
        sa.Column("run_url", sa.Text),
        sa.Column("source_repository", sa.Text),
        sa.Column("source_ref", sa.Text),
        sa.Column("artifact_digest", sa.String(200)),
        sa.Column("certificate_sha256", sa.String(64), nullable=False),
        sa.Column("not_before", UTC_DATETIME),
        sa.Column("chain_verified", sa.Boolean, nullable=False),
        sa.Column("verdict", sa.String(30), nullable=False),
        sa.Column("extensions", sa.Text, nullable=False, server_default="{}"),
        sa.UniqueConstraint("log_id", "log_index", "certificate_sha256", name="uq_signings_entry_cert"),
    )
    for column in SIGNING_FILTERS:
        op.create_index(f"ix_signings_{column}", "signings", [column])
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("alert_id", sa.Integer, sa.ForeignKey("alerts.id", ondelete="CASCADE"), nullable=False),
        sa.Column("sink", sa.String(100), nullable=False),
        sa.Column("status", sa.String(20), nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", UTC_DATETIME, nullable=False),
        sa.Column("last_error", sa.Text),
        sa.Column("delivered_at", UTC_DATETIME),
        sa.UniqueConstraint("alert_id", "sink", name="uq_deliveries_alert_sink"),
    )
    op.create_index("ix_alert_deliveries_alert_id", "alert_deliveries", ["alert_id"])
    op.create_index("ix_alert_deliveries_status", "alert_deliveries", ["status"])
    op.create_index("ix_alert_deliveries_next_attempt_at", "alert_deliveries", ["next_attempt_at"])
    op.create_table(
        "entry_errors",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("log_id", sa.Integer, sa.ForeignKey("logs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("log_index", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(60), nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("seen_at", UTC_DATETIME, nullable=False),
        sa.UniqueConstraint("log_id", "log_index", name="uq_entry_errors_entry"),
    )
    op.create_index("ix_entry_errors_reason", "entry_errors", ["reason"])


def downgrade() -> None:
    op.drop_table("entry_errors")
    op.drop_table("alert_deliveries")
    op.drop_table("signings")
