"""The one compiler of node configs: a tenant's PBX, as stored, into a NodeConfig.

Both sources of PBX config feed it: the control API (database rows) and the
platform file (PbxConfig manifests, for nodes without a control API). Each
turns what it stores into a ``TenantSource``; everything else - resolving
references, sorting, versioning - happens here once.

A pure function: the same source gives the same document and so the same
version (lists are sorted, nothing depends on input order). References
between objects are resolved here, so the node gets names it can act on and a
renamed group never breaks a number or an IVR option.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from pydantic import TypeAdapter, ValidationError

from vpbx_common.manifests import (
    UNROUTED_ENTRY,
    Number,
    OutboundPolicy,
    RecordingPolicy,
    entry_reference,
)
from vpbx_common.pbx import Presence, RingStrategy
from vpbx_common.trunks import TrunkUriError, parse_trunk_uri

from . import steps as compiled
from .model import (
    ConferenceRoomEntry,
    DeviceEntry,
    FeatureCodesEntry,
    GroupEntry,
    HoursEntry,
    IvrMenuEntry,
    NodeConfig,
    NumberEntry,
    OutboundEntry,
    RoutePlanEntry,
    ScheduleEntry,
    SpecialDayEntry,
    TrunkEntry,
    UserEntry,
    UserSettingsEntry,
    WeeklyHoursEntry,
)
from .prompts import Prompt, TonePrompt
from .targets import (
    ConferenceTarget,
    ExternalTarget,
    GroupTarget,
    HangupReason,
    HangupTarget,
    IvrTarget,
    RoutePlanTarget,
    Target,
    UnroutedTarget,
    UserTarget,
    VoicemailTarget,
)

logger = logging.getLogger(__name__)

Document = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class SourceUser:
    extension: str
    name: str
    city: str | None = None
    id: str | None = None
    email: str | None = None
    role: str | None = None
    mobile: str | None = None
    rank: int = 0
    skills: Sequence[str] = ()
    presence: Presence = Presence.AVAILABLE
    settings: Document = field(default_factory=dict)
    ha1_md5: str | None = None
    ha1_sha256: str | None = None


@dataclass(frozen=True, slots=True)
class SourceDevice:
    user_id: str
    username: str
    name: str
    ha1_md5: str
    ha1_sha256: str


@dataclass(frozen=True, slots=True)
class SourceGroup:
    name: str
    strategy: RingStrategy
    members: Sequence[tuple[str, int]]  # (extension, weight) in ring order
    ring_timeout_s: int
    id: str | None = None
    escalation_interval_s: int | None = None
    member_ring_s: int | None = None
    overflow: Document | None = None  # a stored Target document


@dataclass(frozen=True, slots=True)
class SourceSchedule:
    id: str
    name: str
    time_zone: str
    weekly: Sequence[Document] = ()
    special_days: Sequence[Document] = ()


@dataclass(frozen=True, slots=True)
class SourceIvrMenu:
    id: str
    name: str
    prompt: Document
    options: Mapping[str, Document]
    timeout_s: int
    max_retries: int
    timeout_target: Document | None = None
    invalid_target: Document | None = None


@dataclass(frozen=True, slots=True)
class SourceRoutePlan:
    id: str
    name: str
    steps: Sequence[Document]


@dataclass(frozen=True, slots=True)
class SourceTrunk:
    """A carrier trunk: the tenant's own (``/v1/trunks``) or the platform's (Trunk manifest)."""

    id: str
    name: str
    uri: str  # sip:HOST[:PORT][;transport=udp|tcp]
    scope: Literal["tenant", "platform"] = "tenant"
    registers: bool = False
    username: str | None = None
    password: str | None = None  # in clear: the node answers digest challenges with it
    allowed_addresses: Sequence[str] = ()
    priority: int = 100
    passes_caller_id: bool = False


@dataclass(frozen=True, slots=True)
class SourceConferenceRoom:
    """A conference room (``/v1/conference-rooms``): its extension rings no user."""

    id: str
    extension: str
    name: str
    pin: str | None = None  # in clear: the node compares what callers key in
    max_participants: int = 10


@dataclass(frozen=True, slots=True)
class TenantSource:
    """Everything of one tenant a node config is made of, as its owner stores it."""

    tenant: str
    display_name: str
    sip_domain: str
    cities: Sequence[str]
    suspended: bool = False
    concurrent_calls: int = 0
    recording_policy: RecordingPolicy = RecordingPolicy.OFF
    users: Sequence[SourceUser] = ()
    devices: Sequence[SourceDevice] = ()
    groups: Sequence[SourceGroup] = ()
    schedules: Sequence[SourceSchedule] = ()
    ivr_menus: Sequence[SourceIvrMenu] = ()
    route_plans: Sequence[SourceRoutePlan] = ()
    numbers: Sequence[Number] = ()
    decision_secret: str | None = None
    # Number (E.164) -> the stored Prompt document its callers hear before routing.
    number_greetings: Mapping[str, Document] = field(default_factory=dict)
    language: str = "ru-RU"  # of the platform's spoken phrases
    # The tenant's own trunks and the platform's, in any order (the compiler sorts them).
    trunks: Sequence[SourceTrunk] = ()
    outbound: OutboundPolicy = field(default_factory=OutboundPolicy)
    feature_codes: FeatureCodesEntry = field(default_factory=FeatureCodesEntry)
    conference_rooms: Sequence[SourceConferenceRoom] = ()


_PROMPT = TypeAdapter[Prompt](Prompt)


class _Resolver:
    """Turns stored references (ids, entry strings) into typed targets the node acts on."""

    def __init__(self, source: TenantSource) -> None:
        self.users = {user.id: user for user in source.users if user.id is not None}
        self.extensions = {user.extension: user for user in source.users}
        self.groups = {group.id: group for group in source.groups if group.id is not None}
        self.group_names = {group.name: group for group in source.groups}
        self.ivr_menus = {menu.id: menu for menu in source.ivr_menus}
        self.route_plans = {plan.id: plan for plan in source.route_plans}
        self.schedules = {schedule.id: schedule for schedule in source.schedules}
        self.rooms = {room.id: room for room in _usable_rooms(source)}

    def target(self, document: Document | None) -> Target | None:
        """A stored Target document as the node sees it (None stays None)."""
        if not document:
            return None
        kind = str(document.get("type", ""))
        if kind == "hangup":
            reason = str(document.get("reason", HangupReason.NORMAL))
            return HangupTarget(reason=HangupReason(reason))
        if kind == "external":
            return ExternalTarget(number=str(document.get("number", "")))
        if kind in ("user", "voicemail"):
            ident = document.get("user_id")
            if ident is None and kind == "voicemail":
                return VoicemailTarget()  # the tenant's general box
            user = self.users.get(str(ident))
            if user is None:
                return UnroutedTarget(missing=f"user:{ident}")
            if kind == "voicemail":
                return VoicemailTarget(extension=user.extension, user_id=user.id)
            return UserTarget(extension=user.extension, user_id=user.id)
        ident = str(document.get(_ID_KEYS.get(kind, ""), ""))
        if kind == "group":
            group = self.groups.get(ident)
            if group is not None:
                return GroupTarget(name=group.name, group_id=group.id)
        elif kind == "ivr":
            menu = self.ivr_menus.get(ident)
            if menu is not None:
                return IvrTarget(name=menu.name, ivr_menu_id=menu.id)
        elif kind == "route-plan":
            plan = self.route_plans.get(ident)
            if plan is not None:
                return RoutePlanTarget(name=plan.name, route_plan_id=plan.id)
        elif kind == "conference":
            room = self.rooms.get(ident)
            if room is not None:
                return ConferenceTarget(room=room.extension, room_id=room.id)
        return UnroutedTarget(missing=f"{kind}:{ident}" if kind else None)

    def entry(self, entry: str) -> Target:
        """A Number's entry: ``unrouted``, ``<kind>:<uuid>``, an extension or a group name."""
        if entry == UNROUTED_ENTRY:
            return UnroutedTarget()
        reference = entry_reference(entry)
        if reference is not None:
            kind, ident = reference
            resolved = self.target({"type": kind, _ID_KEYS[kind]: str(ident)})
            assert resolved is not None
            return resolved
        if entry.isdigit():
            user = self.extensions.get(entry)
            room = next((r for r in self.rooms.values() if r.extension == entry), None)
            if user is None and room is not None:
                return ConferenceTarget(room=room.extension, room_id=room.id)
            if user is None:
                return UnroutedTarget(missing=f"extension:{entry}")
            return UserTarget(extension=entry, user_id=user.id)
        group = self.group_names.get(entry)
        if group is None:
            return UnroutedTarget(missing=f"group:{entry}")
        return GroupTarget(name=entry, group_id=group.id)

    def step(self, document: Document) -> compiled.Step | None:
        """A stored route-plan step with its references resolved (None: unknown step type)."""
        kind = document.get("type")
        if kind == "schedule":
            ident = str(document.get("schedule_id", ""))
            schedule = self.schedules.get(ident)
            branches = document.get("branches") or {}
            return compiled.ScheduleStep(
                schedule=schedule.name if schedule is not None else None,
                schedule_id=ident,
                open=self.steps(branches.get("open") or ()),
                closed=self.steps(branches.get("closed") or ()),
            )
        if kind == "crm-lookup":
            categories = {
                str(name): target
                for name, doc in sorted((document.get("categories") or {}).items())
                if (target := self.target(doc)) is not None
            }
            return compiled.CrmLookupStep(
                to_responsible_manager=bool(document.get("to_responsible_manager", True)),
                categories=categories,
                manager_timeout_s=int(document.get("manager_timeout_s", 20)),
                group_timeout_s=int(document.get("group_timeout_s", 20)),
                everyone_timeout_s=int(document.get("everyone_timeout_s", 0)),
            )
        if kind == "http-decision":
            return compiled.HttpDecisionStep(
                url=str(document["url"]),
                timeout_ms=int(document.get("timeout_ms", 1500)),
                fallback=self.target(document.get("fallback")) or HangupTarget(),
            )
        if kind == "forward":
            return compiled.ForwardStep(number=str(document["number"]))
        if kind == "hangup":
            return compiled.HangupStep(reason=HangupReason(document.get("reason", "normal")))
        target = self.target({**document, "type": _STEP_TARGET_KIND.get(str(kind), "")})
        if kind == "ivr":
            return compiled.IvrStep(target=_narrow(target, IvrTarget))
        if kind == "group":
            return compiled.GroupStep(
                target=_narrow(target, GroupTarget), ring_timeout_s=document.get("ring_timeout_s")
            )
        if kind == "queue":
            return compiled.QueueStep(
                target=_narrow(target, GroupTarget),
                max_wait_s=int(document.get("max_wait_s", 300)),
                announce_position=bool(document.get("announce_position", False)),
                announce_every_s=int(document.get("announce_every_s") or 30),
                exit_digit=str(document["exit_digit"]) if document.get("exit_digit") else None,
                max_length=int(document["max_length"]) if document.get("max_length") else None,
                callback_digit=str(document["callback_digit"])
                if document.get("callback_digit")
                else None,
                callback_attempts=int(document.get("callback_attempts") or 3),
                callback_retry_s=int(document.get("callback_retry_s") or 120),
                music=_prompt(music)
                if isinstance(music := document.get("music"), Mapping)
                else None,
            )
        if kind == "user":
            return compiled.UserStep(
                target=_narrow(target, UserTarget), ring_timeout_s=document.get("ring_timeout_s")
            )
        if kind == "voicemail":
            return compiled.VoicemailStep(target=_narrow(target, VoicemailTarget))
        if kind == "route-plan":
            return compiled.RoutePlanStep(target=_narrow(target, RoutePlanTarget))
        if kind == "conference":
            return compiled.ConferenceStep(target=_narrow(target, ConferenceTarget))
        return None

    def steps(self, documents: Iterable[Any]) -> list[compiled.Step]:
        result = []
        for document in documents:
            if not isinstance(document, Mapping):
                continue
            step = self.step(document)
            if step is None:
                logger.warning("route-plan step of unknown type %r left out", document.get("type"))
                continue
            result.append(step)
        return result


