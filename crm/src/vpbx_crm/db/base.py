"""The CRM's declarative base and the columns every tenant's row carries.

The CRM keeps its own database (its own migrations); tenants live in the control API, so
``tenant_id`` here is a plain column, scoped in one place (``repository.py``).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import JSON, DateTime, MetaData, String, event
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

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


class Searchable:
    """Mixin: a row found by a part of its name in any letter case and script.

    SQLite's lower() and LIKE fold ASCII letters only, so "ромашка" would not find
    "ООО Ромашка" in local mode: the name is kept case-folded by Python in ``search_text``
    (set on every ORM insert and update; bulk inserts set it themselves).
    """

    __searchable__: str = "name"
    search_text: Mapped[str] = mapped_column(String(400), default="", server_default="")


def folded(text: str) -> str:
    return text.casefold()


@event.listens_for(Searchable, "before_insert", propagate=True)
@event.listens_for(Searchable, "before_update", propagate=True)
def _fold_search_text(_mapper: object, _connection: object, row: Searchable) -> None:
    row.search_text = folded(str(getattr(row, row.__searchable__)))


# Indexes some databases have and the code does not map (PostgreSQL's trigram indexes of
# the searched names, made by migration 0004 when pg_trgm can be had): index -> table.
TRIGRAM_INDEXES = {
    "ix_crm_contacts_search_trgm": "crm_contacts",
    "ix_crm_companies_search_trgm": "crm_companies",
    "ix_crm_deals_search_trgm": "crm_deals",
}
