"""Turns an ``Authorization: Bearer ...`` value into a Principal.

Four kinds of bearer credential share the header, told apart by shape:
the platform admin token and the media nodes' service token (compared in
constant time), tenant API keys (``vpbx_<key id>_<secret>``), and user access
tokens (JWT). Users are re-read on every request, so a role change, a
password change or a deletion takes effect before the token expires.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from ..apikeys.models import ApiKeyRow
from ..db.base import as_utc, utcnow
from ..users.models import UserRow
from .principal import Principal, PrincipalKind
from .tokens import TokenError, TokenSigner

API_KEY_PREFIX = "vpbx_"


@dataclass(frozen=True)
class ApiKeySecret:
    key_id: uuid.UUID
    secret: str

    def __str__(self) -> str:
        return f"{API_KEY_PREFIX}{self.key_id.hex}_{self.secret}"

    @classmethod
    def generate(cls) -> ApiKeySecret:
        return cls(key_id=uuid.uuid4(), secret=secrets.token_urlsafe(32))

    @classmethod
    def parse(cls, text: str) -> ApiKeySecret | None:
        if not text.startswith(API_KEY_PREFIX):
            return None
        key_hex, sep, secret = text[len(API_KEY_PREFIX) :].partition("_")
        if not sep or len(key_hex) != 32 or not secret:
            return None
        try:
            return cls(key_id=uuid.UUID(hex=key_hex), secret=secret)
        except ValueError:
            return None

    def secret_sha256(self) -> str:
        return hashlib.sha256(self.secret.encode()).hexdigest()


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


class CredentialVerifier:
    def __init__(self, *, platform_token: str, service_token: str, signer: TokenSigner) -> None:
        self._platform_token = platform_token
        self._service_token = service_token
        self.signer = signer

    async def principal(self, session: AsyncSession, bearer: str) -> Principal | None:
        if _same(bearer, self._platform_token):
            return Principal(PrincipalKind.PLATFORM_ADMIN)
        if _same(bearer, self._service_token):
            return Principal(PrincipalKind.NODE)
        api_key = ApiKeySecret.parse(bearer)
        if api_key is not None:
            return await self._api_key(session, api_key)
        return await self._user(session, bearer)

    async def _api_key(self, session: AsyncSession, key: ApiKeySecret) -> Principal | None:
        row = await session.get(ApiKeyRow, key.key_id)
        if row is None or row.revoked_at is not None:
            return None
        if not _same(key.secret_sha256(), row.secret_sha256):
            return None
        now = utcnow()
        # Written at most once a minute: a busy integration must not turn reads into writes.
        last = row.last_used_at
        if last is None or (now - as_utc(last)).total_seconds() > 60:
            row.last_used_at = now
            await session.commit()
        return Principal(
            PrincipalKind.API_KEY, tenant_id=row.tenant_id, role=row.role, api_key_id=row.id
        )

    async def _user(self, session: AsyncSession, token: str) -> Principal | None:
        try:
            claims = self.signer.verify(token)
        except TokenError:
            return None
        user = (
            await session.execute(
                select(UserRow).where(
                    UserRow.id == claims.user_id, UserRow.tenant_id == claims.tenant_id
                )
            )
        ).scalar_one_or_none()
        if user is None or user.token_generation != claims.generation:
            return None
        return Principal(
            PrincipalKind.USER, tenant_id=user.tenant_id, role=user.role, user_id=user.id
        )
