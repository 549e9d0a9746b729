"""Documents of the outbound policy: the platform API writes it, a tenant admin reads it."""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, JsonValue

from ..schema_base import StrictInput
from ..targets import E164

Country = Annotated[
    str,
    Field(
        pattern=r"^[A-Z]{2}$",
        description="ISO 3166 country whose national forms the tenant's people dial "
        "(8 916 123-45-67, 916...)",
        examples=["RU"],
    ),
]
International = Annotated[bool, Field(description="calls to other countries allowed")]
Premium = Annotated[
    bool, Field(description="calls to premium-rate and shared-cost numbers allowed")
]
MaxConcurrent = Annotated[
    int,
    Field(ge=0, le=100_000, description="outbound calls at once; 0 = the plan's concurrent_calls"),
]
MaxMinutesPerDay = Annotated[
    int,
    Field(ge=0, le=10_000_000, description="outbound minutes per day (UTC); 0 = no cap"),
]
DEFAULT_CALLER_ID_DOC = (
    "one of the tenant's numbers, shown when none of them is in or near the callee's "
    "region; null: the tenant's first number"
)

EXAMPLE: dict[str, JsonValue] = {
    "country": "RU",
    "international": False,
    "premium": False,
    "max_concurrent": 10,
    "max_minutes_per_day": 3000,
    "default_caller_id": "+74951234567",
}


class OutboundPolicyIn(StrictInput):
    """The whole policy; fields left out take the Tenant resource's defaults."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    country: Country = "RU"
    international: International = False
    premium: Premium = False
    max_concurrent: MaxConcurrent = 0
    max_minutes_per_day: MaxMinutesPerDay = 0
    default_caller_id: E164 | None = Field(default=None, description=DEFAULT_CALLER_ID_DOC)


class OutboundPolicyPatch(StrictInput):
    """A partial change: fields left out keep their value; ``default_caller_id: null``
    goes back to the tenant's first number."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"international": True}]}
    )

    country: Country | None = None
    international: International | None = None
    premium: Premium | None = None
    max_concurrent: MaxConcurrent | None = None
    max_minutes_per_day: MaxMinutesPerDay | None = None
    default_caller_id: E164 | None = Field(default=None, description=DEFAULT_CALLER_ID_DOC)


class OutboundPolicyOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [EXAMPLE]})

    country: Country
    international: International
    premium: Premium
    max_concurrent: MaxConcurrent
    max_minutes_per_day: MaxMinutesPerDay
    default_caller_id: str | None = Field(description=DEFAULT_CALLER_ID_DOC)
