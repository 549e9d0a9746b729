"""Where a tenant's numbers live: Number custom resources, behind one interface.

Two backends: the Kubernetes API (cluster mode; the operator turns Numbers into
routes) and a manifest file on disk (local mode; `vpbx up` reads it and the
store writes the routes itself).
"""

from __future__ import annotations

from typing import Protocol

from vpbx_common.manifests import Number, Tenant


class NumberStoreError(RuntimeError):
    """The backend could not be reached or refused the change."""


class NumberStore(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def list_numbers(self, tenant: str | None = None) -> list[Number]: ...

    async def get_number(self, name: str) -> Number | None: ...

    async def create_number(self, number: Number) -> Number: ...

    async def replace_number(self, number: Number) -> Number: ...

    async def delete_number(self, name: str) -> None: ...

    async def apply_tenant(self, tenant: Tenant) -> Tenant: ...
