"""The reads and writes of an import, batched: never one query per row.

Reads go by ``IN`` over chunks of ``CHUNK`` keys (the parameter limits of SQLite and
PostgreSQL stay far away); inserts are one ``executemany`` per table, which SQLAlchemy
sends as multi-row ``INSERT ... VALUES`` statements of up to 1000 rows; updates are one
``executemany`` of ``UPDATE ... WHERE id = ?`` (pipelined by asyncpg).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

from sqlalchemy import Table, bindparam, insert, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from ..db.base import Base, Searchable, folded

logger = logging.getLogger(__name__)

CHUNK = 500

T = TypeVar("T")

_QUOTES = re.compile(r"[\"'«»“”„]")


def chunks(items: Sequence[T], size: int = CHUNK) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


async def plan_with_values(session: AsyncSession) -> None:
    """Have PostgreSQL plan each of the transaction's queries with its values.

    asyncpg prepares every statement, and after five runs PostgreSQL may keep a generic
    plan of it. For ``phone IN ($2, ..., $501)`` a generic plan made while the table was
    small (before the first big import was analysed) compares every row of the tenant
    with all 500 values, one by one: a second a chunk at 20,000 phones, growing with the
    table. A plan made with the values hashes them or probes the index instead (ms).
    """
    connection = await session.connection()
    if connection.dialect.name == "postgresql":
        await session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


async def analyze(session: AsyncSession, models: Sequence[type[Base]]) -> None:
    """Refresh the planner's statistics of tables a large import has just filled.

    PostgreSQL's own autovacuum does it too, but up to a minute later, and until then the
    planner may take a tenant's 100,000 contacts for a handful and scan them all for
    every chunk of the next preview ("Populating a Database" in PostgreSQL's manual says
    the same of any bulk load). The import has committed: a failure here is logged, the
    import stands.
    """
    try:
        for model in models:
            # The name is our own table's, from the metadata: nothing to quote.
            await session.execute(text(f"ANALYZE {table_of(model).name}"))
        await session.commit()
    except DBAPIError as exc:
        await session.rollback()
        logger.warning("could not analyze after an import (%s): queries may plan badly", exc)


def name_key(name: str) -> str:
    """A company's name as compared: ООО «Ромашка» is ООО "Ромашка" is ооо ромашка."""
    return " ".join(_QUOTES.sub(" ", name).casefold().replace("ё", "е").split())


def table_of(model: type[Base]) -> Table:
    return Base.metadata.tables[str(model.__tablename__)]


def _with_search_text(model: type[Base], rows: list[dict[str, Any]], prefix: str = "") -> None:
    """Core statements skip the ORM's events: fold a searchable row's name here too."""
    if not issubclass(model, Searchable):
        return
    source = prefix + model.__searchable__
    for row in rows:
        if source in row:
            row[prefix + "search_text"] = folded(str(row[source]))


async def insert_many(session: AsyncSession, model: type[Base], rows: list[dict[str, Any]]) -> None:
    if rows:
        _with_search_text(model, rows)
        await session.execute(insert(table_of(model)), rows)


async def update_many(
    session: AsyncSession,
    model: type[Base],
    tenant_id: str,
    columns: Sequence[str],
    rows: list[dict[str, Any]],
) -> None:
    """``UPDATE`` of ``columns`` by id, each row bumping its revision (its ETag).

    Every dict holds ``id`` and each of ``columns`` (bound as ``v_<column>``: SQLAlchemy
    keeps the plain names for itself)."""
    if not rows:
        return
    table = table_of(model)
    statement = (
        update(table)
        .where(table.c.id == bindparam("v_id"), table.c.tenant_id == tenant_id)
        .values(
            revision=table.c.revision + 1,
            **{column: bindparam(f"v_{column}") for column in columns},
        )
    )
    parameters = [{f"v_{key}": value for key, value in row.items()} for row in rows]
    if issubclass(model, Searchable) and model.__searchable__ in columns:
        _with_search_text(model, parameters, prefix="v_")
        statement = statement.values(search_text=bindparam("v_search_text"))
    connection = await session.connection()
    await connection.execute(statement, parameters)