# The id key of each kind of stored Target document (and of ``<kind>:<uuid>`` entries).
_ID_KEYS = {
    "user": "user_id",
    "voicemail": "user_id",
    "group": "group_id",
    "ivr": "ivr_menu_id",
    "route-plan": "route_plan_id",
    "conference": "room_id",
}
# Route-plan steps that name one object: the kind of Target they refer to.
_STEP_TARGET_KIND = {
    "ivr": "ivr",
    "group": "group",
    "queue": "group",
    "user": "user",
    "voicemail": "voicemail",
    "route-plan": "route-plan",
    "conference": "conference",
}


_T = TypeVar("_T")


def _narrow(target: Target | None, kind: type[_T]) -> _T | UnroutedTarget:
    if isinstance(target, kind):
        return target
    if isinstance(target, UnroutedTarget):
        return target
    return UnroutedTarget()


def _users(source: TenantSource, default_city: str) -> list[UserEntry]:
    entries = [
        UserEntry(
            extension=user.extension,
            name=user.name,
            city=user.city or default_city,
            ha1_md5=user.ha1_md5,
            ha1_sha256=user.ha1_sha256,
            email=user.email,
            id=user.id,
            role=user.role,
            mobile=user.mobile,
            rank=user.rank,
            skills=[str(skill) for skill in user.skills],
            presence=user.presence,
            settings=_user_settings(source, user),
        )
        for user in source.users
    ]
    return sorted(entries, key=lambda entry: entry.extension)


