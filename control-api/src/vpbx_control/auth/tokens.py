"""Short-lived signed access tokens for people (JWT, HS256)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt

from .principal import Role

_ISSUER = "vpbx-control"


@dataclass(frozen=True)
class AccessClaims:
    user_id: uuid.UUID
    tenant_id: str
    role: Role
    generation: int
    expires_at: int


class TokenError(ValueError):
    pass


class TokenSigner:
    def __init__(self, secret: bytes, ttl_s: int) -> None:
        self._secret = secret
        self.ttl_s = ttl_s

    def issue(self, user_id: uuid.UUID, tenant_id: str, role: Role, generation: int) -> str:
        now = int(time.time())
        claims = {
            "iss": _ISSUER,
            "sub": str(user_id),
            "tid": tenant_id,
            "role": role.value,
            "gen": generation,
            "iat": now,
            "exp": now + self.ttl_s,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm="HS256")

    def verify(self, token: str) -> AccessClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=["HS256"],
                issuer=_ISSUER,
                options={"require": ["exp", "sub", "tid", "role", "gen"]},
            )
            return AccessClaims(
                user_id=uuid.UUID(claims["sub"]),
                tenant_id=str(claims["tid"]),
                role=Role(claims["role"]),
                generation=int(claims["gen"]),
                expires_at=int(claims["exp"]),
            )
        except (jwt.PyJWTError, ValueError, KeyError, TypeError) as exc:
            raise TokenError(str(exc)) from exc
