"""The platform file's PBX config (Tenant, Number, PbxConfig, Trunk manifests) as a compiler source.

Nodes without a control API (the operator's ConfigMap) get their config from
here; the control API seeds its database from the same manifests.
"""

from __future__ import annotations

from collections.abc import Iterable

from vpbx_common.manifests import Number, PbxConfig, Tenant, Trunk
from vpbx_common.sipauth import ha1_pair

from .compile import SourceGroup, SourceTrunk, SourceUser, TenantSource

PLATFORM_TRUNK_PREFIX = "platform:"


def platform_trunk_source(trunk: Trunk) -> SourceTrunk:
    """One of the operator's carriers, as every tenant's nodes get it (id ``platform:<name>``)."""
    spec = trunk.spec
    return SourceTrunk(
        id=PLATFORM_TRUNK_PREFIX + trunk.name,
        name=trunk.name,
        uri=spec.uri,
        scope="platform",
        registers=spec.registers,
        username=spec.username,
        password=spec.password.get_secret_value() if spec.password is not None else None,
        allowed_addresses=list(spec.allowed_addresses),
        priority=spec.priority,
        passes_caller_id=spec.passes_caller_id,
    )


def manifest_source(
    tenant: Tenant,
    numbers: Iterable[Number],
    config: PbxConfig | None,
    trunks: Iterable[Trunk] = (),
) -> TenantSource:
    """``trunks``: the platform's (Trunk manifests), which every tenant may call out through."""
    if config is not None and config.tenant != tenant.name:
        raise ValueError(f"PbxConfig {config.tenant!r} is not the config of {tenant.name!r}")
    spec = tenant.spec
    users: list[SourceUser] = []
    groups: list[SourceGroup] = []
    if config is not None:
        for user in config.spec.users:
            hashes = ha1_pair(user.extension, spec.sip_domain, user.sip_password.get_secret_value())
            users.append(
                SourceUser(
                    extension=user.extension,
                    name=user.name,
                    city=user.city,
                    email=user.email,
                    ha1_md5=hashes.md5,
                    ha1_sha256=hashes.sha256,
                )
            )
        groups = [
            SourceGroup(
                name=group.name,
                strategy=group.strategy,
                members=[(extension, 1) for extension in group.members],
                ring_timeout_s=group.ring_timeout_seconds,
            )
            for group in config.spec.groups
        ]
    return TenantSource(
        tenant=tenant.name,
        display_name=spec.display_name,
        sip_domain=spec.sip_domain,
        cities=spec.city_names,
        suspended=spec.suspended,
        concurrent_calls=spec.plan.concurrent_calls,
        recording_policy=spec.recording.policy,
        users=users,
        groups=groups,
        numbers=[number for number in numbers if number.spec.tenant == tenant.name],
        trunks=[platform_trunk_source(trunk) for trunk in trunks],
        outbound=spec.outbound,
    )
