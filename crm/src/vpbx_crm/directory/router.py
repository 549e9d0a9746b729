"""/v1/directory/users: the tenant's people, for names of owners and assignees.

Served from the control API's directory the CRM already reads (cached for
``directory_cache_s``); members of the tenant only, and nothing more than a colleague may
see: no e-mail addresses.
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from pydantic import BaseModel, Field

from vpbx_control.auth.principal import Role
from vpbx_control.errors import error_responses

from ..deps import Context, TenantMember
from ..errors import IdentityUnavailable
from ..identity import IdentityUnavailableError

router = APIRouter(prefix="/v1/directory", tags=["directory"])


class DirectoryPerson(BaseModel):
    id: uuid.UUID
    name: str
    extension: str | None = Field(description="the short number that reaches them")
    role: Role


class People(BaseModel):
    items: list[DirectoryPerson] = Field(description="by name")


@router.get(
    "/users",
    response_model=People,
    summary="The tenant's people: id, name, extension and role",
    responses=error_responses(503),
)
async def list_people(caller: TenantMember, context: Context) -> People:
    try:
        directory = await context.identity.directory(caller.tenant)
    except IdentityUnavailableError as exc:
        raise IdentityUnavailable() from exc
    people = [
        DirectoryPerson(
            id=uuid.UUID(user.id), name=user.name, extension=user.extension, role=user.role
        )
        for user in directory.directory.users
    ]
    return People(items=sorted(people, key=lambda person: (person.name.casefold(), person.id)))
