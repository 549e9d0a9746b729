"""Webhook deliveries remember the call event they stand for (one per webhook and event)

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.add_column(sa.Column("dedupe_key", sa.String(length=64), nullable=True))
        batch.create_unique_constraint(
            "uq_webhook_deliveries_webhook_id_dedupe_key", ["webhook_id", "dedupe_key"]
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_constraint("uq_webhook_deliveries_webhook_id_dedupe_key", type_="unique")
        batch.drop_column("dedupe_key")
