"""(column, id) indexes for the signing filters: a filtered page is one index range

The history and the API list signings newest first (by id) with equality filters; an index on the
column alone made PostgreSQL read every signing of an account to find the newest hundred (760 ms for
an account whose signings are old, bench/bench_queries.py); with (column, id) a page is one ordered
index range (8 ms). A (column, id) index serves plain equality on the column as well.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

KEYSET_COLUMNS = ("issuer", "account_id", "account_name", "pipeline_id", "pipeline_name", "verdict")


def upgrade() -> None:
    for column in KEYSET_COLUMNS:
        op.drop_index(f"ix_signings_{column}", "signings")
        op.create_index(f"ix_signings_{column}_id", "signings", [column, "id"])


def downgrade() -> None:
    for column in KEYSET_COLUMNS:
        op.drop_index(f"ix_signings_{column}_id", "signings")
        op.create_index(f"ix_signings_{column}", "signings", [column])