def _own_number(source: TenantSource, number: str | None, what: str) -> str | None:
    """``number`` when it is one of the tenant's numbers; a caller ID the tenant no
    longer holds (released since it was set) is dropped rather than shown."""
    if number is None:
        return None
    if any(n.spec.number == number and n.spec.tenant == source.tenant for n in source.numbers):
        return number
    logger.warning(
        "tenant=%s %s %s is not one of its numbers; caller ID by region instead",
        source.tenant,
        what,
        number,
    )
    return None


def _trunks(source: TenantSource) -> list[TrunkEntry]:
    """The tenant's trunks, then the platform's, each by priority (then name): the order
    outbound calls try them in."""
    entries: list[TrunkEntry] = []
    for trunk in source.trunks:
        try:
            address = parse_trunk_uri(trunk.uri)
        except TrunkUriError as error:
            # Stored trunks were checked when saved; only a hand-edited row gets here.
            logger.error(
                "tenant=%s trunk %s (%s) left out: %s", source.tenant, trunk.name, trunk.id, error
            )
            continue
        entries.append(
            TrunkEntry(
                id=trunk.id,
                name=trunk.name,
                scope=trunk.scope,
                host=address.host,
                port=address.port,
                transport=address.transport,
                registers=trunk.registers,
                username=trunk.username,
                password=trunk.password,
                allowed_addresses=list(trunk.allowed_addresses),
                priority=trunk.priority,
                passes_caller_id=trunk.passes_caller_id,
            )
        )
    scope_order = {"tenant": 0, "platform": 1}
    return sorted(
        entries, key=lambda entry: (scope_order[entry.scope], entry.priority, entry.name, entry.id)
    )


