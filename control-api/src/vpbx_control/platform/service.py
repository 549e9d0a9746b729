"""The platform operator's work: tenants (database row + Tenant resource) and the number pool.

A tenant lives twice: as a TenantRow (plan limits the API enforces, the
tenant's users hang off it) and as the Tenant custom resource the operator
(or `vpbx up`) turns into media nodes. Every change writes the row, then the
resource through the number store, then commits; a store failure rolls the
row back, so the two never disagree for long.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.e164 import InvalidPhoneNumber, normalize_e164
from vpbx_common.manifests import PLATFORM_API_VERSION, OutboundPolicy, RecordingPolicy, Tenant

from ..auth.passwords import Passwords
from ..auth.principal import Role
from ..errors import Conflict, InvalidInput, NotFound
from ..nodeconfig.publisher import ConfigPublisher
from ..numbers.errors import NumberStoreUnavailable
from ..numbers.models import PoolNumberRow
from ..numbers.pool import PoolRepository
from ..numbers.service import store_read
from ..numbers.store import MANAGED_BY, MANAGED_BY_LABEL, NumberStore, NumberStoreError
from ..outbound.service import outbound_policy, patch_outbound, require_own_number, set_outbound
from ..paging import PageParams, check_if_match, fetch_page, revision_etag
from ..repository import TenantWork
from ..tenants.models import TenantRow
from ..users.models import UserRow
from .errors import (
    CityInUse,
    EmailTaken,
    NumberInPool,
    NumberInUse,
    SipDomainTaken,
    TenantExists,
    TenantHasNumbers,
)
from .schemas import PoolAdd, TenantCreate, TenantUpdate

logger = logging.getLogger(__name__)


def tenant_etag(row: TenantRow) -> str:
    return revision_etag(row.revision)


def tenant_manifest(row: TenantRow, existing: Tenant | None) -> Tenant:
    """The Tenant resource for a row; fields this API does not manage (a city's
    replicas and resources, the recording storage quota) are kept from the resource as it
    is. The recording and outbound policies are the row's: the API writes them into the
    resource."""
    placements: dict[str, dict[str, Any]] = {}
    recording: dict[str, Any] = {}
    storage_gib = 0
    labels: dict[str, str] = {}
    if existing is not None:
        placements = {
            city.name: city.model_dump(mode="json", by_alias=True, exclude_none=True)
            for city in existing.spec.cities
        }
        recording = existing.spec.recording.model_dump(mode="json", by_alias=True)
        storage_gib = existing.spec.plan.recording_storage_gib
        labels = dict(existing.metadata.labels)
    labels[MANAGED_BY_LABEL] = MANAGED_BY
    recording["policy"] = row.recording_policy
    return Tenant.model_validate(
        {
            "apiVersion": PLATFORM_API_VERSION,
            "kind": "Tenant",
            "metadata": {"name": row.id, "labels": labels},
            "spec": {
                "displayName": row.display_name,
                "sipDomain": row.sip_domain,
                "plan": {
                    "seats": row.seats,
                    "numbers": row.numbers,
                    "concurrentCalls": row.concurrent_calls,
                    "recordingStorageGiB": storage_gib,
                },
                "cities": [placements.get(city, {"name": city}) for city in row.cities],
                "suspended": row.suspended,
                "recording": recording,
                "outbound": outbound_policy(row).model_dump(
                    mode="json", by_alias=True, exclude_none=True
                ),
            },
        }
    )


class TenantService:
    def __init__(
        self,
        session: AsyncSession,
        store: NumberStore,
        publisher: ConfigPublisher,
        passwords: Passwords,
    ) -> None:
        self.session = session
        self.store = store
        self.publisher = publisher
        self.passwords = passwords

    def filtered(self, name: str | None, suspended: bool | None) -> Select[TenantRow]:
        query = select(TenantRow).order_by(TenantRow.id)
        if name:
            needle = f"%{name.lower()}%"
            query = query.where(
                or_(
                    func.lower(TenantRow.id).like(needle),
                    func.lower(TenantRow.display_name).like(needle),
                )
            )
        if suspended is not None:
            query = query.where(TenantRow.suspended.is_(suspended))
        return query

    async def list(
        self, params: PageParams, name: str | None, suspended: bool | None
    ) -> tuple[list[TenantRow], int]:
        return await fetch_page(self.session, self.filtered(name, suspended), params)

    async def get(self, tenant_id: str) -> TenantRow:
        row = await self.session.get(TenantRow, tenant_id)
        if row is None:
            raise NotFound("tenant not found")
        return row

    async def create(self, body: TenantCreate) -> TenantRow:
        if await self.session.get(TenantRow, body.id) is not None:
            raise TenantExists(body.id)
        if await self.session.scalar(
            select(TenantRow.id).where(TenantRow.sip_domain == body.sip_domain)
        ):
            raise SipDomainTaken(body.sip_domain)
        if body.admin is not None and await self._email_taken(body.admin.email):
            raise EmailTaken("body.admin.email")
        existing = await store_read(self.store.get_tenant(body.id))
        policy = body.recording_policy
        if policy is None:
            # A Tenant applied with kubectl before the API knew it keeps its policy.
            policy = existing.spec.recording.policy if existing else RecordingPolicy.OFF
        outbound = body.outbound or (existing.spec.outbound if existing else OutboundPolicy())
        await require_own_number(
            self.store, body.id, outbound.default_caller_id, "body.outbound.default_caller_id"
        )
        row = TenantRow(
            id=body.id,
            display_name=body.display_name,
            sip_domain=body.sip_domain,
            cities=list(body.cities),
            seats=body.plan.seats,
            numbers=body.plan.numbers,
            concurrent_calls=body.plan.concurrent_calls,
            suspended=body.suspended,
            recording_policy=policy.value,
            revision=1,
        )
        set_outbound(row, outbound)
        self.session.add(row)
        if body.admin is not None:
            password_hash = await asyncio.to_thread(self.passwords.hash, body.admin.password)
            self.session.add(
                UserRow(
                    id=uuid.uuid4(),
                    tenant_id=body.id,
                    email=body.admin.email,
                    name=body.admin.name,
                    password_hash=password_hash,
                    role=Role.TENANT_ADMIN,
                    rank=0,
                    skills=[],
                    settings={},
                    revision=1,
                    token_generation=1,
                )
            )
        await self._flush("the tenant, its SIP domain or the admin's e-mail was just taken")
        await self._apply(row, existing)
        try:
            await TenantWork(self.session, row.id, self.publisher).commit(
                moves_phones=True, carriers=True
            )
        except Exception:
            if existing is None:
                await self._forget_resource(row.id)
            raise
        logger.info("tenant=%s created (cities %s)", row.id, ", ".join(row.cities))
        return row

    async def update(self, tenant_id: str, body: TenantUpdate, if_match: str | None) -> TenantRow:
        row = await self.get(tenant_id)
        check_if_match(if_match, tenant_etag(row))
        if body.display_name is not None:
            row.display_name = body.display_name
        if body.plan is not None:
            for key, value in body.plan.model_dump(exclude_none=True).items():
                setattr(row, key, value)
        if body.cities is not None:
            await self._check_cities_unused(row, set(row.cities) - set(body.cities))
            row.cities = list(body.cities)
        if body.suspended is not None:
            row.suspended = body.suspended
        if body.recording_policy is not None:
            row.recording_policy = body.recording_policy.value
        if body.outbound is not None:
            patch_outbound(row, body.outbound)
            if "default_caller_id" in body.outbound.model_fields_set:
                await require_own_number(
                    self.store,
                    row.id,
                    row.outbound_default_caller_id,
                    "body.outbound.default_caller_id",
                )
        row.revision += 1
        await self._flush("the tenant changed meanwhile")
        existing = await store_read(self.store.get_tenant(row.id))
        await self._apply(row, existing)
        await TenantWork(self.session, row.id, self.publisher).commit(moves_phones=True)
        return row

    async def delete(self, tenant_id: str, if_match: str | None) -> None:
        row = await self.get(tenant_id)
        check_if_match(if_match, tenant_etag(row))
        numbers = {n.spec.number for n in await store_read(self.store.list_numbers(row.id))}
        numbers |= {p.number for p in await PoolRepository(self.session).held_by(row.id)}
        if numbers:
            raise TenantHasNumbers(
                f"tenant {row.id} still has {len(numbers)} numbers ({', '.join(sorted(numbers))});"
                " release them first"
            )
        await self.session.delete(row)
        await self._flush("the tenant changed meanwhile")
        try:
            await self.store.delete_tenant(row.id)
        except NumberStoreError as exc:
            await self.session.rollback()
            raise NumberStoreUnavailable(f"the tenant was not deleted: {exc}") from exc
        await TenantWork(self.session, row.id, self.publisher).commit(
            moves_phones=True, carriers=True
        )
        logger.info("tenant=%s deleted", row.id)

    # --- helpers ----------------------------------------------------------------

    async def _email_taken(self, email: str) -> bool:
        query = select(UserRow.id).where(func.lower(UserRow.email) == email.lower())
        return (await self.session.scalar(query)) is not None

    async def _check_cities_unused(self, row: TenantRow, removed: set[str]) -> None:
        if not removed:
            return
        numbers = await store_read(self.store.list_numbers(row.id))
        in_use = sorted({n.spec.city for n in numbers} & removed)
        if in_use:
            raise CityInUse(
                f"the tenant still has numbers in {', '.join(in_use)}; release or move them first",
                "body.cities",
            )

    async def _flush(self, conflict: str) -> None:
        try:
            await self.session.flush()
        except IntegrityError as exc:
            await self.session.rollback()
            raise Conflict(conflict) from exc

    async def _apply(self, row: TenantRow, existing: Tenant | None) -> None:
        try:
            await self.store.apply_tenant(tenant_manifest(row, existing))
        except NumberStoreError as exc:
            await self.session.rollback()
            logger.warning("tenant=%s Tenant resource not written: %s", row.id, exc)
            raise NumberStoreUnavailable(f"the Tenant resource was not written: {exc}") from exc

    async def _forget_resource(self, tenant_id: str) -> None:
        try:
            await self.store.delete_tenant(tenant_id)
        except NumberStoreError as exc:
            logger.error("tenant=%s left a Tenant resource behind: %s", tenant_id, exc)


class PoolService:
    def __init__(self, session: AsyncSession, store: NumberStore) -> None:
        self.session = session
        self.store = store
        self.pool = PoolRepository(session)

    async def add(self, body: PoolAdd) -> list[PoolNumberRow]:
        seen: set[str] = set()
        for index, number in enumerate(body.numbers):
            if number in seen:
                raise NumberInPool(f"{number} is listed twice", f"body.numbers[{index}]")
            seen.add(number)
        existing = await self.pool.existing(body.numbers)
        routed = {
            n.spec.number: n.name
            for n in await store_read(self.store.list_numbers())
            if n.spec.number in seen
        }
        for index, number in enumerate(body.numbers):
            if number in existing:
                raise NumberInPool(f"{number} is already in the pool", f"body.numbers[{index}]")
            if number in routed:
                raise NumberInUse(
                    f"{number} is already routed by Number {routed[number]}",
                    f"body.numbers[{index}]",
                )
        rows = [PoolNumberRow(number=n, city=body.city, tenant_id=None) for n in body.numbers]
        self.session.add_all(rows)
        try:
            await self.session.commit()
        except IntegrityError as exc:
            await self.session.rollback()
            raise Conflict("some of the numbers were just added to the pool") from exc
        return rows

    async def list(
        self, params: PageParams, city: str | None, available: bool | None, tenant: str | None
    ) -> tuple[list[PoolNumberRow], int]:
        return await self.pool.page(self.pool.filtered(city, available, tenant), params)

    async def get(self, number: str) -> PoolNumberRow:
        row = await self.pool.find(_path_number(number))
        if row is None:
            raise NotFound("number not in the pool")
        return row

    async def delete(self, number: str) -> None:
        row = await self.get(number)
        if row.tenant_id is not None:
            raise NumberInUse(
                f"{row.number} is held by tenant {row.tenant_id}; it must release it first",
                "path.number",
            )
        await self.session.delete(row)
        await self.session.commit()


def _path_number(number: str) -> str:
    try:
        return normalize_e164(number)
    except InvalidPhoneNumber as exc:
        raise InvalidInput.at("path.number", f"not a phone number: {exc}") from exc
