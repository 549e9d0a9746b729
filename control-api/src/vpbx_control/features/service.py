from __future__ import annotations

from ..tenants.models import TenantRow
from .schemas import FeatureCodes


def stored_codes(tenant: TenantRow) -> FeatureCodes:
    """The tenant's codes; the platform's defaults for any it never set."""
    return FeatureCodes.model_validate(tenant.feature_codes or {})
