"""Alembic environment of the CRM's database (vpbx_control.db.migrate runs it)."""

from __future__ import annotations

from vpbx_control.db.migrate import run_environment
from vpbx_crm.db.registry import Base

# A version table of its own: the CRM may share the control API's PostgreSQL database.
run_environment(Base.metadata, lock_key=7265804, version_table="crm_alembic_version")
