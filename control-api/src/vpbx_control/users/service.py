"""Business rules of users and their SIP devices.

- E-mails are logins, unique across the platform; extensions are unique in a tenant,
  and every user with an extension takes one of the plan's seats.
- A new role or password bumps ``token_generation``: the user's outstanding
  access tokens stop working at once.
- The tenant keeps at least one tenant-admin user.
- SIP passwords are generated, shown once and kept only as digest HA1 values.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import string
import uuid
from dataclasses import dataclass

import redis.asyncio as redis
from sqlalchemy.ext.asyncio import AsyncSession

from vpbx_common.agents import AgentStateStore
from vpbx_common.pbx import Presence
from vpbx_common.sipauth import ha1_pair

from ..auth.principal import MANAGERS, Principal, Role
from ..conferences.repository import ConferenceRoomRepository
from ..context import AppContext
from ..errors import FieldProblem, Forbidden, InvalidInput, TooManyRequests
from ..ivr.repository import PromptRepository
from ..ivr.schemas import AudioPrompt
from ..outbound.service import require_own_number
from ..paging import PageParams, check_if_match
from ..prompts.schemas import AudioOrTone
from ..references import refuse_if_referenced
from ..repository import TenantWork
from ..tenants.models import TenantRow
from .errors import (
    DeviceUsernameTaken,
    EmailTaken,
    ExtensionHasDevices,
    ExtensionTaken,
    LastTenantAdmin,
    NotAUser,
    SeatLimitReached,
    UserHasNoExtension,
    WrongCurrentPassword,
)
from .models import DeviceRow, UserRow
from .repository import DeviceRepository, UserRepository
from .schemas import (
    BrowserDeviceCreate,
    DeviceCreate,
    SelfUpdate,
    UserCreate,
    UserSettings,
    UserSettingsPatch,
    UserUpdate,
)

logger = logging.getLogger(__name__)

# Browser devices a user may hold at once (the workspace in a few browsers and machines);
# adding one more replaces the oldest.
MAX_BROWSER_DEVICES = 5
BROWSER_DEVICE = "browser"
PHONE_DEVICE = "phone"  # any other SIP device (the column's default)

SIP_PASSWORD_LENGTH = 24  # alphanumeric: about 143 bits, and easy to type into a desk phone
_SIP_PASSWORD_ALPHABET = string.ascii_letters + string.digits


def generate_sip_password() -> str:
    return "".join(secrets.choice(_SIP_PASSWORD_ALPHABET) for _ in range(SIP_PASSWORD_LENGTH))


@dataclass(frozen=True)
class UserFilters:
    role: Role | None = None
    city: str | None = None
    extension: str | None = None
    presence: Presence | None = None
    q: str | None = None


@dataclass(frozen=True)
class IssuedDevice:
    """A device with its new SIP password: returned once, never stored in clear."""

    device: DeviceRow
    password: str
    sip_domain: str


class UserService:
    def __init__(self, session: AsyncSession, principal: Principal, context: AppContext) -> None:
        self.principal = principal
        self.passwords = context.passwords
        self.login_limiter = context.login_limiter
        self.numbers = context.numbers
        self.users = UserRepository(session, principal.tenant)
        self.devices = DeviceRepository(session, principal.tenant)
        self.prompts = PromptRepository(session, principal.tenant)
        self.work = TenantWork(session, principal.tenant, context.publisher)
        self.agents = AgentStateStore(context.redis) if context.redis is not None else None

    # ---- reading

    async def list_users(
        self, params: PageParams, filters: UserFilters
    ) -> tuple[list[UserRow], int]:
        query = self.users.filtered(
            role=filters.role,
            city=filters.city,
            extension=filters.extension,
            presence=filters.presence,
            q=filters.q,
        )
        return await self.users.page(query, params)

    async def get(self, user_id: uuid.UUID) -> UserRow:
        return await self.users.get(user_id)

    async def me(self) -> UserRow:
        if self.principal.user_id is None:
            raise NotAUser()
        row = await self.users.find(self.principal.user_id)
        if row is None:
            raise NotAUser()
        return row

    # ---- writing

    async def create(self, body: UserCreate) -> UserRow:
        tenant = await self.users.tenant(for_update=body.extension is not None)
        self._check_city(tenant, body.city)
        self._check_forwarding(body.settings, body.mobile, "body.settings.forward_to_mobile")
        await self._check_greeting(body.settings.voicemail_greeting)
        await self._check_caller_id(body.settings.caller_id)
        if await self.users.email_in_use(body.email):
            raise EmailTaken()
        if body.extension is not None:
            await self._claim_extension(tenant, body.extension, None)
        password_hash = await self._hash(body.password) if body.password is not None else None
        row = self.users.add(
            UserRow(
                email=body.email,
                name=body.name,
                role=body.role,
                extension=body.extension,
                city=body.city,
                mobile=body.mobile,
                rank=body.rank,
                skills=list(body.skills),
                presence=body.presence,
                settings=body.settings.model_dump(mode="json"),
                password_hash=password_hash,
                revision=1,
                token_generation=1,
            )
        )
        await self.work.commit(moves_phones=True)
        return row

    async def update(self, user_id: uuid.UUID, body: UserUpdate, if_match: str | None) -> UserRow:
        row = await self.users.get(user_id)
        check_if_match(if_match, row.etag())
        given = body.model_fields_set
        if not given:
            return row
        if body.email is not None and body.email != row.email:
            if await self.users.email_in_use(body.email, other_than=row.id):
                raise EmailTaken()
            row.email = body.email
        if "extension" in given and body.extension != row.extension:
            await self._change_extension(row, body.extension)
        if "city" in given and body.city != row.city:
            self._check_city(await self.users.tenant(), body.city)
            row.city = body.city
        if body.name is not None:
            row.name = body.name
        if body.rank is not None:
            row.rank = body.rank
        if body.skills is not None:
            row.skills = list(body.skills)
        if body.role is not None and body.role != row.role:
            if row.role is Role.TENANT_ADMIN and await self.users.admins() <= 1:
                raise LastTenantAdmin("body.role")
            row.role = body.role
            row.token_generation += 1
        if body.password is not None:
            row.password_hash = await self._hash(body.password)
            row.token_generation += 1
        if body.settings is not None:
            await self._check_greeting(body.settings.voicemail_greeting)
            await self._check_caller_id(body.settings.caller_id)
        self._apply_personal(row, given, body.presence, body.settings, body.mobile)
        self.users.touch(row)
        await self.work.commit(moves_phones=True)
        if body.presence is not None:
            await self._announce_presence(row)
        return row

    async def update_me(self, body: SelfUpdate, if_match: str | None, address: str) -> UserRow:
        row = await self.me()
        check_if_match(if_match, row.etag())
        given = body.model_fields_set
        if not given:
            return row
        if body.settings is not None:
            # Whether calls are recorded and which of the company's numbers they show are
            # the company's decisions, not the agent's.
            for name in ("record", "caller_id"):
                if name in body.settings.model_fields_set:
                    raise Forbidden(
                        f"settings.{name} is set by a tenant admin (PATCH /v1/users/{{id}})",
                        details=[
                            FieldProblem(
                                field=f"body.settings.{name}", message="tenant admins only"
                            )
                        ],
                    )
        if body.settings is not None:
            await self._check_greeting(body.settings.voicemail_greeting)
        if body.password is not None:
            await self._check_current_password(row, body.current_password or "", address)
            row.password_hash = await self._hash(body.password)
            row.token_generation += 1
        self._apply_personal(row, given, body.presence, body.settings, body.mobile)
        self.users.touch(row)
        await self.work.commit()
        if body.presence is not None:
            await self._announce_presence(row)
        return row

    async def set_presence(
        self, user_id: uuid.UUID, presence: Presence, if_match: str | None
    ) -> UserRow:
        row = await self.users.get(user_id)
        if not (self.principal.role in MANAGERS or self.principal.is_user(row.id)):
            raise Forbidden("only the user, a supervisor or a tenant admin may change presence")
        check_if_match(if_match, row.etag())
        if row.presence is not presence:
            row.presence = presence
            self.users.touch(row)
            await self.work.commit()
            await self._announce_presence(row)
        return row

    async def _announce_presence(self, row: UserRow) -> None:
        """Presence counts from the next call on every node, before the new config reaches them."""
        if self.agents is None or not row.extension:
            return
        try:
            await self.agents.set_presence(self.principal.tenant, row.extension, row.presence)
        except redis.RedisError as exc:
            # The compiled config carries the presence too; the nodes get it on reload.
            logger.warning(
                "tenant=%s presence of %s not shared live: %s", row.tenant_id, row.extension, exc
            )

    async def delete(self, user_id: uuid.UUID, if_match: str | None) -> None:
        row = await self.users.get(user_id)
        check_if_match(if_match, row.etag())
        if row.role is Role.TENANT_ADMIN and await self.users.admins() <= 1:
            raise LastTenantAdmin("path.user_id")
        await refuse_if_referenced(
            self.users.session, row.tenant_id, row.id, "user", numbers=self.numbers
        )
        # Group memberships and devices go with the user (ON DELETE CASCADE).
        await self.users.delete(row)
        await self.work.commit(moves_phones=True)

    # ---- devices

    async def list_devices(
        self, user_id: uuid.UUID, params: PageParams
    ) -> tuple[list[DeviceRow], int]:
        user = await self._readable_owner(user_id)
        return await self.devices.page(self.devices.of_user(user.id), params)

    async def get_device(self, user_id: uuid.UUID, device_id: uuid.UUID) -> DeviceRow:
        user = await self._readable_owner(user_id)
        return await self.devices.get_of_user(user.id, device_id)

    async def create_device(self, user_id: uuid.UUID, body: DeviceCreate) -> IssuedDevice:
        user = await self.users.get(user_id)
        if user.extension is None:
            raise UserHasNoExtension()
        tenant = await self.users.tenant()
        if body.username is not None:
            if await self.devices.username_taken(body.username):
                raise DeviceUsernameTaken(body.username)
            username = body.username
        else:
            username = await self._free_username(user.extension)
        return await self._issue_device(user.id, body.name, username, tenant.sip_domain)

    async def _issue_device(
        self,
        user_id: uuid.UUID,
        name: str,
        username: str,
        sip_domain: str,
        kind: str = PHONE_DEVICE,
    ) -> IssuedDevice:
        """A new device with a fresh password, kept only as its digest HA1 values."""
        password = generate_sip_password()
        hashes = ha1_pair(username, sip_domain, password)
        row = self.devices.add(
            DeviceRow(
                user_id=user_id,
                name=name,
                username=username,
                kind=kind,
                ha1_md5=hashes.md5,
                ha1_sha256=hashes.sha256,
                revision=1,
            )
        )
        await self.work.commit(moves_phones=True)
        return IssuedDevice(row, password, sip_domain)

    async def add_browser_device(self, body: BrowserDeviceCreate) -> IssuedDevice:
        """The caller's own softphone in the agent workspace.

        Self-service (any role), because every browser an agent logs in from needs SIP
        credentials and a tenant admin should not be asked each time. Capped: a browser
        that lost its localStorage (a cleared profile, another machine) makes a new device,
        so the oldest browser device beyond the cap goes rather than piling up. Desk phones
        and other devices are left alone.
        """
        user = await self.me()
        if user.extension is None:
            raise UserHasNoExtension()
        browsers = await self.devices.of_kind(user.id, BROWSER_DEVICE)
        for old in browsers[: max(0, len(browsers) - MAX_BROWSER_DEVICES + 1)]:
            await self.devices.delete(old)
        tenant = await self.users.tenant()
        # Under the extension's own name space (<ext>-web-<n>): a desk phone added later
        # still gets the bare extension as its user name.
        username = await self._free_username(f"{user.extension}-web")
        return await self._issue_device(
            user.id, body.name, username, tenant.sip_domain, kind=BROWSER_DEVICE
        )

    async def rotate_device(
        self, user_id: uuid.UUID, device_id: uuid.UUID, if_match: str | None
    ) -> IssuedDevice:
        user = await self.users.get(user_id)
        row = await self.devices.get_of_user(user.id, device_id)
        check_if_match(if_match, row.etag())
        tenant = await self.users.tenant()
        password = generate_sip_password()
        row.ha1_md5, row.ha1_sha256 = ha1_pair(row.username, tenant.sip_domain, password)
        self.devices.touch(row)
        await self.work.commit()
        return IssuedDevice(row, password, tenant.sip_domain)

    async def delete_device(
        self, user_id: uuid.UUID, device_id: uuid.UUID, if_match: str | None
    ) -> None:
        user = await self.users.get(user_id)
        row = await self.devices.get_of_user(user.id, device_id)
        check_if_match(if_match, row.etag())
        await self.devices.delete(row)
        await self.work.commit(moves_phones=True)

    # ---- helpers

    async def _readable_owner(self, user_id: uuid.UUID) -> UserRow:
        """The user whose devices are read: a tenant admin reads anyone's, a user their own."""
        user = await self.users.get(user_id)
        if not (self.principal.role is Role.TENANT_ADMIN or self.principal.is_user(user.id)):
            raise Forbidden("only the user or a tenant admin may read these devices")
        return user

    @staticmethod
    def _check_city(tenant: TenantRow, city: str | None) -> None:
        if city is not None and city not in tenant.cities:
            cities = ", ".join(str(c) for c in tenant.cities) or "none"
            raise InvalidInput.at("body.city", f"not one of the tenant's cities ({cities})")

    async def _check_greeting(self, greeting: AudioOrTone | None) -> None:
        """A greeting naming a prompt: one of this tenant's (404 naming the field)."""
        if isinstance(greeting, AudioPrompt):
            await self.prompts.referenced(
                greeting.prompt_id, "body.settings.voicemail_greeting.prompt_id"
            )

    async def _check_caller_id(self, caller_id: str | None) -> None:
        """A caller ID must be one of the tenant's numbers (422 naming the field)."""
        await require_own_number(
            self.numbers, self.principal.tenant, caller_id, "body.settings.caller_id"
        )

    @staticmethod
    def _check_forwarding(settings: UserSettings, mobile: str | None, field: str) -> None:
        if settings.forward_to_mobile and mobile is None:
            raise InvalidInput.at(field, "forwarding to the mobile needs a mobile number")

    async def _claim_extension(
        self, tenant: TenantRow, extension: str, user: UserRow | None
    ) -> None:
        owner = await self.users.extension_owner(extension)
        if owner is not None and (user is None or owner != user.id):
            raise ExtensionTaken(extension)
        room = await ConferenceRoomRepository(
            self.users.session, self.principal.tenant
        ).extension_owner(extension)
        if room is not None:
            raise ExtensionTaken(extension, f"conference room {room.name!r}")
        takes_a_seat = user is None or user.extension is None
        if takes_a_seat and tenant.seats and await self.users.seats_used() >= tenant.seats:
            raise SeatLimitReached(tenant.seats)

    async def _change_extension(self, row: UserRow, extension: str | None) -> None:
        if extension is None:
            if await self.devices.count_of_user(row.id):
                raise ExtensionHasDevices()
        else:
            # Locked only when a seat is taken, so concurrent admins cannot overbook.
            tenant = await self.users.tenant(for_update=row.extension is None)
            await self._claim_extension(tenant, extension, row)
        row.extension = extension

    def _apply_personal(
        self,
        row: UserRow,
        given: set[str],
        presence: Presence | None,
        settings: UserSettingsPatch | None,
        mobile: str | None,
    ) -> None:
        """Presence, personal settings and mobile: what a user may change about themself."""
        if presence is not None:
            row.presence = presence
        if "mobile" in given:
            row.mobile = mobile
        merged = UserSettings.stored(row.settings)
        if settings is not None:
            merged = settings.merged(merged)
            row.settings = merged.model_dump(mode="json")
        if settings is not None or "mobile" in given:
            field = "body.settings.forward_to_mobile" if settings is not None else "body.mobile"
            self._check_forwarding(merged, row.mobile, field)

    async def _free_username(self, extension: str) -> str:
        taken = await self.devices.usernames_like(extension)
        if extension not in taken:
            return extension
        n = 2
        while f"{extension}-{n}" in taken:
            n += 1
        return f"{extension}-{n}"

    async def _hash(self, password: str) -> str:
        # argon2 takes tens of milliseconds of CPU: keep it off the event loop.
        return await asyncio.to_thread(self.passwords.hash, password)

    async def _check_current_password(self, row: UserRow, password: str, address: str) -> None:
        # Counted like failed logins: a stolen token must not speed up password guessing.
        blocked = await self.login_limiter.check(row.email, address)
        if blocked is not None:
            raise TooManyRequests(
                "too many wrong passwords; try again later", blocked.retry_after_s
            )
        if not await asyncio.to_thread(self.passwords.verify, row.password_hash, password):
            await self.login_limiter.failed(row.email, address)
            raise WrongCurrentPassword()
        await self.login_limiter.succeeded(row.email)
