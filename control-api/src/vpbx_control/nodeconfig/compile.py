"""Compiles one tenant's PBX, as the database and the number store hold it, into a NodeConfig.

A pure function of its inputs: the same rows give the same document and so the
same version (lists are sorted, nothing depends on query order). References
between objects are resolved here, so the node gets names it can act on and a
renamed group never breaks a number or an IVR option.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from vpbx_common.manifests import UNROUTED_ENTRY, Number, entry_reference
from vpbx_common.nodeconfig import (
    DeviceEntry,
    GroupEntry,
    HoursEntry,
    IvrMenuEntry,
    NodeConfig,
    NumberEntry,
    RoutePlanEntry,
    ScheduleEntry,
    SpecialDayEntry,
    TargetEntry,
    TargetType,
    UserEntry,
    WeeklyHoursEntry,
)

from ..groups.models import GroupMemberRow, GroupRow
from ..ivr.models import IvrMenuRow
from ..routeplans.models import RoutePlanRow
from ..schedules.models import ScheduleRow
from ..tenants.models import TenantRow
from ..users.models import DeviceRow, UserRow

logger = logging.getLogger(__name__)

# The id key of each kind of Target document (targets.py) and of number entry references.
_ID_KEYS: dict[TargetType, str] = {
    "user": "user_id",
    "voicemail": "user_id",
    "group": "group_id",
    "ivr": "ivr_menu_id",
    "route-plan": "route_plan_id",
}


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


class _Resolver:
    """Turns stored references (ids) into what the node acts on (names, extensions)."""

    def __init__(self, snapshot: TenantSnapshot) -> None:
        self.users = {str(row.id): row for row in snapshot.users}
        self.groups = {str(row.id): row for row in snapshot.groups}
        self.ivr_menus = {str(row.id): row for row in snapshot.ivr_menus}
        self.route_plans = {str(row.id): row for row in snapshot.route_plans}
        self.extensions = {row.extension: row for row in snapshot.users if row.extension}
        self.group_names = {row.name: row for row in snapshot.groups}

    def _name_of(self, kind: str, ident: str) -> str | None:
        if kind in ("user", "voicemail"):
            user = self.users.get(ident)
            return user.extension if user is not None else None
        row: GroupRow | IvrMenuRow | RoutePlanRow | None = None
        if kind == "group":
            row = self.groups.get(ident)
        elif kind == "ivr":
            row = self.ivr_menus.get(ident)
        elif kind == "route-plan":
            row = self.route_plans.get(ident)
        return row.name if row is not None else None

    def target(self, document: Mapping[str, Any] | None) -> TargetEntry | None:
        """A Target document (targets.py) as the node sees it."""
        if not document:
            return None
        kind = str(document.get("type", ""))
        if kind == "hangup":
            return TargetEntry(type="hangup")
        if kind == "external":
            return TargetEntry(type="external", ref=str(document.get("number", "")))
        typed = next((known for known in _ID_KEYS if known == kind), None)
        if typed is None:
            return TargetEntry(type="unrouted")
        ident = document.get(_ID_KEYS[typed])
        if ident is None and kind == "voicemail":
            return TargetEntry(type="voicemail")  # the tenant's general box
        name = self._name_of(kind, str(ident))
        if name is None:
            # Deleted since (or a user without an extension): nothing to ring.
            return TargetEntry(type="unrouted", id=str(ident))
        return TargetEntry(type=typed, id=str(ident), ref=name)

    def entry(self, entry: str) -> TargetEntry:
        """A Number's entry: ``unrouted``, ``<kind>:<uuid>``, an extension or a group name."""
        if entry == UNROUTED_ENTRY:
            return TargetEntry(type="unrouted")
        reference = entry_reference(entry)
        if reference is not None:
            kind, ident = reference
            key = "ivr_menu_id" if kind == "ivr" else kind.replace("-", "_") + "_id"
            resolved = self.target({"type": kind, key: str(ident)})
            assert resolved is not None
            return resolved
        if entry.isdigit():
            user = self.extensions.get(entry)
            return TargetEntry(type="user", id=str(user.id) if user else None, ref=entry)
        group = self.group_names.get(entry)
        return TargetEntry(type="group", id=str(group.id) if group else None, ref=entry)


def entry_text(target: TargetEntry) -> str:
    """The NumberEntry.entry string of a resolved target."""
    if target.type in ("user", "group") and target.ref:
        return target.ref
    if target.type in ("ivr", "route-plan") and target.ref:
        return f"{target.type}:{target.ref}"
    return UNROUTED_ENTRY


def _users(snapshot: TenantSnapshot, default_city: str) -> list[UserEntry]:
    entries = [
        UserEntry(
            extension=user.extension,
            name=user.name,
            city=user.city or default_city,
            email=user.email,
            id=str(user.id),
            role=str(user.role),
            mobile=user.mobile,
            rank=user.rank,
            skills=[str(skill) for skill in user.skills or ()],
            presence=str(user.presence),
            settings=dict(user.settings or {}),
        )
        for user in snapshot.users
        if user.extension
    ]
    return sorted(entries, key=lambda entry: entry.extension)


