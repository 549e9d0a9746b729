"""Tenants carry their recording policy; the voicemails inbox

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("tenants") as batch:
        # Existing tenants read 'off', the Tenant resource's default.
        batch.add_column(
            sa.Column(
                "recording_policy", sa.String(length=16), server_default="off", nullable=False
            )
        )
    op.create_table(
        "voicemails",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("call_id", sa.String(length=1024), nullable=False),
        sa.Column("box", sa.String(length=32), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("caller", sa.String(length=64), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=False),
        sa.Column("city", sa.String(length=63), nullable=False),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("listened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name=op.f("fk_voicemails_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_voicemails_user_id_users"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_voicemails")),
        sa.UniqueConstraint("tenant_id", "call_id", name=op.f("uq_voicemails_tenant_id_call_id")),
    )
    op.create_index(
        op.f("ix_voicemails_tenant_id_created_at"), "voicemails", ["tenant_id", "created_at"]
    )
    op.create_index(op.f("ix_voicemails_user_id"), "voicemails", ["user_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_voicemails_user_id"), table_name="voicemails")
    op.drop_index(op.f("ix_voicemails_tenant_id_created_at"), table_name="voicemails")
    op.drop_table("voicemails")
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("recording_policy")
