"""Liveness and readiness of the CRM."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from vpbx_control.health import Health, Readiness, readiness

from .deps import Context, Public

router = APIRouter(tags=["health"])


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
