"""The CRM's declarative base and the columns every tenant's row carries.

The CRM keeps its own database (its own migrations); tenants live in the control API, so
``tenant_id`` here is a plain column, scoped in one place (``repository.py``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData
from sqlalchemy.orm import DeclarativeBase

from vpbx_control.db.base import NAMING_CONVENTION, TenantScopedRow


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 - SQLAlchemy reads this class attribute
        dict[str, Any]: JSON,
        list[Any]: JSON,
        dt.datetime: DateTime(timezone=True),
    }


# The control API's tenant-scoped mixin, without its foreign key to a tenants table.
TenantRow = TenantScopedRow
