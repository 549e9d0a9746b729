"""Alembic environment: async engines for both PostgreSQL (asyncpg) and SQLite (aiosqlite)."""

from __future__ import annotations

import asyncio

from alembic import context
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine

from vpbx_control.db.registry import Base

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _migrate(url: str) -> None:
    engine = create_async_engine(url)
    try:
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                # Several API replicas starting at once: one migrates, the others wait.
                await connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7265803)")
            await connection.run_sync(_run)
    finally:
        await engine.dispose()


def run_offline(url: str) -> None:
    context.configure(url=url, target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


_url = context.config.get_main_option("sqlalchemy.url") or ""
if context.is_offline_mode():
    run_offline(_url)
else:
    asyncio.run(_migrate(_url))
