"""The CRM's migrations: they build exactly the tables the code maps, up and down, on
SQLite (the local default) and on PostgreSQL beside the control API's tables."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path
from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from tests.services.postgres import PostgresServer

from vpbx_crm.db.base import TRIGRAM_INDEXES
from vpbx_crm.db.migrate import downgrade, upgrade
from vpbx_crm.db.registry import Base


def _compare(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"compare_type": True, "version_table": "crm_alembic_version"}
    )
    return list(compare_metadata(context, Base.metadata))


async def _differences(url: str) -> list[Any]:
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            found = await connection.run_sync(_compare)
    finally:
        await engine.dispose()

    def theirs(difference: Any) -> bool:
        # The control API's tables may share the database: not the CRM's business.
        kind, item = difference[0], difference[1]
        if kind == "remove_index" and item.name in TRIGRAM_INDEXES:
            return True  # PostgreSQL's optional search indexes (migration 0004)
        table = item.name if kind == "remove_table" else getattr(item, "table", None)
        name = table if isinstance(table, str) else getattr(table, "name", "crm_")
        return kind.startswith("remove_") and not name.startswith("crm_")

    return [difference for difference in found if not theirs(difference)]


async def test_the_migrations_build_what_the_code_maps_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'crm.db'}"
    await upgrade(url)
    assert await _differences(url) == []
    await downgrade(url, "base")
    await upgrade(url)
    assert await _differences(url) == []


async def test_the_migrations_build_what_the_code_maps_on_postgresql(postgres_url: str) -> None:
    # The test database holds both services' tables, as a cluster may run them.
    assert await _differences(postgres_url) == []
    await downgrade(postgres_url, "base")
    await upgrade(postgres_url)
    assert await _differences(postgres_url) == []


async def test_postgresql_finds_a_part_of_a_name_through_the_trigram_index(
    postgres_url: str,
) -> None:
    """The harness's user is a superuser: pg_trgm is there and the search plan uses it."""
    engine = create_async_engine(postgres_url)
    try:
        async with engine.connect() as connection:
            indexes = set(
                (
                    await connection.execute(
                        text("SELECT indexname FROM pg_indexes WHERE indexname LIKE '%_trgm'")
                    )
                ).scalars()
            )
            assert indexes == set(TRIGRAM_INDEXES)
            await connection.execute(text("SET LOCAL enable_seqscan = off"))
            plan = "\n".join(
                (
                    await connection.execute(
                        text(
                            "EXPLAIN SELECT id FROM crm_contacts "
                            "WHERE search_text LIKE '%' || 'ромаш' || '%'"
                        )
                    )
                ).scalars()
            )
    finally:
        await engine.dispose()
    assert "ix_crm_contacts_search_trgm" in plan, plan


async def test_without_the_right_to_create_pg_trgm_the_migrations_go_on_without_it(
    postgres_server: PostgresServer,
) -> None:
    """A database user that may not create extensions (no CREATE on the database, as a
    managed PostgreSQL may hand out): the CRM migrates, searches by scanning, and maps
    exactly what the code maps."""
    suffix = secrets.token_hex(3)
    database, role = f"crm_plain_{suffix}", f"crm_plain_{suffix}"
    # The server's helpers run their own event loop: off this one.
    await asyncio.to_thread(postgres_server.execute, f'CREATE ROLE "{role}" LOGIN')
    await asyncio.to_thread(postgres_server.create_database, database)
    await asyncio.to_thread(
        postgres_server.execute, f'GRANT ALL ON SCHEMA public TO "{role}"', database
    )
    url = f"postgresql+asyncpg://{role}@127.0.0.1:{postgres_server.port}/{database}"
    try:
        await upgrade(url)
        assert await _differences(url) == []
        engine = create_async_engine(url)
        try:
            async with engine.connect() as connection:
                extensions = set(
                    (await connection.execute(text("SELECT extname FROM pg_extension"))).scalars()
                )
                indexes = (
                    await connection.execute(
                        text("SELECT count(*) FROM pg_indexes WHERE indexname LIKE '%_trgm'")
                    )
                ).scalar_one()
        finally:
            await engine.dispose()
        assert "pg_trgm" not in extensions
        assert indexes == 0
    finally:
        await asyncio.to_thread(postgres_server.drop_database, database)
        await asyncio.to_thread(postgres_server.execute, f'DROP ROLE "{role}"')
