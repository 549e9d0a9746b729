from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/internal/v1", tags=["internal"])
