"""Business rules of a tenant's own trunks.

- The URI is ``sip:HOST[:PORT][;transport=udp|tcp]``; outside local mode HOST must be
  on the Internet (the outbound policy of vpbx_common.outbound, as for webhooks): it is
  resolved when the trunk is saved and every address checked. The nodes check again
  when they send (the policy is checked and pinned at send time).
- A registering trunk needs a username and a password. The password is kept in clear
  for the nodes (they answer the carrier's digest challenges), is never returned and
  never logged.
- Every change is a config change: the tenant's nodes reload. It also rewrites where
  the tenant's carriers call from in the edge routing table (carriers.py): the edge
  takes calls to the tenant's numbers from its trunks' ``allowed_addresses``, or the
  addresses a trunk's host resolves to when it has none.
"""

from __future__ import annotations

import logging
import socket
import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.outbound import OutboundRefusedError
from vpbx_common.trunks import TrunkTransport, parse_trunk_uri

from ..auth.principal import Principal
from ..context import AppContext
from ..errors import FieldProblem, InvalidInput, NotFound
from ..paging import PageParams, check_if_match
from ..repository import TenantWork
from ..tenants.models import TenantRow
from .errors import TrunkLimitReached, TrunkNameTaken
from .models import TrunkRow
from .repository import TrunkRepository
from .schemas import Registration, TrunkCreate, TrunkUpdate
from .status import TrunkStatuses, registration

logger = logging.getLogger(__name__)

MAX_TRUNKS_PER_TENANT = 20
_CREDENTIALS_NEEDED = "a registering trunk needs a username and a password"


class TrunkService:
    def __init__(self, session: AsyncSession, principal: Principal, context: AppContext) -> None:
        self.session = session
        self.tenant_id = principal.tenant
        self.outbound = context.outbound
        self.repository = TrunkRepository(session, principal.tenant)
        self.work = TenantWork(session, principal.tenant, context.publisher)
        self.statuses = TrunkStatuses(context.redis, principal.tenant)

    # ---- reading

    async def page(self, params: PageParams) -> tuple[list[TrunkRow], int]:
        return await self.repository.page(self.repository.in_order(), params)

    async def get(self, trunk_id: uuid.UUID) -> TrunkRow:
        return await self.repository.get(trunk_id)

    async def registrations(self, rows: list[TrunkRow]) -> list[Registration]:
        """Each trunk's registration as the tenant's nodes report it."""
        tenant = await self.session.get(TenantRow, self.tenant_id)
        if tenant is None:
            raise NotFound("tenant not found")
        cities = [str(city) for city in tenant.cities or ()]
        registrations = []
        for row in rows:
            # Reports are read only for registering trunks; the rest are not-registering.
            reports = await self.statuses.reports(str(row.id)) if row.registers else {}
            registrations.append(registration(row, cities, reports))
        return registrations

    # ---- writing

    async def create(self, body: TrunkCreate) -> TrunkRow:
        if await self.repository.count() >= MAX_TRUNKS_PER_TENANT:
            raise TrunkLimitReached(MAX_TRUNKS_PER_TENANT)
        if await self.repository.name_taken(body.name):
            raise TrunkNameTaken(body.name)
        password = body.password.get_secret_value() if body.password is not None else None
        _check_credentials(body.registers, body.username, password)
        await self._check_host(body.uri)
        row = self.repository.add(
            TrunkRow(
                name=body.name,
                uri=body.uri,
                registers=body.registers,
                username=body.username,
                password=password,
                allowed_addresses=list(body.allowed_addresses),
                priority=body.priority,
                passes_caller_id=body.passes_caller_id,
                revision=1,
            )
        )
        await self.work.commit(carriers=True)
        logger.info(
            "tenant=%s trunk %s (%s) created: %s, register=%s",
            self.tenant_id,
            row.name,
            row.id,
            row.uri,
            row.registers,
        )
        return row

    async def update(
        self, trunk_id: uuid.UUID, body: TrunkUpdate, if_match: str | None
    ) -> TrunkRow:
        row = await self.repository.get(trunk_id)
        check_if_match(if_match, row.etag())
        given = body.model_fields_set
        if body.name is not None and body.name != row.name:
            if await self.repository.name_taken(body.name):
                raise TrunkNameTaken(body.name)
            row.name = body.name
        if body.uri is not None and body.uri != row.uri:
            await self._check_host(body.uri)
            row.uri = body.uri
        if body.registers is not None:
            row.registers = body.registers
        if "username" in given:
            row.username = body.username
        if "password" in given:  # left out: unchanged
            row.password = body.password.get_secret_value() if body.password else None
        if body.allowed_addresses is not None:
            row.allowed_addresses = list(body.allowed_addresses)
        if body.priority is not None:
            row.priority = body.priority
        if body.passes_caller_id is not None:
            row.passes_caller_id = body.passes_caller_id
        _check_credentials(row.registers, row.username, row.password)
        self.repository.touch(row)
        await self.work.commit(carriers=True)
        logger.info(
            "tenant=%s trunk %s (%s) changed: %s",
            self.tenant_id,
            row.name,
            row.id,
            ", ".join(sorted(given)) or "nothing",
        )
        return row

    async def delete(self, trunk_id: uuid.UUID, if_match: str | None) -> None:
        row = await self.repository.get(trunk_id)
        check_if_match(if_match, row.etag())
        await self.repository.delete(row)
        await self.work.commit(carriers=True)
        await self.statuses.forget(str(row.id))
        logger.info("tenant=%s trunk %s (%s) deleted", self.tenant_id, row.name, row.id)

    # ---- checks

    async def _check_host(self, uri: str) -> None:
        """Outside local mode the carrier must be on the Internet, checked now by name and
        by every address the name resolves to (422 naming ``body.uri``)."""
        address = parse_trunk_uri(uri)
        problem = self.outbound.host_problem(address.host, "the trunk's host")
        if problem is not None:
            raise InvalidInput.at("body.uri", problem)
        if self.outbound.allow_private:
            return  # local mode: the carrier (or a test peer) may run next door
        kind = socket.SOCK_DGRAM if address.transport is TrunkTransport.UDP else socket.SOCK_STREAM
        try:
            await self.outbound.public_addresses(address.host, address.port, kind=kind)
        except OutboundRefusedError as exc:
            raise InvalidInput.at("body.uri", f"the trunk's host: {exc}") from exc


def _check_credentials(registers: bool, username: str | None, password: str | None) -> None:
    if not registers:
        return
    missing = [
        FieldProblem(field=f"body.{name}", message=_CREDENTIALS_NEEDED)
        for name, value in (("username", username), ("password", password))
        if not value
    ]
    if missing:
        raise InvalidInput(_CREDENTIALS_NEEDED, details=missing)
