"""Alembic environment of the control API's database (vpbx_control.db.migrate)."""

from __future__ import annotations

from vpbx_control.db.migrate import run_environment
from vpbx_control.db.registry import Base

run_environment(Base.metadata, lock_key=7265803)
