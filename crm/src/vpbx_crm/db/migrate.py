"""The CRM's Alembic migrations (its own folder and version table; the control API's runner)."""

from __future__ import annotations

from pathlib import Path

from vpbx_control.db import migrate

MIGRATIONS = Path(__file__).with_name("migrations")


async def upgrade(database_url: str, revision: str = "heads") -> None:
    await migrate.upgrade(database_url, revision, MIGRATIONS)


async def downgrade(database_url: str, revision: str) -> None:
    await migrate.downgrade(database_url, revision, MIGRATIONS)


def upgrade_sync(database_url: str, revision: str = "heads") -> None:
    migrate.upgrade_sync(database_url, revision, MIGRATIONS)
