"""Documents of /v1/route-plans/decision-secret. The secret appears only in DecisionSecretIssued."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, Field


class DecisionSecretStatus(BaseModel):
    configured: bool = Field(
        description="whether the tenant has a decision secret (HTTP decisions are signed)"
    )
    created_at: dt.datetime | None = Field(
        description="when the current secret was made (created or rotated); null: none yet"
    )


class DecisionSecretIssued(BaseModel):
    """Only in the answer to a rotation: the secret is never shown again."""

    secret: str = Field(
        description="signs every HTTP decision request (X-Vpbx-Signature); store it now",
        examples=["Jq0Wc1m3cW2vUeT3n0b4r3Zb3kN5l7x9qY8pR2sT6uV"],
    )
    created_at: dt.datetime
