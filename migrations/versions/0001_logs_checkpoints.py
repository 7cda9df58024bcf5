"""logs, checkpoints and alerts: the verified tail's state

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "logs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("url", sa.String(500), nullable=False),
        sa.Column("api", sa.String(10), nullable=False),
        sa.Column("origin", sa.String(500), nullable=False),
        sa.Column("tree_id", sa.String(40), nullable=False, server_default=""),
        sa.Column("shard_offset", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("tree_size", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("verified_size", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("verified_root", sa.String(64)),
        sa.Column("last_checkpoint", sa.Text),
        sa.Column("last_checkpoint_at", UTC_DATETIME),
        sa.Column("next_index", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("compact_range", sa.LargeBinary, nullable=False, server_default=""),
        sa.Column("state", sa.String(20), nullable=False, server_default="ok"),
        sa.Column("state_detail", sa.Text),
        sa.Column("retired", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("updated_at", UTC_DATETIME, nullable=False),
        sa.UniqueConstraint("url", "tree_id", name="uq_logs_url_tree"),
    )
    op.create_table(
        "checkpoints",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("log_id", sa.Integer, sa.ForeignKey("logs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("tree_size", sa.BigInteger, nullable=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("verified_at", UTC_DATETIME, nullable=False),
        sa.UniqueConstraint("log_id", "tree_size", name="uq_checkpoints_log_size"),
    )
    op.create_index("ix_checkpoints_log_id", "checkpoints", ["log_id"])
    op.create_table(
        "alerts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("dedup_key", sa.String(300), nullable=False, unique=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("severity", sa.String(10), nullable=False),
        sa.Column("signing_id", sa.BigInteger),
        sa.Column("log_id", sa.Integer, sa.ForeignKey("logs.id", ondelete="SET NULL")),
        sa.Column("summary", sa.Text, nullable=False),
        sa.Column("payload", sa.Text, nullable=False, server_default="{}"),
        sa.Column("created_at", UTC_DATETIME, nullable=False),
    )
    op.create_index("ix_alerts_kind", "alerts", ["kind"])
    op.create_index("ix_alerts_signing_id", "alerts", ["signing_id"])
    op.create_index("ix_alerts_created_at", "alerts", ["created_at"])


def downgrade() -> None:
    op.drop_table("alerts")
    op.drop_table("checkpoints")
    op.drop_table("logs")
