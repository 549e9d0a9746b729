"""Local mode: seed the database from a platform file (examples/demo.yaml) once.

A tenant is seeded when the database does not have it yet, and only then:
its row, the PbxConfig users (each with one SIP device whose username is the
extension and whose password is the file's sipPassword), groups, admins, and
the tenant's numbers (in the number store and the pool). Starting again finds
the tenant and leaves it alone, so nothing is duplicated and changes made
through the API since are kept.

Numbers are stored with their entries as ``<kind>:<uuid>`` references to the
seeded objects, as the API writes them, so renaming the group keeps them working.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.manifests import (
    Number,
    PbxConfig,
    PlatformFile,
    Tenant,
    load_platform_file,
    validate_platform,
)
from vpbx_common.pbx import Presence
from vpbx_common.sipauth import ha1_pair

from .auth.passwords import Passwords
from .auth.principal import Role
from .db.session import Database
from .groups.models import GroupMemberRow, GroupRow
from .nodeconfig.publisher import ConfigPublisher
from .numbers.models import PoolNumberRow
from .numbers.store import NumberStore
from .outbound.service import set_outbound
from .tenants.models import TenantRow
from .users.models import DeviceRow, UserRow

logger = logging.getLogger(__name__)

SEEDED_DEVICE_NAME = "phone"


class SeedError(RuntimeError):
    """The platform file cannot be seeded (unreadable or inconsistent)."""


def _first_by_name(tenants: Iterable[Tenant]) -> list[Tenant]:
    seen: dict[str, Tenant] = {}
    for tenant in tenants:
        seen.setdefault(tenant.name, tenant)
    return list(seen.values())


class _TenantSeed:
    """The rows of one tenant, built from its manifests; ids known before the commit."""

    def __init__(self, tenant: Tenant, config: PbxConfig | None, passwords: Passwords) -> None:
        self.tenant = tenant
        spec = tenant.spec
        self.row = TenantRow(
            id=tenant.name,
            display_name=spec.display_name,
            sip_domain=spec.sip_domain,
            cities=list(spec.city_names),
            seats=spec.plan.seats,
            numbers=spec.plan.numbers,
            concurrent_calls=spec.plan.concurrent_calls,
            suspended=spec.suspended,
            recording_policy=spec.recording.policy.value,
            revision=1,
        )
        set_outbound(self.row, spec.outbound)
        # In insert order: the tables have foreign keys but no relationships, so
        # the session would not order the inserts by itself.
        self.users: list[UserRow] = []
        self.rows: list[DeviceRow | GroupRow] = []
        self.members: list[GroupMemberRow] = []
        self.user_ids: dict[str, uuid.UUID] = {}  # extension -> user id
        self.group_ids: dict[str, uuid.UUID] = {}  # group name -> group id
        if config is not None:
            self._users(config)
            self._groups(config)
            self._admins(config, passwords)

    def _users(self, config: PbxConfig) -> None:
        realm = self.tenant.spec.sip_domain
        for user in config.spec.users:
            user_id = uuid.uuid4()
            self.user_ids[user.extension] = user_id
            self.users.append(
                UserRow(
                    id=user_id,
                    tenant_id=self.tenant.name,
                    email=(user.email or f"{user.extension}@{realm}").lower(),
                    name=user.name,
                    password_hash=None,  # a phone user; an admin gives them a login later
                    role=Role.AGENT,
                    extension=user.extension,
                    city=user.city,
                    rank=0,
                    skills=[],
                    presence=Presence.AVAILABLE,
                    settings={},
                    revision=1,
                    token_generation=1,
                )
            )
            hashes = ha1_pair(user.extension, realm, user.sip_password.get_secret_value())
            self.rows.append(
                DeviceRow(
                    id=uuid.uuid4(),
                    tenant_id=self.tenant.name,
                    user_id=user_id,
                    name=SEEDED_DEVICE_NAME,
                    username=user.extension,
                    ha1_md5=hashes.md5,
                    ha1_sha256=hashes.sha256,
                    revision=1,
                )
            )

    def _groups(self, config: PbxConfig) -> None:
        for group in config.spec.groups:
            group_id = uuid.uuid4()
            self.group_ids[group.name] = group_id
            self.rows.append(
                GroupRow(
                    id=group_id,
                    tenant_id=self.tenant.name,
                    name=group.name,
                    strategy=str(group.strategy),
                    ring_timeout_s=group.ring_timeout_seconds,
                    escalation_interval_s=10,
                    overflow=None,
                    revision=1,
                )
            )
            for position, extension in enumerate(group.members):
                self.members.append(
                    GroupMemberRow(
                        id=uuid.uuid4(),
                        group_id=group_id,
                        user_id=self.user_ids[extension],
                        position=position,
                        weight=1,
                    )
                )

    def _admins(self, config: PbxConfig, passwords: Passwords) -> None:
        for admin in config.spec.admins:
            self.users.append(
                UserRow(
                    id=uuid.uuid4(),
                    tenant_id=self.tenant.name,
                    email=admin.email.lower(),
                    name=admin.email.split("@", 1)[0],
                    password_hash=passwords.hash(admin.password.get_secret_value()),
                    role=Role.TENANT_ADMIN,
                    extension=None,
                    city=None,
                    rank=0,
                    skills=[],
                    presence=Presence.AVAILABLE,
                    settings={},
                    revision=1,
                    token_generation=1,
                )
            )

    def entry_reference(self, entry: str) -> str:
        """A file entry (extension or group name) as a reference to the seeded object."""
        if entry in self.user_ids:
            return f"user:{self.user_ids[entry]}"
        if entry in self.group_ids:
            return f"group:{self.group_ids[entry]}"
        return entry  # already a reference, or `unrouted`

    def number(self, number: Number) -> Number:
        spec = number.spec.model_copy(update={"entry": self.entry_reference(number.spec.entry)})
        return number.model_copy(update={"spec": spec})


async def _seed_numbers(
    session: AsyncSession, store: NumberStore, seed: _TenantSeed, numbers: Iterable[Number]
) -> int:
    existing = await store.list_numbers()
    taken_names = {number.name for number in existing}
    taken_numbers = {number.spec.number for number in existing}
    added = 0
    for number in numbers:
        spec = number.spec
        if spec.tenant != seed.tenant.name:
            continue
        if await session.get(PoolNumberRow, spec.number) is None:
            session.add(PoolNumberRow(number=spec.number, city=spec.city, tenant_id=spec.tenant))
        if number.name in taken_names or spec.number in taken_numbers:
            logger.info("Number %s (%s) is in the store already", number.name, spec.number)
            continue
        await store.create_number(seed.number(number))
        taken_names.add(number.name)
        taken_numbers.add(spec.number)
        added += 1
    return added


async def seed_platform(
    platform: PlatformFile,
    database: Database,
    store: NumberStore,
    passwords: Passwords,
    publisher: ConfigPublisher,
) -> list[str]:
    """Seed every tenant of ``platform`` the database does not have; their names."""
    problems = validate_platform(platform)
    if problems:
        raise SeedError("the platform file has problems:\n  " + "\n  ".join(problems))
    configs: dict[str, PbxConfig] = {}
    for config in platform.configs:
        configs.setdefault(config.tenant, config)
    seeded: list[str] = []
    for tenant in _first_by_name(platform.tenants):
        async with database.session() as session:
            if await session.get(TenantRow, tenant.name) is not None:
                logger.info("tenant %s is in the database already; not seeded again", tenant.name)
                continue
            seed = _TenantSeed(tenant, configs.get(tenant.name), passwords)
            emails = [row.email for row in seed.users]
            clash = (
                await session.execute(select(UserRow.email).where(UserRow.email.in_(emails)))
            ).first()
            if clash is not None:
                raise SeedError(f"tenant {tenant.name}: e-mail {clash[0]} belongs to another user")
            for stage in ([seed.row], seed.users, seed.rows, seed.members):
                session.add_all(stage)
                await session.flush()
            # The store first: if the commit fails, the next start seeds the tenant
            # again and skips the numbers the store already has.
            added = await _seed_numbers(session, store, seed, platform.numbers)
            await store.apply_tenant(tenant)
            await session.commit()
        await publisher.changed(tenant.name, moves_phones=True, carriers=True)
        logger.info(
            "seeded tenant %s: %d users, %d groups, %d admins, %d numbers",
            tenant.name,
            len(seed.user_ids),
            len(seed.group_ids),
            sum(1 for row in seed.users if row.extension is None),
            added,
        )
        seeded.append(tenant.name)
    return seeded


async def seed_file(
    path: str,
    database: Database,
    store: NumberStore,
    passwords: Passwords,
    publisher: ConfigPublisher,
) -> list[str]:
    try:
        platform = load_platform_file(path)
    except ValueError as exc:
        raise SeedError(str(exc)) from exc
    return await seed_platform(platform, database, store, passwords, publisher)
