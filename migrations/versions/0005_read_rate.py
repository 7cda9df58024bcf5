"""logs.read_rate: the rate of a catch-up, so `status` (another process) shows its rate and ETA

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("logs") as batch:
        batch.add_column(sa.Column("read_rate", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("logs") as batch:
        batch.drop_column("read_rate")
