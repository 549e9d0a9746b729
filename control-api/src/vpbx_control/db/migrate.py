"""Alembic migrations, run from code: the same revisions on PostgreSQL and SQLite."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_sync(database_url: str, revision: str = "heads") -> None:
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url), revision)


async def upgrade(database_url: str, revision: str = "heads") -> None:
    # env.py runs its own event loop; keep it off the app's loop.
    await asyncio.to_thread(upgrade_sync, database_url, revision)


async def downgrade(database_url: str, revision: str) -> None:
    """Back to ``revision`` (an operator's rollback; the tests check every downgrade runs)."""
    await asyncio.to_thread(command.downgrade, alembic_config(database_url), revision)
