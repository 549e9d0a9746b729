"""Request and response documents of /v1/platform: tenants and the number pool."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field

from vpbx_common.manifests import DnsLabel, Email, RecordingPolicy, SipDomain

from ..outbound.schemas import OutboundPolicyIn, OutboundPolicyOut, OutboundPolicyPatch
from ..schema_base import StrictInput
from ..targets import E164

Limit = Annotated[int, Field(ge=0, le=100_000, description="0 = unlimited")]
DisplayName = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$", examples=["Acme Logistics"])
]


def _unique(cities: list[str]) -> list[str]:
    repeated = sorted({city for city in cities if cities.count(city) > 1})
    if repeated:
        raise ValueError(f"city listed more than once: {', '.join(repeated)}")
    return cities


Cities = Annotated[
    list[DnsLabel],
    Field(
        min_length=1,
        max_length=64,
        description="cities where the tenant gets a media node; the first is its default",
        examples=[["msk", "ekb"]],
    ),
    AfterValidator(_unique),
]


OUTBOUND_DOC = (
    "what the tenant's people may dial out (the Tenant's spec.outbound): calls abroad and "
    "to premium-rate numbers are off until allowed, and the caps bound what a stolen SIP "
    "password can cost; `default_caller_id` must be one of the tenant's numbers"
)

RECORDING_POLICY_DOC = (
    "whether the tenant's calls are recorded: `off`, `all` or `on-demand` (the Tenant's "
    "spec.recording.policy); a number's or a user's own `record` setting wins over it"
)


class PlanLimits(StrictInput):
    seats: Limit = Field(default=0, description="users (extensions); 0 = unlimited")
    numbers: Limit = Field(default=0, description="phone numbers; 0 = unlimited")
    concurrent_calls: Limit = Field(default=0, description="calls at once; 0 = unlimited")


class PlanLimitsUpdate(StrictInput):
    seats: Limit | None = None
    numbers: Limit | None = None
    concurrent_calls: Limit | None = None


class FirstAdmin(StrictInput):
    """The tenant's first tenant-admin user, who then manages everything else."""

    email: Email = Field(examples=["admin@acme.example"])
    password: str = Field(min_length=10, max_length=256, examples=["a long passphrase"])
    name: str = Field(default="Administrator", min_length=1, max_length=200)


class TenantCreate(StrictInput):
    id: DnsLabel = Field(
        description="the tenant's name (a DNS label); Numbers and node names contain it",
        examples=["acme"],
    )
    display_name: DisplayName
    sip_domain: SipDomain = Field(examples=["acme.vpbx.example"])
    cities: Cities
    plan: PlanLimits = Field(default_factory=PlanLimits)
    suspended: bool = False
    recording_policy: RecordingPolicy | None = Field(
        default=None,
        description=RECORDING_POLICY_DOC + "; left out: what an existing Tenant resource of "
        "that name says, else `off`",
    )
    outbound: OutboundPolicyIn | None = Field(
        default=None,
        description=OUTBOUND_DOC + "; left out: what an existing Tenant resource of that name "
        "says, else national calls only without caps",
    )
    admin: FirstAdmin | None = None


class TenantUpdate(StrictInput):
    """Fields left out are not changed. The SIP domain cannot change (every phone uses it)."""

    display_name: DisplayName | None = None
    plan: PlanLimitsUpdate | None = None
    cities: Cities | None = None
    suspended: bool | None = None
    recording_policy: RecordingPolicy | None = Field(default=None, description=RECORDING_POLICY_DOC)
    outbound: OutboundPolicyPatch | None = Field(
        default=None, description=OUTBOUND_DOC + "; fields left out keep their value"
    )


class TenantOut(BaseModel):
    id: str
    display_name: str
    sip_domain: str
    cities: list[str]
    plan: PlanLimits
    suspended: bool
    recording_policy: RecordingPolicy = Field(description=RECORDING_POLICY_DOC)
    outbound: OutboundPolicyOut = Field(description=OUTBOUND_DOC)
    revision: int
    created_at: dt.datetime


class PoolAdd(StrictInput):
    numbers: list[E164] = Field(min_length=1, max_length=1000, examples=[["+74950000001"]])
    city: DnsLabel = Field(examples=["msk"])


class PoolNumberOut(BaseModel):
    number: str = Field(examples=["+74950000001"])
    city: str
    available: bool
    tenant_id: str | None = Field(description="the tenant holding it; null while available")
    created_at: dt.datetime


class PoolAdded(BaseModel):
    items: list[PoolNumberOut]
