"""The outbound policy on a tenant's row: read, written (platform API) and checked.

The policy lives on the TenantRow (columns ``outbound_*``, migration 0012) and in the
Tenant resource's ``spec.outbound``; the node config carries it as ``outbound``.
"""

from __future__ import annotations

from vpbx_common.manifests import OutboundPolicy

from ..errors import InvalidInput
from ..numbers.service import store_read
from ..numbers.store import NumberStore
from ..tenants.models import TenantRow
from .schemas import OutboundPolicyIn, OutboundPolicyOut, OutboundPolicyPatch


def outbound_policy(row: TenantRow) -> OutboundPolicy:
    """The row's policy as the Tenant resource and the compiler write it."""
    return OutboundPolicy(
        country=row.outbound_country,
        international=row.outbound_international,
        premium=row.outbound_premium,
        max_concurrent=row.outbound_max_concurrent,
        max_minutes_per_day=row.outbound_max_minutes_per_day,
        default_caller_id=row.outbound_default_caller_id,
    )


def outbound_out(row: TenantRow) -> OutboundPolicyOut:
    return OutboundPolicyOut(
        country=row.outbound_country,
        international=row.outbound_international,
        premium=row.outbound_premium,
        max_concurrent=row.outbound_max_concurrent,
        max_minutes_per_day=row.outbound_max_minutes_per_day,
        default_caller_id=row.outbound_default_caller_id,
    )


def set_outbound(row: TenantRow, policy: OutboundPolicyIn | OutboundPolicy) -> None:
    row.outbound_country = policy.country
    row.outbound_international = policy.international
    row.outbound_premium = policy.premium
    row.outbound_max_concurrent = policy.max_concurrent
    row.outbound_max_minutes_per_day = policy.max_minutes_per_day
    row.outbound_default_caller_id = policy.default_caller_id


def patch_outbound(row: TenantRow, patch: OutboundPolicyPatch) -> None:
    given = patch.model_fields_set
    for name in ("country", "international", "premium", "max_concurrent", "max_minutes_per_day"):
        value = getattr(patch, name)
        if name in given and value is not None:
            setattr(row, f"outbound_{name}", value)
    if "default_caller_id" in given:
        row.outbound_default_caller_id = patch.default_caller_id


async def tenant_numbers(store: NumberStore, tenant_id: str) -> set[str]:
    """The E.164 numbers the tenant holds (503 when the number store cannot be read)."""
    return {number.spec.number for number in await store_read(store.list_numbers(tenant_id))}


async def require_own_number(
    store: NumberStore, tenant_id: str, number: str | None, field: str
) -> None:
    """A caller ID must be one of the tenant's numbers (422 naming ``field``): a carrier
    refuses, or worse passes on, a number its customer does not hold."""
    if number is None:
        return
    if number not in await tenant_numbers(store, tenant_id):
        raise InvalidInput.at(field, f"{number} is not one of the tenant's numbers")
