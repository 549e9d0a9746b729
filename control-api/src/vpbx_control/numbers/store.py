"""Where a tenant's numbers live: Number custom resources, behind one interface.

Two backends: the Kubernetes API (cluster mode; the operator turns Numbers into
routes) and a manifest file on disk (local mode; `vpbx up` reads it and the
store writes the routes itself).

Versions: every Number a store returns carries ``metadata.resource_version``
(the API server's resourceVersion, or a hash of the manifest in the local
store). ``replace_number`` with a version set refuses to overwrite a newer
object (NumberVersionConflictError), so two admins cannot lose each other's change.
"""

from __future__ import annotations

from typing import Protocol

from vpbx_common.manifests import Number, Tenant

# Labels the control API puts on the resources it writes.
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY = "vpbx-control-api"
TENANT_LABEL = "vpbx.io/tenant"


class NumberStoreError(RuntimeError):
    """The backend could not be reached or refused the change."""


class NumberExistsError(NumberStoreError):
    """A Number (or another object) of that name already exists."""


class NumberVersionConflictError(NumberStoreError):
    """The object changed since the version the caller read."""


class NumberStore(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def list_numbers(self, tenant: str | None = None) -> list[Number]: ...

    async def get_number(self, name: str) -> Number | None: ...

    async def create_number(self, number: Number) -> Number: ...

    async def replace_number(self, number: Number) -> Number: ...

    async def delete_number(self, name: str) -> None: ...

    async def get_tenant(self, name: str) -> Tenant | None: ...

    async def apply_tenant(self, tenant: Tenant) -> Tenant: ...

    async def delete_tenant(self, name: str) -> None: ...
