from __future__ import annotations

import uuid

from pydantic import BaseModel, Field

from .principal import PrincipalKind, Role


class LoginRequest(BaseModel):
    email: str = Field(min_length=3, max_length=254, examples=["admin@acme.vpbx.local"])
    password: str = Field(min_length=1, max_length=1024, examples=["acme-admin-secret"])


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = Field(default="bearer", examples=["bearer"])
    expires_in: int = Field(description="seconds the token stays valid", examples=[900])


class WhoAmI(BaseModel):
    kind: PrincipalKind
    tenant_id: str | None
    role: Role | None
    user_id: uuid.UUID | None
