"""Contacts, companies and deals keep their name case-folded for search in any script

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# table -> the column searched
_TABLES = {"crm_contacts": "name", "crm_companies": "name", "crm_deals": "title"}


def upgrade() -> None:
    connection = op.get_bind()
    for table, column in _TABLES.items():
        with op.batch_alter_table(table) as batch:
            batch.add_column(
                sa.Column("search_text", sa.String(length=400), nullable=False, server_default="")
            )
        # Python's casefold, not SQL lower(): SQLite folds ASCII letters only.
        rows = connection.execute(sa.text(f"SELECT id, {column} FROM {table}")).all()  # noqa: S608 - fixed names
        for row_id, text in rows:
            connection.execute(
                sa.text(f"UPDATE {table} SET search_text = :folded WHERE id = :id"),  # noqa: S608 - fixed names
                {"folded": str(text).casefold(), "id": row_id},
            )


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("search_text")
