"""Devices have a kind: phone (a tenant admin adds it) or browser (the user's workspace)

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | Sequence[str] | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.add_column(sa.Column("kind", sa.String(16), nullable=False, server_default="phone"))


def downgrade() -> None:
    with op.batch_alter_table("devices") as batch:
        batch.drop_column("kind")
