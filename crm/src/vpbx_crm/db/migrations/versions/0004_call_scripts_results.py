"""Call scripts, the after-call result on the call timeline, and trigram indexes for name
search on PostgreSQL

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from vpbx_crm.db.base import TRIGRAM_INDEXES

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

logger = logging.getLogger(__name__)


def upgrade() -> None:
    op.create_table(
        "crm_call_scripts",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("numbers", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("stages", sa.JSON(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.String(length=63), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.current_timestamp(),
            nullable=False,
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_crm_call_scripts")),
    )
    with op.batch_alter_table("crm_call_scripts") as batch:
        batch.create_index(batch.f("ix_crm_call_scripts_tenant_id"), ["tenant_id"], unique=False)
    with op.batch_alter_table("crm_calls") as batch:
        batch.add_column(sa.Column("result", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("result_user_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("result_at", sa.DateTime(timezone=True), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        _trigram_indexes()


def _trigram_indexes() -> None:
    """A part of a name (``search_text LIKE '%ромаш%'``) is found through a trigram index
    instead of reading every row of the table. pg_trgm ships with PostgreSQL but creating
    the extension may need a superuser: without it the search still works (a scan), so the
    migration goes on and says so."""
    connection = op.get_bind()
    try:
        with connection.begin_nested():
            connection.execute(sa.text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    except sa.exc.DBAPIError as exc:
        logger.warning(
            "pg_trgm is not available (%s): name search scans instead of using an index; "
            "docs/crm.md says how to add the indexes later",
            str(exc).splitlines()[0],
        )
        return
    for name, table in TRIGRAM_INDEXES.items():
        connection.execute(
            sa.text(
                f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (search_text gin_trgm_ops)"
            )  # fixed names
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in TRIGRAM_INDEXES:
            op.execute(sa.text(f"DROP INDEX IF EXISTS {name}"))  # fixed names
    with op.batch_alter_table("crm_calls") as batch:
        batch.drop_column("result_at")
        batch.drop_column("result_user_id")
        batch.drop_column("result")
    with op.batch_alter_table("crm_call_scripts") as batch:
        batch.drop_index(batch.f("ix_crm_call_scripts_tenant_id"))
    op.drop_table("crm_call_scripts")
