"""The compiled configuration of one media node (one tenant in one city).

The control API compiles it (``compile.py``) and serves it to the nodes
(``GET /internal/v1/node-config/<tenant>/<city>``, ETag = ``version``); a node
without a control API reads it from a JSON file (the operator's ConfigMap, or
a file written by hand). It carries digest HA1 values instead of SIP
passwords, so a leaked document does not reveal them, and the tenant's decision
secret (which signs HTTP decisions) in clear: serve it to nodes only.

Lookups the node makes per request (credentials, users, numbers, groups) go
through indexes built once per document.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from pydantic import Field, PrivateAttr, model_validator

from vpbx_common.manifests import RecordingPolicy
from vpbx_common.pbx import Presence, RingStrategy
from vpbx_common.trunks import TrunkTransport

from .prompts import Prompt, TonePrompt
from .steps import Step
from .targets import ConfigModel, Target, UnroutedTarget


class UserSettingsEntry(ConfigModel):
    forward_to_mobile: bool = False  # follow-me: the mobile rings too
    forward_after_s: int = 20  # ... this long after the devices started
    mobile_parallel: bool = False  # ... or together with the devices
    # Every call to the user goes to this E.164 number instead of their devices.
    forward_all_to: str | None = None
    wrap_up_s: int = 0  # after a call, no new call is offered for this long
    voicemail: bool = True
    # Record this user's calls: None follows the number and the tenant's policy; set, it
    # wins over both (the most specific setting wins: user, then number, then tenant).
    record: bool | None = None
    # The user's own voicemail greeting; None: the platform's default greeting.
    voicemail_greeting: Prompt | None = None
    # The number this user's outbound calls show (E.164, one of the tenant's numbers);
    # None: chosen by the callee's region (local presence).
    caller_id: str | None = None


class UserEntry(ConfigModel):
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
    presence: Presence = Presence.AVAILABLE
    settings: UserSettingsEntry = Field(default_factory=UserSettingsEntry)


class DeviceEntry(ConfigModel):
    """A SIP device with its own credentials; a call to the extension rings all of them."""

    username: str
    extension: str
    name: str = ""
    # H(username:sip_domain:password)
    ha1_md5: str
    ha1_sha256: str


class GroupEntry(ConfigModel):
    name: str
    strategy: RingStrategy = RingStrategy.RING_ALL
    members: list[str]  # extensions, in ring order
    ring_timeout_s: int  # the whole group rings at most this long, then the overflow
    id: str | None = None
    weights: dict[str, int] = Field(default_factory=dict)  # extension -> weight
    escalation_interval_s: int | None = None
    # One-at-a-time strategies ring each member this long; None: an equal share of
    # ring_timeout_s.
    member_ring_s: int | None = None
    overflow: Target | None = None  # None: hang up


class NumberEntry(ConfigModel):
    number: str
    city: str
    label: str | None
    channels: int
    target: Target = Field(default_factory=UnroutedTarget)
    # Record calls to this number: None follows the tenant's recording policy.
    record: bool | None = None
    # Played to every caller of this number before routing; None: none.
    greeting: Prompt | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_entry_text(cls, data: Any) -> Any:
        """Documents of compilers before typed targets carried ``entry`` text instead."""
        if isinstance(data, dict) and "target" not in data and "entry" in data:
            return {**data, "target": _legacy_entry_target(str(data["entry"]))}
        return data


def _legacy_entry_target(entry: str) -> dict[str, str]:
    kind, separator, name = entry.partition(":")
    if separator and kind in ("ivr", "route-plan"):
        return {"type": kind, "name": name}
    if entry == "unrouted":
        return {"type": "unrouted"}
    if entry.isdigit():
        return {"type": "user", "extension": entry}
    return {"type": "group", "name": entry}


class HoursEntry(ConfigModel):
    start: str  # HH:MM
    end: str  # HH:MM; "24:00" ends at midnight


class WeeklyHoursEntry(HoursEntry):
    day: str  # mon..sun


class SpecialDayEntry(ConfigModel):
    date: str  # YYYY-MM-DD
    name: str = ""
    hours: list[HoursEntry] = Field(default_factory=list)  # empty: closed all day


class ScheduleEntry(ConfigModel):
    id: str | None = None
    name: str
    time_zone: str
    weekly: list[WeeklyHoursEntry] = Field(default_factory=list)
    special_days: list[SpecialDayEntry] = Field(default_factory=list)


class IvrMenuEntry(ConfigModel):
    id: str | None = None
    name: str
    prompt: Prompt = Field(default_factory=TonePrompt)
    options: dict[str, Target] = Field(default_factory=dict)  # digit -> target
    timeout_s: int = 5
    max_retries: int = 2  # replays of the prompt before the timeout / invalid target
    timeout_target: Target | None = None  # None: hang up
    invalid_target: Target | None = None


class RoutePlanEntry(ConfigModel):
    id: str | None = None
    name: str
    steps: list[Step] = Field(default_factory=list)


# A room holds at most this many participants (one mixer tick mixes them all).
MAX_ROOM_PARTICIPANTS = 32


class ConferenceRoomEntry(ConfigModel):
    """A conference room: dial its extension (or route a call to it) to join.

    Rooms live in the media node: each node of the tenant has its own room per
    extension, so callers served by another city's node meet in that node's room.
    The PIN is in clear (the node compares what the caller keys in): serve node
    configs to nodes only.
    """

    extension: str
    name: str
    id: str | None = None
    pin: str | None = None  # 4-8 digits; None: anyone who reaches the room joins
    max_participants: int = Field(default=10, ge=2, le=MAX_ROOM_PARTICIPANTS)


class TrunkEntry(ConfigModel):
    """A carrier trunk the node may send calls through (and take calls from).

    The password is in clear: the node answers the carrier's digest challenges with
    it, and the realm that would make an HA1 is only known from the challenge.
    Serve node configs to nodes only.
    """

    # A tenant trunk's UUID; a platform trunk's is ``platform:<name>``. Registration
    # status is reported under it (vpbx_common.trunks.TrunkStatusStore).
    id: str
    name: str
    scope: Literal["tenant", "platform"] = "tenant"
    host: str
    port: int = 5060
    transport: TrunkTransport = TrunkTransport.UDP
    registers: bool = False  # registers with digest auth; else IP-authenticated both ways
    username: str | None = None
    password: str | None = None
    register_expires_s: int = 300
    # CIDRs calls from this trunk may come from; empty: the addresses ``host`` resolves to.
    allowed_addresses: list[str] = Field(default_factory=list)
    # Lower goes first; the next trunk is tried on a 5xx, 408 or no answer.
    priority: int = 100
    # The carrier accepts a From/P-Asserted-Identity number that is not the tenant's
    # (a forwarded call shows its original caller); else the tenant's number is shown.
    passes_caller_id: bool = False


class OutboundEntry(ConfigModel):
    """The tenant's outbound policy as the node enforces it (see manifests.OutboundPolicy)."""

    country: str = "RU"  # national forms people dial are read with this country
    international: bool = False
    premium: bool = False
    max_concurrent: int = 0  # 0: only the plan's concurrent_calls limit
    max_minutes_per_day: int = 0  # 0: no daily cap
    # Shown when no number of the tenant is in or near the callee's region; None: the
    # tenant's first number.
    default_caller_id: str | None = None


