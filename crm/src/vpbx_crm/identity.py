"""Who is calling the CRM, and who is in a tenant: both asked of the control API.

The control API is the product's one login. A bearer credential (a user's access token
or a tenant API key) is sent to ``POST /internal/v1/identity`` and the answer trusted for
``identity_cache_s``; a tenant's users, groups and numbers come from
``GET /internal/v1/directory/{tenant}``, reused for ``directory_cache_s`` and read again
at once when the CRM meets an id it does not hold (a user created a moment ago).
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, ValidationError

from vpbx_control.auth.principal import Principal, PrincipalKind, Role
from vpbx_control.identity.schemas import Directory, DirectoryUser, Identity

logger = logging.getLogger(__name__)

_MAX_CACHED_CREDENTIALS = 10_000

ModelT = TypeVar("ModelT", bound=BaseModel)


class IdentityUnavailableError(RuntimeError):
    """The control API could not be asked (down, slow, or answering nonsense)."""


@dataclass(frozen=True)
class Caller:
    """An authenticated caller of the CRM: a principal of the control API, with a name."""

    principal: Principal
    name: str = ""

    @property
    def tenant(self) -> str:
        return self.principal.tenant

    @property
    def role(self) -> Role | None:
        return self.principal.role

    @property
    def user_id(self) -> uuid.UUID | None:
        return self.principal.user_id


@dataclass
class TenantDirectory:
    """A tenant's people, groups and numbers as the control API listed them."""

    directory: Directory
    users: dict[str, DirectoryUser] = field(init=False)
    by_extension: dict[str, DirectoryUser] = field(init=False)
    labels: dict[str, str] = field(init=False)  # E.164 number -> its ad-channel label

    def __post_init__(self) -> None:
        self.users = {user.id: user for user in self.directory.users}
        self.by_extension = {
            user.extension: user for user in self.directory.users if user.extension
        }
        self.labels = {number.number: number.label for number in self.directory.numbers}

    def groups_of(self, user_id: str) -> list[str]:
        return [group.id for group in self.directory.groups if user_id in group.member_user_ids]


def _credential_key(token: str) -> str:
    # Secrets are never kept as dictionary keys: a heap dump must not show them.
    return hashlib.sha256(token.encode()).hexdigest()


class IdentityClient:
    """Asks the control API; one connection pool for the CRM's lifetime."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        service_token: str,
        *,
        identity_cache_s: float = 5.0,
        directory_cache_s: float = 10.0,
    ) -> None:
        self._client = client
        self._headers = {"Authorization": f"Bearer {service_token}"}
        self._identity_cache_s = identity_cache_s
        self._directory_cache_s = directory_cache_s
        self._callers: dict[str, tuple[float, Caller | None]] = {}
        self._directories: dict[str, tuple[float, TenantDirectory]] = {}

    async def aclose(self) -> None:
        await self._client.aclose()

    async def caller(self, token: str) -> Caller | None:
        """The caller a bearer credential stands for; None when it is not valid now."""
        key = _credential_key(token)
        now = time.monotonic()
        cached = self._callers.get(key)
        if cached is not None and now - cached[0] < self._identity_cache_s:
            return cached[1]
        response = await self._request("POST", "/internal/v1/identity", json={"token": token})
        caller: Caller | None = None
        if response.status_code == 200:
            identity = self._parse(Identity, response)
            caller = Caller(
                Principal(
                    kind=identity.kind,
                    tenant_id=identity.tenant_id,
                    role=identity.role,
                    user_id=uuid.UUID(identity.user_id) if identity.user_id else None,
                    api_key_id=uuid.UUID(identity.api_key_id) if identity.api_key_id else None,
                ),
                name=identity.name or "",
            )
            if caller.principal.kind not in (PrincipalKind.USER, PrincipalKind.API_KEY):
                caller = None  # the platform admin has no tenant to see in a CRM
        elif response.status_code not in (401, 422):
            # 422: a credential the control API will not even read (too long, empty).
            raise IdentityUnavailableError(f"identity check answered {response.status_code}")
        if len(self._callers) >= _MAX_CACHED_CREDENTIALS:
            self._callers.clear()
        self._callers[key] = (now, caller)
        return caller

    async def directory(self, tenant: str, *, fresh: bool = False) -> TenantDirectory:
        now = time.monotonic()
        cached = self._directories.get(tenant)
        if not fresh and cached is not None and now - cached[0] < self._directory_cache_s:
            return cached[1]
        response = await self._request("GET", f"/internal/v1/directory/{tenant}")
        if response.status_code == 404:
            directory = TenantDirectory(
                Directory(tenant_id=tenant, users=[], groups=[], numbers=[])
            )
        elif response.status_code == 200:
            directory = TenantDirectory(self._parse(Directory, response))
        else:
            raise IdentityUnavailableError(f"directory answered {response.status_code}")
        self._directories[tenant] = (now, directory)
        return directory

    async def user(self, tenant: str, user_id: str) -> DirectoryUser | None:
        """The tenant's user with this id, reading the directory again once if needed."""
        directory = await self.directory(tenant)
        if user_id not in directory.users:
            directory = await self.directory(tenant, fresh=True)
        return directory.users.get(user_id)

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._client.request(method, path, headers=self._headers, **kwargs)
        except httpx.HTTPError as exc:
            raise IdentityUnavailableError(f"control API unreachable: {exc!r}") from exc

    @staticmethod
    def _parse(model: type[ModelT], response: httpx.Response) -> ModelT:
        try:
            return model.model_validate_json(response.content)
        except ValidationError as exc:
            raise IdentityUnavailableError(
                f"control API answered an unexpected body: {exc}"
            ) from exc
