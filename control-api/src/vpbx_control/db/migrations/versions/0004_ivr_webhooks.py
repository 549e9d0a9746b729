"""IVR menus' retry count and the per-attempt history of webhook deliveries

Revision ID: 0004
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("ivr_menus") as batch:
        batch.add_column(sa.Column("max_retries", sa.Integer(), server_default="2", nullable=False))
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("history", sa.JSON(), server_default="[]", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_column("history")
    with op.batch_alter_table("ivr_menus") as batch:
        batch.drop_column("max_retries")