def _outbound(source: TenantSource) -> OutboundEntry:
    policy = source.outbound
    return OutboundEntry(
        country=policy.country,
        international=policy.international,
        premium=policy.premium,
        max_concurrent=policy.max_concurrent,
        max_minutes_per_day=policy.max_minutes_per_day,
        default_caller_id=_own_number(source, policy.default_caller_id, "default caller ID"),
    )


def _user_settings(source: TenantSource, user: SourceUser) -> UserSettingsEntry:
    settings = _settings(user.settings)
    caller_id = settings.caller_id
    if caller_id is None or _own_number(source, caller_id, f"user {user.extension}'s caller ID"):
        return settings
    return settings.model_copy(update={"caller_id": None})


def _settings(document: Document) -> UserSettingsEntry:
    # The greeting is read on its own: a prompt this node version cannot read must not
    # cost the user their other settings (voicemail on, recording), only the greeting.
    values = dict(document)
    greeting = values.pop("voicemail_greeting", None)
    try:
        settings = UserSettingsEntry.model_validate(values)
    except ValidationError:
        settings = UserSettingsEntry()
    if not greeting or not isinstance(greeting, Mapping):
        return settings
    return settings.model_copy(update={"voicemail_greeting": _prompt(greeting)})


def _devices(source: TenantSource, resolver: _Resolver) -> list[DeviceEntry]:
    entries = []
    for device in source.devices:
        owner = resolver.users.get(device.user_id)
        if owner is None:
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


def _groups(source: TenantSource, resolver: _Resolver) -> list[GroupEntry]:
    entries = [
        GroupEntry(
            name=group.name,
            strategy=group.strategy,
            members=[extension for extension, _ in group.members],
            ring_timeout_s=group.ring_timeout_s,
            id=group.id,
            weights={extension: weight for extension, weight in group.members},
            escalation_interval_s=group.escalation_interval_s,
            member_ring_s=group.member_ring_s,
            overflow=resolver.target(group.overflow),
        )
        for group in source.groups
    ]
    return sorted(entries, key=lambda entry: entry.name)


def _hours(items: Iterable[Document]) -> list[HoursEntry]:
    return [HoursEntry(start=str(item["start"]), end=str(item["end"])) for item in items]


