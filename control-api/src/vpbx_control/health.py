"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

import logging
import time

import redis.asyncio as redis
from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from vpbx_common.trunks import TrunkStatusStore

from .db.session import Database
from .deps import Context, Public

logger = logging.getLogger(__name__)
router = APIRouter(tags=["health"])


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(examples=["ready"], description="ready or unavailable")
    problems: dict[str, str] = Field(
        default_factory=dict, description="component -> what failed", examples=[{}]
    )


@router.get("/healthz", response_model=Health, summary="Liveness: the process serves requests")
async def healthz(_: Public) -> Health:
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    summary="Readiness: the database (and Redis, if configured) answer",
    responses={503: {"model": Readiness, "description": "a dependency does not answer"}},
)
async def readyz(context: Context, _: Public) -> JSONResponse:
    return await readiness(context.database, context.redis)


async def readiness(database: Database, client: redis.Redis | None) -> JSONResponse:
    """200 when the database (and Redis, if given) answer, else 503 naming what failed;
    the CRM's /readyz answers the same way."""
    problems: dict[str, str] = {}
    try:
        await database.ping()
    except Exception as exc:  # any failure means "not ready"; its type says which
        problems["database"] = type(exc).__name__
    if client is not None:
        try:
            await client.ping()
        except Exception as exc:  # as above
            problems["redis"] = type(exc).__name__
    if problems:
        body = Readiness(status="unavailable", problems=problems)
        return JSONResponse(body.model_dump(), status_code=503)
    return JSONResponse(Readiness(status="ready").model_dump())


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(context: Context, _: Public) -> Response:
    if context.redis is not None:
        try:
            reports = await TrunkStatusStore(context.redis).every()
        except redis.RedisError as exc:
            # The trunk gauge keeps its last values; the rest of the page is still current.
            logger.warning("trunk registrations not read for metrics: %s", exc)
        else:
            context.metrics.show_trunks(reports, int(time.time() * 1000))
    return context.metrics.render()
