"""FastAPI dependencies of the CRM, as ``Annotated`` aliases used by every router.

The access policies are the control API's (one login, the same roles); its ``route_policy``
reads the CRM's routes too.
"""

# No `from __future__ import annotations`: FastAPI reads the annotations of
# Authorize.__call__ at runtime.

import hmac
import logging
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_control.auth.principal import (
    MEDIA_NODE,
    TENANT_ADMIN,
    TENANT_MANAGER,
    TENANT_MEMBER,
    AccessPolicy,
    Principal,
    PrincipalKind,
)
from vpbx_control.deps import AllowAnyone
from vpbx_control.paging import PageParams, page_params

from .context import CrmContext
from .errors import Forbidden, IdentityUnavailable, NotAuthenticated
from .identity import Caller, IdentityUnavailableError

logger = logging.getLogger(__name__)


async def get_context(request: Request) -> CrmContext:
    # async: FastAPI runs a plain function dependency in a worker thread, a hop that cost
    # about a third of a millisecond of CPU per request.
    context: CrmContext = request.app.state.context
    return context


Context = Annotated[CrmContext, Depends(get_context)]


async def get_session(context: Context) -> AsyncIterator[AsyncSession]:
    async with context.database.session() as session:
        yield session


Session = Annotated[AsyncSession, Depends(get_session)]

_bearer = HTTPBearer(auto_error=False, description="the control API's user access token or API key")


async def current_caller(
    request: Request,
    context: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None:
        raise NotAuthenticated()
    token = credentials.credentials
    service_token = context.settings.service_token.get_secret_value()
    if hmac.compare_digest(token.encode(), service_token.encode()):
        caller = Caller(Principal(PrincipalKind.NODE))
    else:
        try:
            found = await context.identity.caller(token)
        except IdentityUnavailableError as exc:
            logger.warning("cannot check a credential with the control API: %s", exc)
            raise IdentityUnavailable() from exc
        if found is None:
            raise NotAuthenticated()
        caller = found
    request.state.principal = caller.principal
    return caller


class Authorize:
    """The dependency that enforces one AccessPolicy; the route test finds it by type."""

    def __init__(self, policy: AccessPolicy) -> None:
        self.policy = policy

    async def __call__(self, caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
        if not self.policy.admits(caller.principal):
            raise Forbidden("this credential may not call this endpoint")
        return caller


TenantAdmin = Annotated[Caller, Depends(Authorize(TENANT_ADMIN))]
TenantManager = Annotated[Caller, Depends(Authorize(TENANT_MANAGER))]
TenantMember = Annotated[Caller, Depends(Authorize(TENANT_MEMBER))]
MediaNode = Annotated[Caller, Depends(Authorize(MEDIA_NODE))]
Public = Annotated[None, Depends(AllowAnyone())]
Paging = Annotated[PageParams, Depends(page_params)]
