"""One tenant's PBX, as the database and the number store hold it, as a compiler source.

The compiling itself (resolving references, sorting, versioning) is
``vpbx_common.nodeconfig.compile_node_config``, shared with nodes that read the
platform file; this module only reads rows into a ``TenantSource``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from vpbx_common.manifests import Number, RecordingPolicy, Trunk
from vpbx_common.nodeconfig import (
    NodeConfig,
    SourceConferenceRoom,
    SourceDevice,
    SourceGroup,
    SourceIvrMenu,
    SourceRoutePlan,
    SourceSchedule,
    SourceTrunk,
    SourceUser,
    TenantSource,
    compile_node_config,
    platform_trunk_source,
)
from vpbx_common.pbx import Presence, RingStrategy

from ..conferences.models import ConferenceRoomRow
from ..features.service import stored_codes
from ..groups.models import GroupMemberRow, GroupRow
from ..ivr.models import IvrMenuRow
from ..outbound.service import outbound_policy
from ..routeplans.models import RoutePlanRow
from ..schedules.models import ScheduleRow
from ..tenants.models import TenantRow
from ..trunks.models import TrunkRow
from ..users.models import DeviceRow, UserRow

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TenantSnapshot:
    """Everything of one tenant the node config is made of."""

    tenant: TenantRow
    users: Sequence[UserRow] = ()
    devices: Sequence[DeviceRow] = ()
    groups: Sequence[GroupRow] = ()
    members: Sequence[GroupMemberRow] = ()
    schedules: Sequence[ScheduleRow] = ()
    ivr_menus: Sequence[IvrMenuRow] = ()
    route_plans: Sequence[RoutePlanRow] = ()
    numbers: Sequence[Number] = ()
    decision_secret: str | None = None  # signs the tenant's HTTP decisions
    # E.164 -> the stored greeting (prompt document) of each number that has one.
    number_greetings: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    language: str = "ru-RU"  # of the platform's spoken phrases (tenant_language)
    trunks: Sequence[TrunkRow] = ()  # the tenant's own
    platform_trunks: Sequence[Trunk] = ()  # the operator's carriers (Trunk manifests)
    conference_rooms: Sequence[ConferenceRoomRow] = ()


def _members_by_group(snapshot: TenantSnapshot) -> dict[str, list[tuple[str, int]]]:
    """Group id -> (extension, weight) of its members with an extension, and of its
    numbers outside (the E.164 in place of an extension: the node rings it through the
    trunks), in ring order."""
    extensions = {str(user.id): user.extension for user in snapshot.users if user.extension}
    ordered: dict[str, list[tuple[int, str, int]]] = {}
    for member in snapshot.members:
        extension = member.number or extensions.get(str(member.user_id))
        if extension is not None:
            ordered.setdefault(str(member.group_id), []).append(
                (member.position, extension, member.weight)
            )
    return {
        group: [(extension, weight) for _, extension, weight in sorted(members)]
        for group, members in ordered.items()
    }


def _recording_policy(tenant: TenantRow) -> RecordingPolicy:
    try:
        return RecordingPolicy(tenant.recording_policy)
    except ValueError:
        # Only a hand-edited row can hold anything else; recording nothing is the safe side.
        logger.error(
            "tenant=%s unknown recording policy %r; off", tenant.id, tenant.recording_policy
        )
        return RecordingPolicy.OFF


def _tenant_trunk(row: TrunkRow) -> SourceTrunk:
    return SourceTrunk(
        id=str(row.id),
        name=row.name,
        uri=row.uri,
        registers=row.registers,
        username=row.username,
        password=row.password,
        allowed_addresses=[str(cidr) for cidr in row.allowed_addresses or ()],
        priority=row.priority,
        passes_caller_id=row.passes_caller_id,
    )


def tenant_source(snapshot: TenantSnapshot) -> TenantSource:
    tenant = snapshot.tenant
    members = _members_by_group(snapshot)
    return TenantSource(
        tenant=tenant.id,
        display_name=tenant.display_name,
        sip_domain=tenant.sip_domain,
        cities=[str(name) for name in tenant.cities or ()],
        suspended=tenant.suspended,
        concurrent_calls=tenant.concurrent_calls,
        recording_policy=_recording_policy(tenant),
        users=[
            SourceUser(
                extension=user.extension,
                name=user.name,
                city=user.city,
                id=str(user.id),
                email=user.email,
                role=str(user.role),
                mobile=user.mobile,
                rank=user.rank,
                skills=[str(skill) for skill in user.skills or ()],
                presence=Presence(str(user.presence)),
                settings=dict(user.settings or {}),
            )
            for user in snapshot.users
            if user.extension  # a user without an extension cannot be rung or call
        ],
        devices=[
            SourceDevice(
                user_id=str(device.user_id),
                username=device.username,
                name=device.name,
                ha1_md5=device.ha1_md5,
                ha1_sha256=device.ha1_sha256,
            )
            for device in snapshot.devices
        ],
        groups=[
            SourceGroup(
                name=group.name,
                strategy=RingStrategy(group.strategy),
                members=members.get(str(group.id), []),
                ring_timeout_s=group.ring_timeout_s,
                id=str(group.id),
                escalation_interval_s=group.escalation_interval_s,
                member_ring_s=group.member_ring_s,
                overflow=group.overflow,
            )
            for group in snapshot.groups
        ],
        schedules=[
            SourceSchedule(
                id=str(row.id),
                name=row.name,
                time_zone=row.time_zone,
                weekly=list(row.weekly or ()),
                special_days=list(row.special_days or ()),
            )
            for row in snapshot.schedules
        ],
        ivr_menus=[
            SourceIvrMenu(
                id=str(row.id),
                name=row.name,
                prompt=dict(row.prompt or {}),
                options=dict(row.options or {}),
                timeout_s=row.timeout_s,
                max_retries=row.max_retries,
                timeout_target=row.timeout_target,
                invalid_target=row.invalid_target,
            )
            for row in snapshot.ivr_menus
        ],
        route_plans=[
            SourceRoutePlan(id=str(row.id), name=row.name, steps=list(row.steps or ()))
            for row in snapshot.route_plans
        ],
        numbers=snapshot.numbers,
        decision_secret=snapshot.decision_secret,
        number_greetings=snapshot.number_greetings,
        language=snapshot.language,
        trunks=[
            *(_tenant_trunk(row) for row in snapshot.trunks),
            *(platform_trunk_source(trunk) for trunk in snapshot.platform_trunks),
        ],
        outbound=outbound_policy(tenant),
        feature_codes=stored_codes(tenant).entry(),
        conference_rooms=[
            SourceConferenceRoom(
                id=str(room.id),
                extension=room.extension,
                name=room.name,
                pin=room.pin,
                max_participants=room.max_participants,
            )
            for room in snapshot.conference_rooms
        ],
    )


def compile_tenant_config(snapshot: TenantSnapshot, city: str) -> NodeConfig:
    """The config of ``snapshot.tenant``'s node in ``city`` (with its content version)."""
    return compile_node_config(tenant_source(snapshot), city)
