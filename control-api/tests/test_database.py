"""The embedded SQLite store behaves like PostgreSQL where the services rely on it."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import text

from vpbx_control.db.session import Database


async def test_sqlite_lower_folds_every_letter_like_postgresql(tmp_path: Path) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    try:
        async with database.engine.connect() as connection:
            row = (
                await connection.execute(
                    text(
                        "SELECT lower('ООО Ромашка'), lower('ÄRGER Straße'), lower(NULL), "
                        "lower('ООО Ромашка') LIKE '%ромашка%'"
                    )
                )
            ).one()
        assert tuple(row) == ("ооо ромашка", "ärger straße", None, 1)
    finally:
        await database.dispose()
