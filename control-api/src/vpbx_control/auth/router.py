"""Login for people, and "who am I" for any credential."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from sqlalchemy import func, select

from ..db.base import utcnow
from ..deps import Context, Public, Session, TenantMember
from ..errors import NotAuthenticated, TooManyRequests, error_responses
from ..users.models import UserRow
from .schemas import LoginRequest, TokenResponse, WhoAmI

router = APIRouter(prefix="/v1/auth", tags=["auth"])


@router.post(
    "/login",
    response_model=TokenResponse,
    summary="Exchange e-mail and password for a short-lived access token",
    responses=error_responses(401, 422, 429),
)
async def login(
    body: LoginRequest, request: Request, context: Context, session: Session, _: Public
) -> TokenResponse:
    email = body.email.strip().lower()
    address = request.client.host if request.client else "unknown"
    blocked = await context.login_limiter.check(email, address)
    if blocked is not None:
        raise TooManyRequests("too many failed logins; try again later", blocked.retry_after_s)
    user = (
        await session.execute(select(UserRow).where(func.lower(UserRow.email) == email))
    ).scalar_one_or_none()
    # Verified even for unknown e-mails (against a dummy hash): same time either way.
    # argon2 releases the GIL: verifying in a thread keeps other requests moving.
    verified = await asyncio.to_thread(
        context.passwords.verify, user.password_hash if user else None, body.password
    )
    if not verified:
        await context.login_limiter.failed(email, address)
        raise NotAuthenticated("wrong e-mail or password")
    assert user is not None
    assert user.password_hash is not None
    await context.login_limiter.succeeded(email)
    if context.passwords.needs_rehash(user.password_hash):
        user.password_hash = context.passwords.hash(body.password)
    user.last_login_at = utcnow()
    await session.commit()
    token = context.credentials.signer.issue(
        user.id, user.tenant_id, user.role, user.token_generation
    )
    return TokenResponse(access_token=token, expires_in=context.credentials.signer.ttl_s)


@router.get("/me", response_model=WhoAmI, summary="The caller's identity and role")
async def me(principal: TenantMember) -> WhoAmI:
    return WhoAmI(
        kind=principal.kind,
        tenant_id=principal.tenant_id,
        role=principal.role,
        user_id=principal.user_id,
    )
