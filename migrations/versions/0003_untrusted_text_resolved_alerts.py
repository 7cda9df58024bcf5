"""attacker-controlled signing columns become TEXT; alerts get resolved_at

Anyone can write a Rekor entry, so every signing column filled from a certificate is hostile input:
on PostgreSQL a 300-character account name overflowed VARCHAR(200) and failed its whole batch on
every retry. Those columns are TEXT now; the model's `UntrustedText` type bounds what is stored in
the indexed ones (a btree entry has a size limit) and drops NUL, which PostgreSQL text refuses.

`alerts.resolved_at`: when a lasting condition (a stalled or inconsistent log, an unwitnessed
checkpoint) cleared; null while it holds, and for one-off events. `alerts.log_url`: the log an alert
is about (log alerts of a log that never answered have no `logs` row to point at), so a condition
is resolved by (kind, log_url).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)
UNTRUSTED_SIGNING_COLUMNS = {
    "issuer": 500,
    "account_id": 200,
    "account_name": 200,
    "pipeline_id": 200,
    "pipeline_name": 500,
    "artifact_digest": 200,
}


def upgrade() -> None:
    with op.batch_alter_table("logs") as batch:  # a v1 checkpoint's origin is signed, but its name part is free
        batch.alter_column("origin", type_=sa.Text, existing_type=sa.String(500), existing_nullable=False)
    with op.batch_alter_table("signings") as batch:
        for column, length in UNTRUSTED_SIGNING_COLUMNS.items():
            batch.alter_column(column, type_=sa.Text, existing_type=sa.String(length))
    with op.batch_alter_table("alerts") as batch:
        batch.alter_column("dedup_key", type_=sa.Text, existing_type=sa.String(300), existing_nullable=False)
        batch.add_column(sa.Column("resolved_at", UTC_DATETIME))
        batch.add_column(sa.Column("log_url", sa.String(500)))
    op.execute(
        "UPDATE alerts SET log_url = (SELECT url FROM logs WHERE logs.id = alerts.log_id) WHERE log_id IS NOT NULL"
    )
    op.create_index("ix_alerts_kind_log_url", "alerts", ["kind", "log_url"])


def downgrade() -> None:
    op.drop_index("ix_alerts_kind_log_url", "alerts")
    with op.batch_alter_table("alerts") as batch:
        batch.drop_column("log_url")
        batch.drop_column("resolved_at")
        batch.alter_column("dedup_key", type_=sa.String(300), existing_type=sa.Text, existing_nullable=False)
    with op.batch_alter_table("signings") as batch:
        for column, length in UNTRUSTED_SIGNING_COLUMNS.items():
            batch.alter_column(column, type_=sa.String(length), existing_type=sa.Text)
    with op.batch_alter_table("logs") as batch:
        batch.alter_column("origin", type_=sa.String(500), existing_type=sa.Text, existing_nullable=False)
