"""Alembic migrations, run from code: the same revisions on PostgreSQL and SQLite.

The CRM runs its own migrations through the same functions (``migrations=`` its folder)
and the same environment (``run_environment``), with a version table of its own, so both
services may share one PostgreSQL database.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(database_url: str, migrations: Path = MIGRATIONS) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade_sync(database_url: str, revision: str = "heads", migrations: Path = MIGRATIONS) -> None:
    if database_url.startswith("sqlite"):
        path = database_url.split("///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(database_url, migrations), revision)


async def upgrade(
    database_url: str, revision: str = "heads", migrations: Path = MIGRATIONS
) -> None:
    # env.py runs its own event loop; keep it off the app's loop.
    await asyncio.to_thread(upgrade_sync, database_url, revision, migrations)


async def downgrade(database_url: str, revision: str, migrations: Path = MIGRATIONS) -> None:
    """Back to ``revision`` (an operator's rollback; the tests check every downgrade runs)."""
    await asyncio.to_thread(command.downgrade, alembic_config(database_url, migrations), revision)


def run_environment(
    target_metadata: MetaData, *, lock_key: int, version_table: str = "alembic_version"
) -> None:
    """The body of an env.py: async engines for PostgreSQL (asyncpg) and SQLite (aiosqlite).

    ``lock_key``: the PostgreSQL advisory lock that makes several replicas starting at once
    migrate one after the other.
    """

    def run(connection: Connection) -> None:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            version_table=version_table,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def migrate(url: str) -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                if connection.dialect.name == "postgresql":
                    await connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({lock_key})")
                await connection.run_sync(run)
        finally:
            await engine.dispose()

    url = context.config.get_main_option("sqlalchemy.url") or ""
    if context.is_offline_mode():
        context.configure(
            url=url,
            target_metadata=target_metadata,
            literal_binds=True,
            version_table=version_table,
        )
        with context.begin_transaction():
            context.run_migrations()
    else:
        asyncio.run(migrate(url))
