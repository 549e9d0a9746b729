"""Liveness, readiness and metrics endpoints."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from .deps import Context, Public

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process serves requests")
async def healthz(_: Public) -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database (and Redis, if configured) answer")
async def readyz(context: Context, _: Public) -> JSONResponse:
    problems: dict[str, str] = {}
    try:
        await context.database.ping()
    except Exception as exc:
        problems["database"] = type(exc).__name__
    if context.redis is not None:
        try:
            await context.redis.ping()
        except Exception as exc:
            problems["redis"] = type(exc).__name__
    if problems:
        return JSONResponse({"status": "unavailable", "problems": problems}, status_code=503)
    return JSONResponse({"status": "ready"})


@router.get("/metrics", summary="Prometheus metrics", include_in_schema=False)
async def metrics(context: Context, _: Public) -> Response:
    return context.metrics.render()
