"""/internal/v1/identity and /internal/v1/directory: the control API as the product's one login.

The CRM (and later other services) accept the same bearer credentials as the control API:
they ask here who a credential stands for, and read the tenant's people, groups and
numbers (owners of clients, assignees of tasks, the ad-channel label of a dialled
number). Both need the platform's service token.
"""

from __future__ import annotations

from fastapi import APIRouter, Path
from sqlalchemy import select

from vpbx_common.manifests import DNS_LABEL

from ..apikeys.models import ApiKeyRow
from ..auth.principal import PrincipalKind
from ..deps import Context, MediaNode, Session
from ..errors import NotAuthenticated, NotFound, error_responses
from ..groups.models import GroupMemberRow, GroupRow
from ..tenants.models import TenantRow
from ..users.models import UserRow
from ..users.schemas import UserSettings
from .schemas import (
    Directory,
    DirectoryGroup,
    DirectoryNumber,
    DirectoryUser,
    Identity,
    IntrospectRequest,
)

router = APIRouter(prefix="/internal/v1", tags=["internal"])


@router.post(
    "/identity",
    response_model=Identity,
    summary="Who a bearer credential stands for",
    responses=error_responses(401, 403),
)
async def introspect(
    body: IntrospectRequest, _node: MediaNode, context: Context, session: Session
) -> Identity:
    """401 when the credential is not valid now (unknown, expired, revoked, password changed)."""
    principal = await context.credentials.principal(session, body.token)
    if principal is None:
        raise NotAuthenticated("the credential is not valid")
    name: str | None = None
    if principal.kind is PrincipalKind.USER and principal.user_id is not None:
        user = await session.get(UserRow, principal.user_id)
        name = user.name if user is not None else None
    elif principal.kind is PrincipalKind.API_KEY and principal.api_key_id is not None:
        key = await session.get(ApiKeyRow, principal.api_key_id)
        name = key.name if key is not None else None
    return Identity(
        kind=principal.kind,
        tenant_id=principal.tenant_id,
        role=principal.role,
        user_id=str(principal.user_id) if principal.user_id else None,
        api_key_id=str(principal.api_key_id) if principal.api_key_id else None,
        name=name,
    )


@router.get(
    "/directory/{tenant}",
    response_model=Directory,
    summary="A tenant's users, groups and numbers",
    responses=error_responses(401, 403, 404),
)
async def directory(
    _node: MediaNode,
    context: Context,
    session: Session,
    tenant: str = Path(pattern=DNS_LABEL.pattern, max_length=63),
) -> Directory:
    if await session.get(TenantRow, tenant) is None:
        raise NotFound("no such tenant")
    users = (
        await session.execute(
            select(UserRow).where(UserRow.tenant_id == tenant).order_by(UserRow.name)
        )
    ).scalars()
    groups = list(
        (
            await session.execute(
                select(GroupRow).where(GroupRow.tenant_id == tenant).order_by(GroupRow.name)
            )
        ).scalars()
    )
    members: dict[str, list[str]] = {str(group.id): [] for group in groups}
    rows = await session.execute(
        select(GroupMemberRow.group_id, GroupMemberRow.user_id)
        .where(GroupMemberRow.group_id.in_([group.id for group in groups]))
        .order_by(GroupMemberRow.position)
    )
    for group_id, user_id in rows:
        if user_id is not None:
            members[str(group_id)].append(str(user_id))
    numbers = await context.numbers.list_numbers(tenant)
    return Directory(
        tenant_id=tenant,
        users=[
            DirectoryUser(
                id=str(user.id),
                name=user.name,
                email=user.email,
                role=user.role,
                extension=user.extension,
                city=user.city,
                presence=str(user.presence),
                wrap_up_s=UserSettings.stored(user.settings).wrap_up_s,
            )
            for user in users
        ],
        groups=[
            DirectoryGroup(
                id=str(group.id), name=group.name, member_user_ids=members[str(group.id)]
            )
            for group in groups
        ],
        numbers=[
            DirectoryNumber(number=number.spec.number, label=number.spec.label or "")
            for number in numbers
        ],
    )
