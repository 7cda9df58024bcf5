"""Fulcio's CT log: certificates, and the join with Rekor signings by (issuing CA, serial)

`logs.kind`: rekor or ct. `certificates`: one row per certificate of a watched issuer seen in a CT
log, unique by (issuer_ca, serial), linked to the Rekor signing that used it once there is one.
`signings.issuer_ca` and `signings.certificate_serial`: the other side of that join.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

UTC_DATETIME = sa.DateTime(timezone=True)
IDENTITY_COLUMNS = (
    "identity",
    "provider",
    "account_id",
    "account_name",
    "pipeline_id",
    "pipeline_name",
    "run_url",
    "source_repository",
    "source_ref",
)


def upgrade() -> None:
    with op.batch_alter_table("logs") as batch:
        batch.add_column(sa.Column("kind", sa.String(10), nullable=False, server_default="rekor"))
    with op.batch_alter_table("signings") as batch:
        batch.add_column(sa.Column("issuer_ca", sa.String(64)))
        batch.add_column(sa.Column("certificate_serial", sa.String(80)))
    op.create_index("ix_signings_issuer_ca_serial", "signings", ["issuer_ca", "certificate_serial"])
    op.create_table(
        "certificates",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("log_id", sa.Integer, sa.ForeignKey("logs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("log_url", sa.String(500), nullable=False),
        sa.Column("ct_index", sa.BigInteger, nullable=False),
        sa.Column("ct_timestamp", UTC_DATETIME, nullable=False),
        sa.Column("entry_type", sa.String(10), nullable=False),
        sa.Column("issuer_ca", sa.String(64)),
        sa.Column("serial", sa.String(80), nullable=False),
        sa.Column("issuer", sa.Text, nullable=False),
        *(sa.Column(column, sa.Text) for column in IDENTITY_COLUMNS),
        sa.Column("certificate_sha256", sa.String(64), nullable=False),
        sa.Column("not_before", UTC_DATETIME),
        sa.Column("chain_verified", sa.Boolean, nullable=False),
        sa.Column("verdict", sa.String(30), nullable=False),
        sa.Column("extensions", sa.Text, nullable=False, server_default="{}"),
        sa.Column("signing_id", sa.Integer, sa.ForeignKey("signings.id", ondelete="SET NULL")),
        sa.Column("unlogged_alerted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.UniqueConstraint("issuer_ca", "serial", name="uq_certificates_issuer_serial"),
    )
    for column in ("verdict", "ct_timestamp", "signing_id", "account_id", "account_name", "pipeline_id"):
        op.create_index(f"ix_certificates_{column}", "certificates", [column])


def downgrade() -> None:
    op.drop_table("certificates")
    op.drop_index("ix_signings_issuer_ca_serial", "signings")
    with op.batch_alter_table("signings") as batch:
        batch.drop_column("certificate_serial")
        batch.drop_column("issuer_ca")
    with op.batch_alter_table("logs") as batch:
        batch.drop_column("kind")
