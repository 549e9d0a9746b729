"""Tenant scoping in one place: every CRM query of a tenant's rows starts from ``scoped()``
(the control API's TenantRepository, over the CRM's rows).

A row of another tenant is indistinguishable from a missing one (404).
"""

from __future__ import annotations

from vpbx_control.repository import TenantRepository

from .db.base import TenantRow

Scoped = TenantRepository

__all__ = ["Scoped", "TenantRow"]
