"""The compiled configuration of one media node (one tenant in one city).

In cluster mode it is the content of the node's ConfigMap, in local mode a JSON
file next to the node process. It carries digest HA1 values instead of SIP
passwords, so a leaked ConfigMap or file does not reveal them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from vpbx_common.manifests import Number, PbxConfig, RecordingPolicy, RingStrategy, Tenant
from vpbx_common.models import StrictModel
from vpbx_common.sipauth import DigestAlgorithm, ha1


class UserEntry(StrictModel):
    extension: str
    name: str
    city: str
    # H(extension:sip_domain:password); the digest realm is the tenant's SIP domain.
    ha1_md5: str
    ha1_sha256: str
    email: str | None = None


class GroupEntry(StrictModel):
    name: str
    strategy: RingStrategy
    members: list[str]
    ring_timeout_s: int


class NumberEntry(StrictModel):
    number: str
    city: str
    label: str | None
    entry: str
    channels: int


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
        password = user.sip_password.get_secret_value()
        entries.append(
            UserEntry(
                extension=user.extension,
                name=user.name,
                city=user.city,
                ha1_md5=ha1(user.extension, realm, password, DigestAlgorithm.MD5),
                ha1_sha256=ha1(user.extension, realm, password, DigestAlgorithm.SHA256),
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
            strategy=group.strategy,
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
