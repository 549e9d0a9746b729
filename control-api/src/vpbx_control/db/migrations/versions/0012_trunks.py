"""Tenants' own carrier trunks; the tenant's outbound policy

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "trunks",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("uri", sa.String(length=300), nullable=False),
        sa.Column("registers", sa.Boolean(), nullable=False),
        sa.Column("username", sa.String(length=128), nullable=True),
        sa.Column("password", sa.String(length=256), nullable=True),
        sa.Column("allowed_addresses", sa.JSON(), nullable=False),
        sa.Column("priority", sa.Integer(), nullable=False),
        sa.Column("passes_caller_id", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_trunks_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_trunks")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_trunks_tenant_id_name")),
    )
    op.create_index(op.f("ix_trunks_tenant_id"), "trunks", ["tenant_id"], unique=False)
    with op.batch_alter_table("tenants") as batch:
        # Existing tenants get the Tenant resource's defaults: national calls only, no caps.
        batch.add_column(
            sa.Column("outbound_country", sa.String(length=2), server_default="RU", nullable=False)
        )
        batch.add_column(
            sa.Column(
                "outbound_international", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
        batch.add_column(
            sa.Column("outbound_premium", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch.add_column(
            sa.Column("outbound_max_concurrent", sa.Integer(), server_default="0", nullable=False)
        )
        batch.add_column(
            sa.Column(
                "outbound_max_minutes_per_day", sa.Integer(), server_default="0", nullable=False
            )
        )
        batch.add_column(
            sa.Column("outbound_default_caller_id", sa.String(length=16), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("outbound_default_caller_id")
        batch.drop_column("outbound_max_minutes_per_day")
        batch.drop_column("outbound_max_concurrent")
        batch.drop_column("outbound_premium")
        batch.drop_column("outbound_international")
        batch.drop_column("outbound_country")
    op.drop_index(op.f("ix_trunks_tenant_id"), table_name="trunks")
    op.drop_table("trunks")
