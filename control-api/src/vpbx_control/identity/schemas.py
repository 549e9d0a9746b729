"""What the control API tells the platform's other services about people (service token only)."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ..auth.principal import PrincipalKind, Role


class IntrospectRequest(BaseModel):
    token: str = Field(
        min_length=1,
        max_length=4096,
        description="the bearer credential to check",
        examples=["vpbx_0123456789abcdef0123456789abcdef_secret"],
    )


class Identity(BaseModel):
    """Who a bearer credential stands for, as the control API's own routes would see it."""

    kind: PrincipalKind
    tenant_id: str | None
    role: Role | None
    user_id: str | None = Field(default=None, description="users only")
    api_key_id: str | None = Field(default=None, description="API keys only")
    name: str | None = Field(default=None, description="the user's name or the API key's name")


class DirectoryUser(BaseModel):
    id: str
    name: str
    email: str
    role: Role
    extension: str | None
    city: str | None
    presence: str
    wrap_up_s: int = Field(
        default=0, description="seconds after a call in which no queue call is offered"
    )


class DirectoryGroup(BaseModel):
    id: str
    name: str
    member_user_ids: list[str]


class DirectoryNumber(BaseModel):
    number: str = Field(description="E.164")
    label: str = Field(description="the ad-channel label, '' if none")


class Directory(BaseModel):
    """A tenant's people, groups and numbers, for the CRM (owners, assignees, source labels)."""

    tenant_id: str
    users: list[DirectoryUser]
    groups: list[DirectoryGroup]
    numbers: list[DirectoryNumber]