def _devices(snapshot: TenantSnapshot, resolver: _Resolver) -> list[DeviceEntry]:
    entries = []
    for device in snapshot.devices:
        owner = resolver.users.get(str(device.user_id))
        if owner is None or not owner.extension:
            continue  # a device rings its user's extension; without one it has nothing to do
        entries.append(
            DeviceEntry(
                username=device.username,
                extension=owner.extension,
                name=device.name,
                ha1_md5=device.ha1_md5,
                ha1_sha256=device.ha1_sha256,
            )
        )
    return sorted(entries, key=lambda entry: entry.username)


def _groups(snapshot: TenantSnapshot, resolver: _Resolver) -> list[GroupEntry]:
    members_of: dict[str, list[GroupMemberRow]] = {}
    for member in snapshot.members:
        members_of.setdefault(str(member.group_id), []).append(member)
    entries = []
    for group in snapshot.groups:
        ordered: list[tuple[int, str, int]] = []
        for member in members_of.get(str(group.id), []):
            user = resolver.users.get(str(member.user_id))
            if user is not None and user.extension:
                ordered.append((member.position, user.extension, member.weight))
        ordered.sort()
        entries.append(
            GroupEntry(
                name=group.name,
                strategy=group.strategy,
                members=[extension for _, extension, _ in ordered],
                ring_timeout_s=group.ring_timeout_s,
                id=str(group.id),
                weights={extension: weight for _, extension, weight in ordered},
                escalation_interval_s=group.escalation_interval_s,
                overflow=resolver.target(group.overflow),
            )
        )
    return sorted(entries, key=lambda entry: entry.name)


def _hours(items: Iterable[Mapping[str, Any]]) -> list[HoursEntry]:
    return [HoursEntry(start=str(item["start"]), end=str(item["end"])) for item in items]


def _schedules(snapshot: TenantSnapshot) -> list[ScheduleEntry]:
    entries = [
        ScheduleEntry(
            id=str(row.id),
            name=row.name,
            time_zone=row.time_zone,
            weekly=[
                WeeklyHoursEntry(
                    day=str(item["day"]), start=str(item["start"]), end=str(item["end"])
                )
                for item in row.weekly or ()
            ],
            special_days=[
                SpecialDayEntry(
                    date=str(item["date"]),
                    name=str(item.get("name", "")),
                    hours=_hours(item.get("hours") or ()),
                )
                for item in row.special_days or ()
            ],
        )
        for row in snapshot.schedules
    ]
    return sorted(entries, key=lambda entry: entry.name)


def _ivr_menus(snapshot: TenantSnapshot, resolver: _Resolver) -> list[IvrMenuEntry]:
    entries = []
    for row in snapshot.ivr_menus:
        options: dict[str, TargetEntry] = {}
        for digit, document in sorted((row.options or {}).items()):
            target = resolver.target(document)
            if target is not None:
                options[str(digit)] = target
        entries.append(
            IvrMenuEntry(
                id=str(row.id),
                name=row.name,
                prompt=dict(row.prompt or {}),
                options=options,
                timeout_s=row.timeout_s,
                max_retries=row.max_retries,
                timeout_target=resolver.target(row.timeout_target),
                invalid_target=resolver.target(row.invalid_target),
            )
        )
    return sorted(entries, key=lambda entry: entry.name)


def _route_plans(snapshot: TenantSnapshot) -> list[RoutePlanEntry]:
    entries = [
        RoutePlanEntry(
            id=str(row.id),
            name=row.name,
            steps=[step for step in row.steps or () if isinstance(step, dict)],
        )
        for row in snapshot.route_plans
    ]
    return sorted(entries, key=lambda entry: entry.name)


def _numbers(snapshot: TenantSnapshot, resolver: _Resolver) -> list[NumberEntry]:
    entries = []
    for number in snapshot.numbers:
        spec = number.spec
        if spec.tenant != snapshot.tenant.id:
            continue
        target = resolver.entry(spec.entry)
        if target.type == "unrouted" and spec.entry != UNROUTED_ENTRY:
            logger.warning(
                "tenant=%s number %s: entry %s refers to nothing; calls get 480",
                spec.tenant,
                spec.number,
                spec.entry,
            )
        entries.append(
            NumberEntry(
                number=spec.number,
                city=spec.city,
                label=spec.label,
                entry=entry_text(target),
                channels=spec.channels,
                target=target,
            )
        )
    return sorted(entries, key=lambda entry: entry.number)


def compile_tenant_config(snapshot: TenantSnapshot, city: str) -> NodeConfig:
    """The config of ``snapshot.tenant``'s node in ``city`` (with its content version).

    Every node of a tenant gets all of the tenant's users, groups and numbers: a
    call arriving in one city may ring users in another.
    """
    tenant = snapshot.tenant
    cities = [str(name) for name in tenant.cities or ()]
    if city not in cities:
        raise ValueError(f"tenant {tenant.id!r} does not serve city {city!r}")
    resolver = _Resolver(snapshot)
    compiled = NodeConfig(
        tenant=tenant.id,
        display_name=tenant.display_name,
        sip_domain=tenant.sip_domain,
        city=city,
        suspended=tenant.suspended,
        concurrent_calls=tenant.concurrent_calls,
        users=_users(snapshot, cities[0]),
        groups=_groups(snapshot, resolver),
        numbers=_numbers(snapshot, resolver),
        devices=_devices(snapshot, resolver),
        schedules=_schedules(snapshot),
        ivr_menus=_ivr_menus(snapshot, resolver),
        route_plans=_route_plans(snapshot),
    )
    return compiled.with_version()