class FeatureCodesEntry(ConfigModel):
    """What a tenant's phones dial for the PBX's features (each tenant may choose its own)."""

    pickup_group: str = "*8"  # answer a call ringing someone of the caller's groups
    pickup_directed: str = "**"  # + extension: answer a call ringing that extension
    park: str = "*7"  # + slot 1-9: transfer there to park, dial it to take the call back
    listen: str = "*33"  # + extension: a supervisor listens to their call
    whisper: str = "*34"  # + extension: ... and talks to the agent only
    barge: str = "*35"  # + extension: ... and joins the conversation
    # A call parked this long rings the phones of whoever parked it (0: never).
    park_recall_s: int = 120


class Credentials(ConfigModel):
    """What the registrar needs to check a digest: the HA1s and the extension they ring."""

    username: str
    extension: str
    ha1_md5: str
    ha1_sha256: str


class NodeConfig(ConfigModel):
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
    # Signs the tenant's HTTP decisions (X-Vpbx-Signature, vpbx_common.signing); None:
    # the tenant has none yet and decisions go unsigned.
    decision_secret: str | None = None
    # The language of the platform's spoken phrases (queue announcements), BCP 47.
    language: str = "ru-RU"
    # Tenant trunks first, then the platform's, each by priority: the order calls try them.
    trunks: list[TrunkEntry] = Field(default_factory=list)
    outbound: OutboundEntry = Field(default_factory=OutboundEntry)
    feature_codes: FeatureCodesEntry = Field(default_factory=FeatureCodesEntry)
    conference_rooms: list[ConferenceRoomEntry] = Field(default_factory=list)
    version: str = ""

    _users: dict[str, UserEntry] = PrivateAttr(default_factory=dict)
    _groups: dict[str, GroupEntry] = PrivateAttr(default_factory=dict)
    _numbers: dict[str, NumberEntry] = PrivateAttr(default_factory=dict)
    _schedules: dict[str, ScheduleEntry] = PrivateAttr(default_factory=dict)
    _ivr_menus: dict[str, IvrMenuEntry] = PrivateAttr(default_factory=dict)
    _route_plans: dict[str, RoutePlanEntry] = PrivateAttr(default_factory=dict)
    _conference_rooms: dict[str, ConferenceRoomEntry] = PrivateAttr(default_factory=dict)
    _credentials: dict[str, Credentials] = PrivateAttr(default_factory=dict)

    def model_post_init(self, context: Any, /) -> None:
        self._users = {user.extension: user for user in self.users}
        self._groups = {group.name: group for group in self.groups}
        self._numbers = {number.number: number for number in self.numbers}
        self._schedules = {schedule.name: schedule for schedule in self.schedules}
        self._ivr_menus = {menu.name: menu for menu in self.ivr_menus}
        self._route_plans = {plan.name: plan for plan in self.route_plans}
        self._conference_rooms = {room.extension: room for room in self.conference_rooms}
        credentials: dict[str, Credentials] = {}
        for user in self.users:
            if user.ha1_md5 is not None and user.ha1_sha256 is not None:
                credentials[user.extension] = Credentials(
                    username=user.extension,
                    extension=user.extension,
                    ha1_md5=user.ha1_md5,
                    ha1_sha256=user.ha1_sha256,
                )
        for device in self.devices:  # a device's username wins over an old-style user's
            credentials[device.username] = Credentials(
                username=device.username,
                extension=device.extension,
                ha1_md5=device.ha1_md5,
                ha1_sha256=device.ha1_sha256,
            )
        self._credentials = credentials

    def content_version(self) -> str:
        """Hash of everything but the version itself: equal content, equal version."""
        canonical = self.model_dump_json(exclude={"version"})
        return "sha256:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:32]

    def with_version(self) -> NodeConfig:
        return self.model_copy(update={"version": self.content_version()})

    def user(self, extension: str) -> UserEntry | None:
        return self._users.get(extension)

    def group(self, name: str) -> GroupEntry | None:
        return self._groups.get(name)

    def number(self, e164: str) -> NumberEntry | None:
        return self._numbers.get(e164)

    def schedule(self, name: str) -> ScheduleEntry | None:
        return self._schedules.get(name)

    def ivr_menu(self, name: str) -> IvrMenuEntry | None:
        return self._ivr_menus.get(name)

    def route_plan(self, name: str) -> RoutePlanEntry | None:
        return self._route_plans.get(name)

    def conference_room(self, extension: str) -> ConferenceRoomEntry | None:
        return self._conference_rooms.get(extension)

    def credentials(self, username: str) -> Credentials | None:
        """The digest credentials of a SIP username: a device's, else an old-style user's."""
        return self._credentials.get(username)

    def extension_for(self, username: str) -> str | None:
        """The extension a SIP username rings and calls as (None: unknown username)."""
        credentials = self._credentials.get(username)
        return credentials.extension if credentials is not None else None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> NodeConfig:
        return cls.model_validate_json(text)
