"""The typed node-config contract: what the control API compiles and the media node reads.

- ``targets``: where a call goes (typed, references resolved);
- ``prompts``: what a node plays (stored audio, a tone, speech);
- ``steps``: route-plan steps as the node runs them;
- ``model``: the NodeConfig document and its entries;
- ``compile``: the one compiler, from a ``TenantSource``;
- ``manifest``: the platform file's manifests as a ``TenantSource``.
"""

from __future__ import annotations

from vpbx_common.manifests import UNROUTED_ENTRY

from .compile import (
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
)
from .manifest import manifest_source, platform_trunk_source
from .model import (
    MAX_ROOM_PARTICIPANTS,
    ConferenceRoomEntry,
    Credentials,
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
from .prompts import AudioPrompt, Prompt, TonePrompt, TtsPrompt
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
    describe,
)

CONFIG_CHANNEL_PREFIX = "vpbx:config:"


def config_channel(tenant: str) -> str:
    """The Redis pub/sub channel announcing that ``tenant``'s config changed."""
    return CONFIG_CHANNEL_PREFIX + tenant


__all__ = [
    "CONFIG_CHANNEL_PREFIX",
    "MAX_ROOM_PARTICIPANTS",
    "UNROUTED_ENTRY",
    "AudioPrompt",
    "ConferenceRoomEntry",
    "ConferenceTarget",
    "Credentials",
    "DeviceEntry",
    "ExternalTarget",
    "FeatureCodesEntry",
    "GroupEntry",
    "GroupTarget",
    "HangupReason",
    "HangupTarget",
    "HoursEntry",
    "IvrMenuEntry",
    "IvrTarget",
    "NodeConfig",
    "NumberEntry",
    "OutboundEntry",
    "Prompt",
    "RoutePlanEntry",
    "RoutePlanTarget",
    "ScheduleEntry",
    "SourceConferenceRoom",
    "SourceDevice",
    "SourceGroup",
    "SourceIvrMenu",
    "SourceRoutePlan",
    "SourceSchedule",
    "SourceTrunk",
    "SourceUser",
    "SpecialDayEntry",
    "Target",
    "TenantSource",
    "TonePrompt",
    "TrunkEntry",
    "TtsPrompt",
    "UnroutedTarget",
    "UserEntry",
    "UserSettingsEntry",
    "UserTarget",
    "VoicemailTarget",
    "WeeklyHoursEntry",
    "compile_node_config",
    "config_channel",
    "describe",
    "manifest_source",
    "platform_trunk_source",
]
