"""The compiled configuration of one media node (one tenant in one city).

The control API compiles it from its database and serves it to the nodes
(``GET /internal/v1/node-config/<tenant>/<city>``, ETag = ``version``); a node
without a control API reads it from a JSON file (the operator's ConfigMap, or
a file written by hand). It carries digest HA1 values instead of SIP
passwords, so a leaked document does not reveal them.

Every field added after the first version has a default, so a document written
by an older compiler still loads.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any, Literal

from pydantic import Field

from vpbx_common.manifests import (
    UNROUTED_ENTRY,
    Number,
    PbxConfig,
    RecordingPolicy,
    Tenant,
)
from vpbx_common.models import StrictModel
from vpbx_common.sipauth import ha1_pair

__all__ = [
    "CONFIG_CHANNEL_PREFIX",
    "UNROUTED_ENTRY",
    "Credentials",
    "DeviceEntry",
    "GroupEntry",
    "HoursEntry",
    "IvrMenuEntry",
    "NodeConfig",
    "NumberEntry",
    "RoutePlanEntry",
    "ScheduleEntry",
    "SpecialDayEntry",
    "TargetEntry",
    "TargetType",
    "UserEntry",
    "WeeklyHoursEntry",
    "compile_node_config",
    "config_channel",
]

TargetType = Literal[
    "user", "group", "ivr", "route-plan", "voicemail", "external", "hangup", "unrouted"
]


class TargetEntry(StrictModel):
    """Where a call goes, resolved for the node.

    ``ref`` is what the node acts on: the extension (user, voicemail box), the
    group / IVR menu / route plan name, or the E.164 number (external). ``id``
    is the control API object's id. A reference to an object that no longer
    exists compiles to type ``unrouted``.
    """

    type: TargetType
    id: str | None = None
    ref: str | None = None


class UserEntry(StrictModel):
    extension: str
    name: str
    city: str
    # Old-style credentials of a user who is their own device (username = extension):
    # H(extension:sip_domain:password); the digest realm is the tenant's SIP domain.
    # Users from the control API have devices instead and leave these empty.
    ha1_md5: str | None = None
    ha1_sha256: str | None = None
    email: str | None = None
    id: str | None = None
    role: str | None = None
    mobile: str | None = None  # E.164, for forwarding
    rank: int = 0  # qualification: higher rings first in by-rank groups
    skills: list[str] = Field(default_factory=list)
    presence: str = "available"  # available | away | do-not-disturb
    settings: dict[str, Any] = Field(default_factory=dict)


class DeviceEntry(StrictModel):
    """A SIP device with its own credentials; a call to the extension rings all of them."""

    username: str
    extension: str
    name: str = ""
    # H(username:sip_domain:password)
    ha1_md5: str
    ha1_sha256: str


class GroupEntry(StrictModel):
    name: str
    # ring-all, sequential, round-robin, escalating, least-recently-called, by-rank;
    # a node that does not know a strategy rings everyone.
    strategy: str
    members: list[str]  # extensions, in ring order
    ring_timeout_s: int
    id: str | None = None
    weights: dict[str, int] = Field(default_factory=dict)  # extension -> weight
    escalation_interval_s: int | None = None
    overflow: TargetEntry | None = None


class NumberEntry(StrictModel):
    number: str
    city: str
    label: str | None
    # What the node routes on: an extension, a group name, ``ivr:<name>``,
    # ``route-plan:<name>`` or ``unrouted``.
    entry: str
    channels: int
    target: TargetEntry | None = None


class HoursEntry(StrictModel):
    start: str  # HH:MM
    end: str


class WeeklyHoursEntry(HoursEntry):
    day: str  # mon..sun


class SpecialDayEntry(StrictModel):
    date: str  # YYYY-MM-DD
    name: str = ""
    hours: list[HoursEntry] = Field(default_factory=list)  # empty: closed all day


class ScheduleEntry(StrictModel):
    id: str
    name: str
    time_zone: str
    weekly: list[WeeklyHoursEntry] = Field(default_factory=list)
    special_days: list[SpecialDayEntry] = Field(default_factory=list)


class IvrMenuEntry(StrictModel):
    id: str
    name: str
    prompt: dict[str, Any] = Field(default_factory=dict)
    options: dict[str, TargetEntry] = Field(default_factory=dict)  # digit -> target
    timeout_s: int = 5
    max_retries: int = 2  # replays of the prompt before the timeout / invalid target
    timeout_target: TargetEntry | None = None
    invalid_target: TargetEntry | None = None


class RoutePlanEntry(StrictModel):
    id: str
    name: str
    # The steps as the control API stores them; they refer to other objects by
    # id, and every object they can refer to is in this document with its id.
    steps: list[dict[str, Any]] = Field(default_factory=list)


class Credentials(StrictModel):
    """What the registrar needs to check a digest: the HA1s and the extension they ring."""

    username: str
    extension: str
    ha1_md5: str
    ha1_sha256: str


class NodeConfig(StrictModel):
    tenant: str
    display_name: str
    sip_domain: str
    city: str
    suspended: bool
    recording_policy: RecordingPolicy = RecordingPolicy.OFF
    concurrent_calls: int = 0
    users: list[UserEntry]
    groups: list[GroupEntry]
    numbers: list[NumberEntry]
    devices: list[DeviceEntry] = Field(default_factory=list)
    schedules: list[ScheduleEntry] = Field(default_factory=list)
    ivr_menus: list[IvrMenuEntry] = Field(default_factory=list)
    route_plans: list[RoutePlanEntry] = Field(default_factory=list)
    version: str = ""

    def content_version(self) -> str:
        """Hash of everything but the version itself: equal content, equal version."""
        canonical = self.model_dump_json(exclude={"version"})
        return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]

    def with_version(self) -> NodeConfig:
        return self.model_copy(update={"version": self.content_version()})

    def user(self, extension: str) -> UserEntry | None:
        return next((user for user in self.users if user.extension == extension), None)

    def group(self, name: str) -> GroupEntry | None:
        return next((group for group in self.groups if group.name == name), None)

    def number(self, e164: str) -> NumberEntry | None:
        return next((number for number in self.numbers if number.number == e164), None)

    def credentials(self, username: str) -> Credentials | None:
        """The digest credentials of a SIP username: a device's, else an old-style user's."""
        device = next((d for d in self.devices if d.username == username), None)
        if device is not None:
            return Credentials(
                username=username,
                extension=device.extension,
                ha1_md5=device.ha1_md5,
                ha1_sha256=device.ha1_sha256,
            )
        user = self.user(username)
        if user is not None and user.ha1_md5 is not None and user.ha1_sha256 is not None:
            return Credentials(
                username=username,
                extension=user.extension,
                ha1_md5=user.ha1_md5,
                ha1_sha256=user.ha1_sha256,
            )
        return None

    def extension_for(self, username: str) -> str | None:
        """The extension a SIP username rings and calls as (None: unknown username)."""
        credentials = self.credentials(username)
        return credentials.extension if credentials is not None else None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> NodeConfig:
        return cls.model_validate_json(text)


def _users(config: PbxConfig | None, realm: str) -> list[UserEntry]:
    if config is None:
        return []
    entries = []
    for user in config.spec.users:
        hashes = ha1_pair(user.extension, realm, user.sip_password.get_secret_value())
        entries.append(
            UserEntry(
                extension=user.extension,
                name=user.name,
                city=user.city,
                ha1_md5=hashes.md5,
                ha1_sha256=hashes.sha256,
                email=user.email,
            )
        )
    return sorted(entries, key=lambda entry: entry.extension)


def _groups(config: PbxConfig | None) -> list[GroupEntry]:
    if config is None:
        return []
    entries = [
        GroupEntry(
            name=group.name,
            strategy=str(group.strategy),
            members=list(group.members),
            ring_timeout_s=group.ring_timeout_seconds,
        )
        for group in config.spec.groups
    ]
    return sorted(entries, key=lambda entry: entry.name)


def _numbers(tenant: str, numbers: Iterable[Number]) -> list[NumberEntry]:
    entries = [
        NumberEntry(
            number=number.spec.number,
            city=number.spec.city,
            label=number.spec.label,
            entry=number.spec.entry,
            channels=number.spec.channels,
        )
        for number in numbers
        if number.spec.tenant == tenant
    ]
    return sorted(entries, key=lambda entry: entry.number)


def compile_node_config(
    tenant: Tenant, city: str, numbers: Iterable[Number], config: PbxConfig | None
) -> NodeConfig:
    """The node config for ``tenant`` in ``city``.

    Every node of a tenant gets all its users, groups and numbers: a call that
    arrives in one city may ring users in another. Numbers of other tenants are
    ignored. Lists are sorted so that the version only changes with the content.
    """
    if city not in tenant.spec.city_names:
        raise ValueError(f"tenant {tenant.name!r} does not serve city {city!r}")
    if config is not None and config.tenant != tenant.name:
        raise ValueError(f"PbxConfig {config.tenant!r} is not the config of {tenant.name!r}")
    spec = tenant.spec
    compiled = NodeConfig(
        tenant=tenant.name,
        display_name=spec.display_name,
        sip_domain=spec.sip_domain,
        city=city,
        suspended=spec.suspended,
        recording_policy=spec.recording.policy,
        concurrent_calls=spec.plan.concurrent_calls,
        users=_users(config, spec.sip_domain),
        groups=_groups(config),
        numbers=_numbers(tenant.name, numbers),
    )
    return compiled.with_version()


CONFIG_CHANNEL_PREFIX = "vpbx:config:"


def config_channel(tenant: str) -> str:
    """The Redis pub/sub channel announcing that ``tenant``'s config changed."""
    return CONFIG_CHANNEL_PREFIX + tenant