def _schedules(source: TenantSource) -> list[ScheduleEntry]:
    entries = [
        ScheduleEntry(
            id=schedule.id,
            name=schedule.name,
            time_zone=schedule.time_zone,
            weekly=[
                WeeklyHoursEntry(
                    day=str(item["day"]), start=str(item["start"]), end=str(item["end"])
                )
                for item in schedule.weekly
            ],
            special_days=[
                SpecialDayEntry(
                    date=str(item["date"]),
                    name=str(item.get("name", "")),
                    hours=_hours(item.get("hours") or ()),
                )
                for item in schedule.special_days
            ],
        )
        for schedule in source.schedules
    ]
    return sorted(entries, key=lambda entry: entry.name)


def _prompt(document: Document) -> Prompt:
    try:
        return _PROMPT.validate_python(dict(document))
    except ValidationError:
        return TonePrompt()


def _ivr_menus(source: TenantSource, resolver: _Resolver) -> list[IvrMenuEntry]:
    entries = []
    for menu in source.ivr_menus:
        options: dict[str, Target] = {}
        for digit, document in sorted(menu.options.items()):
            target = resolver.target(document)
            if target is not None:
                options[str(digit)] = target
        entries.append(
            IvrMenuEntry(
                id=menu.id,
                name=menu.name,
                prompt=_prompt(menu.prompt),
                options=options,
                timeout_s=menu.timeout_s,
                max_retries=menu.max_retries,
                timeout_target=resolver.target(menu.timeout_target),
                invalid_target=resolver.target(menu.invalid_target),
            )
        )
    return sorted(entries, key=lambda entry: entry.name)


def _route_plans(source: TenantSource, resolver: _Resolver) -> list[RoutePlanEntry]:
    entries = [
        RoutePlanEntry(id=plan.id, name=plan.name, steps=resolver.steps(plan.steps))
        for plan in source.route_plans
    ]
    return sorted(entries, key=lambda entry: entry.name)


def _usable_rooms(source: TenantSource) -> list[SourceConferenceRoom]:
    """The rooms whose extension is no user's: the control API refuses the clash, so only
    a hand-edited row gets here, and the user keeps the extension."""
    users = {user.extension for user in source.users}
    rooms = []
    for room in source.conference_rooms:
        if room.extension in users:
            logger.error(
                "tenant=%s conference room %s (%s) left out: extension %s is a user's",
                source.tenant,
                room.name,
                room.id,
                room.extension,
            )
            continue
        rooms.append(room)
    return rooms


def _conference_rooms(source: TenantSource) -> list[ConferenceRoomEntry]:
    entries = [
        ConferenceRoomEntry(
            id=room.id,
            extension=room.extension,
            name=room.name,
            pin=room.pin,
            max_participants=room.max_participants,
        )
        for room in _usable_rooms(source)
    ]
    return sorted(entries, key=lambda entry: entry.extension)


def _numbers(source: TenantSource, resolver: _Resolver) -> list[NumberEntry]:
    entries = []
    for number in source.numbers:
        spec = number.spec
        if spec.tenant != source.tenant:
            continue
        target = resolver.entry(spec.entry)
        greeting = source.number_greetings.get(spec.number)
        if isinstance(target, UnroutedTarget) and target.missing is not None:
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
                channels=spec.channels,
                target=target,
                greeting=_prompt(greeting) if greeting else None,
                record=spec.record,
            )
        )
    return sorted(entries, key=lambda entry: entry.number)


def compile_node_config(source: TenantSource, city: str) -> NodeConfig:
    """The config of ``source``'s node in ``city`` (with its content version).

    Every node of a tenant gets all of the tenant's users, groups and numbers: a
    call arriving in one city may ring users in another. Numbers of other tenants
    are ignored.
    """
    if city not in source.cities:
        raise ValueError(f"tenant {source.tenant!r} does not serve city {city!r}")
    resolver = _Resolver(source)
    compiled_config = NodeConfig(
        tenant=source.tenant,
        display_name=source.display_name,
        sip_domain=source.sip_domain,
        city=city,
        suspended=source.suspended,
        recording_policy=source.recording_policy,
        concurrent_calls=source.concurrent_calls,
        users=_users(source, source.cities[0]),
        groups=_groups(source, resolver),
        numbers=_numbers(source, resolver),
        devices=_devices(source, resolver),
        schedules=_schedules(source),
        ivr_menus=_ivr_menus(source, resolver),
        route_plans=_route_plans(source, resolver),
        decision_secret=source.decision_secret,
        language=source.language,
        trunks=_trunks(source),
        outbound=_outbound(source),
        feature_codes=source.feature_codes,
        conference_rooms=_conference_rooms(source),
    )
    return compiled_config.with_version()
