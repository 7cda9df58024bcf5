"""witness cosigners of checkpoints, and what gossip observed

`checkpoints.cosigners` and `logs.cosigners`: JSON lists of {name, timestamp} of the policy witnesses
whose cosignatures verified on a checkpoint (the log's: on its newest accepted one).
`gossip_observations`: every checkpoint a peer or distributor showed us, and how it compared.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("checkpoints") as batch:
        batch.add_column(sa.Column("cosigners", sa.Text))
    with op.batch_alter_table("logs") as batch:
        batch.add_column(sa.Column("cosigners", sa.Text))
    op.create_table(
        "gossip_observations",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("source", sa.Text, nullable=False),
        sa.Column("origin", sa.Text, nullable=False),
        sa.Column("tree_size", sa.BigInteger),
        sa.Column("root_hash", sa.String(64)),
        sa.Column("note", sa.Text, nullable=False),
        sa.Column("observed_at", UTC_DATETIME, nullable=False),
        sa.Column("result", sa.String(20), nullable=False),
        sa.Column("detail", sa.Text),
    )
    op.create_index("ix_gossip_observations_observed_at", "gossip_observations", ["observed_at"])


def downgrade() -> None:
    op.drop_table("gossip_observations")
    with op.batch_alter_table("logs") as batch:
        batch.drop_column("cosigners")
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("cosigners")
