"""Password hashing (argon2id) with a constant-time path for unknown accounts."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

if TYPE_CHECKING:
    from ..settings import ControlSettings


class Passwords:
    def __init__(self, *, time_cost: int = 2, memory_cost: int = 19 * 1024) -> None:
        # OWASP's argon2id floor: 19 MiB, 2 iterations, 1 lane.
        self._hasher = PasswordHasher(time_cost=time_cost, memory_cost=memory_cost, parallelism=1)
        # Verified against when the account does not exist, so timing does not tell.
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))

    @classmethod
    def from_settings(cls, settings: ControlSettings) -> Passwords:
        """The hasher of VPBX_PASSWORD_HASH_TIME_COST and VPBX_PASSWORD_HASH_MEMORY_KIB."""
        return cls(
            time_cost=settings.password_hash_time_cost,
            memory_cost=settings.password_hash_memory_kib,
        )

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored_hash: str | None, password: str) -> bool:
        try:
            return self._hasher.verify(stored_hash or self._dummy, password) and bool(stored_hash)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)
