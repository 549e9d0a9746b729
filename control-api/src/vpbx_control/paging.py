"""List pagination, and ETag / If-Match handling shared by every resource."""

from __future__ import annotations

from typing import Annotated, Any, Generic, TypeVar

from fastapi import Header, Query
from pydantic import BaseModel, Field
from sqlalchemy import Select, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from .errors import PreconditionFailed

ItemT = TypeVar("ItemT")

MAX_PAGE = 200
# Far beyond any real list; keeps the value inside a 64-bit SQL integer.
MAX_OFFSET = 1_000_000_000


class Page(BaseModel, Generic[ItemT]):
    items: list[ItemT]
    total: int = Field(description="number of items matching the filters, over all pages")
    limit: int
    offset: int


class PageParams(BaseModel):
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)
    offset: int = Field(default=0, ge=0, le=MAX_OFFSET)


async def fetch_page(
    session: AsyncSession, query: Select[Any], params: PageParams
) -> tuple[list[Any], int]:
    """One page of ``query``'s rows and the count of all of them."""
    total = await session.scalar(select(func.count()).select_from(query.subquery()))
    rows = await session.execute(query.limit(params.limit).offset(params.offset))
    return list(rows.scalars().all()), int(total or 0)


def page_params(
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE, description="page size")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")] = 0,
) -> PageParams:
    return PageParams(limit=limit, offset=offset)


IfMatchHeader = Annotated[
    str | None,
    Header(
        alias="If-Match",
        description="the ETag from a previous read; a stale one gets 412 instead of a lost update",
    ),
]


def revision_etag(revision: int) -> str:
    return f'"{revision}"'


def check_if_match(if_match: str | None, current_etag: str) -> None:
    """Refuse an update made from a stale read. No header means "overwrite"."""
    if if_match is None:
        return
    candidates = {tag.strip() for tag in if_match.split(",")}
    weak_current = current_etag.removeprefix("W/")
    if "*" in candidates:
        return
    if not any(tag.removeprefix("W/") == weak_current for tag in candidates):
        raise PreconditionFailed()
