"""Liveness and readiness of the CRM."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from vpbx_control.health import Health, Readiness

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
    problems: dict[str, str] = {}
    try:
        await context.database.ping()
    except Exception as exc:  # any failure means "not ready"; the type says which
        problems["database"] = type(exc).__name__
    if context.redis is not None:
        try:
            await context.redis.ping()
        except Exception as exc:  # as above
            problems["redis"] = type(exc).__name__
    status = "unavailable" if problems else "ready"
    body = Readiness(status=status, problems=problems)
    return JSONResponse(body.model_dump(), status_code=503 if problems else 200)
