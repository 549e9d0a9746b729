"""Who is calling: the authenticated principal and the access policy of each endpoint."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass


class Role(enum.StrEnum):
    TENANT_ADMIN = "tenant-admin"
    SUPERVISOR = "supervisor"
    AGENT = "agent"


class PrincipalKind(enum.StrEnum):
    PLATFORM_ADMIN = "platform-admin"
    API_KEY = "api-key"
    USER = "user"
    NODE = "node"  # a media node reading its compiled config


@dataclass(frozen=True)
class Principal:
    kind: PrincipalKind
    tenant_id: str | None = None
    role: Role | None = None
    user_id: uuid.UUID | None = None
    api_key_id: uuid.UUID | None = None

    @property
    def tenant(self) -> str:
        """The caller's tenant; only called behind a tenant policy, which guarantees one."""
        if self.tenant_id is None:
            raise RuntimeError("principal has no tenant")
        return self.tenant_id

    def is_user(self, user_id: uuid.UUID) -> bool:
        return self.kind is PrincipalKind.USER and self.user_id == user_id


ALL_ROLES = frozenset(Role)
MANAGERS = frozenset({Role.TENANT_ADMIN, Role.SUPERVISOR})
ADMINS = frozenset({Role.TENANT_ADMIN})


@dataclass(frozen=True)
class AccessPolicy:
    """Which principals may call an endpoint. Every /v1 route declares exactly one.

    ``roles`` are tenant roles (users and API keys); ``platform`` admits the
    platform admin token; ``node`` admits media nodes' service token.
    The route-enumerating test reads these to check every route.
    """

    roles: frozenset[Role] = frozenset()
    platform: bool = False
    node: bool = False
    public: bool = False

    def intersect(self, other: AccessPolicy) -> AccessPolicy:
        """Who passes both policies (a route whose dependencies each declare one)."""
        return AccessPolicy(
            roles=self.roles & other.roles,
            platform=self.platform and other.platform,
            node=self.node and other.node,
            public=self.public and other.public,
        )

    def admits(self, principal: Principal) -> bool:
        if principal.kind is PrincipalKind.PLATFORM_ADMIN:
            return self.platform
        if principal.kind is PrincipalKind.NODE:
            return self.node
        return principal.role in self.roles


TENANT_ADMIN = AccessPolicy(roles=ADMINS)
TENANT_MANAGER = AccessPolicy(roles=MANAGERS)
TENANT_MEMBER = AccessPolicy(roles=ALL_ROLES)
PLATFORM_ADMIN = AccessPolicy(platform=True)
MEDIA_NODE = AccessPolicy(node=True)
PUBLIC = AccessPolicy(public=True)
