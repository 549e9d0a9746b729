"""Group members may be numbers outside: user_id becomes optional, number is new

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | Sequence[str] | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("group_members") as batch:
        batch.alter_column("user_id", existing_type=sa.Uuid(), nullable=True)
        batch.add_column(sa.Column("number", sa.String(16), nullable=True))


def downgrade() -> None:
    op.execute("DELETE FROM group_members WHERE user_id IS NULL")
    with op.batch_alter_table("group_members") as batch:
        batch.drop_column("number")
        batch.alter_column("user_id", existing_type=sa.Uuid(), nullable=False)
