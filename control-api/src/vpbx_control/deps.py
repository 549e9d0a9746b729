"""FastAPI dependencies, as ``Annotated`` aliases used by every router."""

# No `from __future__ import annotations`: FastAPI reads the annotations of
# Authorize.__call__ at runtime, and an instance has no module globals to resolve strings.

import functools
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from .audio.serve import AudioFiles
from .auth.principal import (
    MEDIA_NODE,
    PLATFORM_ADMIN,
    PUBLIC,
    TENANT_ADMIN,
    TENANT_MANAGER,
    TENANT_MEMBER,
    AccessPolicy,
    Principal,
)
from .context import AppContext
from .errors import Forbidden, NotAuthenticated
from .paging import PageParams, page_params


async def get_context(request: Request) -> AppContext:
    # async: FastAPI runs a plain function dependency in a worker thread, a hop that cost
    # about a third of a millisecond of CPU per request.
    context: AppContext = request.app.state.context
    return context


Context = Annotated[AppContext, Depends(get_context)]


async def get_session(context: Context) -> AsyncIterator[AsyncSession]:
    async with context.database.session() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]


def get_audio_files(context: Context) -> AudioFiles:
    return AudioFiles(context.objects, context.audio_decodes)


# Serves stored audio (recordings, voice messages) from the context's object store.
Audio = Annotated[AudioFiles, Depends(get_audio_files)]

_bearer = HTTPBearer(auto_error=False, description="user access token, API key or service token")


async def current_principal(
    request: Request,
    context: Context,
    session: Session,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise NotAuthenticated()
    principal = await context.credentials.principal(session, credentials.credentials)
    if principal is None:
        raise NotAuthenticated()
    request.state.principal = principal
    return principal


class Authorize:
    """The dependency that enforces one AccessPolicy; the route test finds it by type."""

    def __init__(self, policy: AccessPolicy) -> None:
        self.policy = policy

    async def __call__(
        self, principal: Annotated[Principal, Depends(current_principal)]
    ) -> Principal:
        if not self.policy.admits(principal):
            raise Forbidden("this credential may not call this endpoint")
        return principal


class AllowAnyone:
    """Marks a public route (login, health) so the route test knows it is deliberate."""

    policy = PUBLIC

    def __call__(self) -> None:
        return None


TenantAdmin = Annotated[Principal, Depends(Authorize(TENANT_ADMIN))]
TenantManager = Annotated[Principal, Depends(Authorize(TENANT_MANAGER))]
TenantMember = Annotated[Principal, Depends(Authorize(TENANT_MEMBER))]
PlatformAdmin = Annotated[Principal, Depends(Authorize(PLATFORM_ADMIN))]
MediaNode = Annotated[Principal, Depends(Authorize(MEDIA_NODE))]
Public = Annotated[None, Depends(AllowAnyone())]
Paging = Annotated[PageParams, Depends(page_params)]


def _declared(dependant: Dependant) -> Iterator[AccessPolicy]:
    for sub in dependant.dependencies:
        # Any dependency carrying a policy: Authorize and AllowAnyone here, the CRM's own.
        policy = getattr(sub.call, "policy", None)
        if isinstance(policy, AccessPolicy):
            yield policy
        yield from _declared(sub)


def route_policy(route: APIRoute) -> AccessPolicy | None:
    """What a route admits: every policy on its dependency tree must admit the caller.

    None when the route declares no policy at all (the route test refuses that). The CRM's
    routes are read by the same function.
    """
    policies = list(_declared(route.dependant))
    if not policies:
        return None
    return functools.reduce(AccessPolicy.intersect, policies)
