"""Call ids as long as SIP Call-IDs get (the control API keeps 1024), and every extension
a call was offered to

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("crm_calls") as batch:
        batch.alter_column("call_id", type_=sa.String(length=1024), existing_nullable=False)
        batch.alter_column("caller", type_=sa.Text(), existing_nullable=False)
        batch.alter_column("callee", type_=sa.Text(), existing_nullable=False)
    with op.batch_alter_table("crm_tasks") as batch:
        batch.alter_column("call_id", type_=sa.String(length=1024), existing_nullable=True)


def downgrade() -> None:
    with op.batch_alter_table("crm_tasks") as batch:
        batch.alter_column("call_id", type_=sa.String(length=64), existing_nullable=True)
    with op.batch_alter_table("crm_calls") as batch:
        batch.alter_column("callee", type_=sa.String(length=200), existing_nullable=False)
        batch.alter_column("caller", type_=sa.String(length=64), existing_nullable=False)
        batch.alter_column("call_id", type_=sa.String(length=64), existing_nullable=False)
