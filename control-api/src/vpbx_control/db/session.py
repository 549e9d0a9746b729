"""The database engine and sessions; created by the app factory, never at import."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)


def _unicode_lower(value: object) -> object:
    return value.lower() if isinstance(value, str) else value


def _set_up_sqlite(dbapi_connection: object, _: object) -> None:
    cursor = dbapi_connection.cursor()  # type: ignore[attr-defined]
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()
    # SQLite's own lower() folds ASCII letters only, PostgreSQL's every letter: without
    # this, a search by name (lower(name) LIKE ...) finds "Ромашка" only on PostgreSQL.
    dbapi_connection.create_function(  # type: ignore[attr-defined]
        "lower", 1, _unicode_lower, deterministic=True
    )


class Database:
    def __init__(self, url: str, *, echo: bool = False) -> None:
        if url.startswith("sqlite"):
            self.engine: AsyncEngine = create_async_engine(url, echo=echo)
            sync_engine: Engine = self.engine.sync_engine
            event.listen(sync_engine, "connect", _set_up_sqlite)
        else:
            self.engine = create_async_engine(url, echo=echo, pool_size=10, max_overflow=20)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        async with self.sessions() as session:
            yield session

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.exec_driver_sql("SELECT 1")

    async def dispose(self) -> None:
        await self.engine.dispose()
