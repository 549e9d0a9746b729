"""Conference rooms

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "conference_rooms",
        sa.Column("extension", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("pin", sa.String(length=8), nullable=True),
        sa.Column("max_participants", sa.Integer(), nullable=False),
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
            name=op.f("fk_conference_rooms_tenant_id_tenants"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_conference_rooms")),
        sa.UniqueConstraint(
            "tenant_id", "extension", name=op.f("uq_conference_rooms_tenant_id_extension")
        ),
    )
    op.create_index(
        op.f("ix_conference_rooms_tenant_id"), "conference_rooms", ["tenant_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_conference_rooms_tenant_id"), table_name="conference_rooms")
    op.drop_table("conference_rooms")
