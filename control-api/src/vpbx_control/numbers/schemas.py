"""Request and response documents of /v1/numbers, and the Number entry reference codec.

A Number's ``spec.entry`` is a string (docs: helpers' entry format):
``<kind>:<uuid>`` with kind ``user``, ``group``, ``ivr``, ``route-plan`` or
``conference`` for
numbers set up through this API, the literal ``unrouted`` for a number with no
entry yet, or a plain name (a group name such as ``sales`` or an extension such
as ``"101"``) in numbers written by hand in a platform file. The API shows it as
a Target document, ``null`` for ``unrouted``, and ``{"type": "legacy", "name"}``
for a plain name; a legacy entry is replaced by writing a Target.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from vpbx_common.manifests import UNROUTED_ENTRY, DnsLabel, Number, entry_reference

from ..ivr.schemas import MenuPrompt, Prompt
from ..schema_base import StrictInput
from ..targets import (
    E164,
    ConferenceTarget,
    GroupTarget,
    IvrTarget,
    RoutePlanTarget,
    UserTarget,
)

UNROUTED = UNROUTED_ENTRY

# The Targets a number's entry can be: the kinds of ``<kind>:<uuid>``.
AnyEntryTarget = UserTarget | GroupTarget | IvrTarget | RoutePlanTarget | ConferenceTarget

EntryTarget = Annotated[
    UserTarget | GroupTarget | IvrTarget | RoutePlanTarget | ConferenceTarget,
    Field(
        discriminator="type",
        description="where calls to the number enter the PBX; null = not routed yet",
    ),
]

# entry kind -> (Target type, the Target's id field)
ENTRY_KINDS: dict[str, tuple[type[AnyEntryTarget], str]] = {
    "user": (UserTarget, "user_id"),
    "group": (GroupTarget, "group_id"),
    "ivr": (IvrTarget, "ivr_menu_id"),
    "route-plan": (RoutePlanTarget, "route_plan_id"),
    "conference": (ConferenceTarget, "room_id"),
}


class LegacyEntry(BaseModel):
    """An entry written by hand in a platform file: a group name or an extension."""

    type: Literal["legacy"] = "legacy"
    name: str = Field(examples=["sales"])


EntryOut = Annotated[
    UserTarget | GroupTarget | IvrTarget | RoutePlanTarget | ConferenceTarget | LegacyEntry,
    Field(discriminator="type"),
]


def stored_entry(target: AnyEntryTarget | None) -> str:
    """The ``spec.entry`` string for a Target (``unrouted`` for none)."""
    match target:
        case None:
            return UNROUTED
        case UserTarget(user_id=object_id):
            return f"user:{object_id}"
        case GroupTarget(group_id=object_id):
            return f"group:{object_id}"
        case IvrTarget(ivr_menu_id=object_id):
            return f"ivr:{object_id}"
        case RoutePlanTarget(route_plan_id=object_id):
            return f"route-plan:{object_id}"
        case ConferenceTarget(room_id=object_id):
            return f"conference:{object_id}"
    raise TypeError(f"not an entry target: {target!r}")


def entry_document(entry: str) -> AnyEntryTarget | LegacyEntry | None:
    """What the API shows for a stored ``spec.entry``."""
    if entry == UNROUTED:
        return None
    reference = entry_reference(entry)
    if reference is None:
        return LegacyEntry(name=entry)
    kind, object_id = reference
    model, key = ENTRY_KINDS[kind]
    return model.model_validate({key: object_id})


_PATTERN = re.compile(r"^\+?[0-9*]{1,16}$")


def _number_pattern(value: str) -> str:
    if not _PATTERN.fullmatch(value) or not any(c.isdigit() for c in value):
        raise ValueError(
            "a pattern is digits with '*' for any digits, e.g. +7495* (starts with),"
            " *777 (ends with) or 777 (contains)"
        )
    return value


NumberPattern = Annotated[
    str,
    AfterValidator(_number_pattern),
    Field(
        description=(
            "which numbers qualify: '*' stands for any digits and the pattern then"
            " covers the whole number ('+7495*' starts with +7495, '*777' ends with"
            " 777; a leading '+' may be left out); without '*' the digits may appear"
            " anywhere ('777'), or, starting with '+', it is the exact number"
        ),
        examples=["+7495*"],
    ),
]

Label = Annotated[
    str,
    Field(
        min_length=1,
        max_length=63,
        pattern=r"^\S(.*\S)?$",
        description="the ad channel the number is advertised in, recorded on its calls",
        examples=["yandex-direct"],
    ),
]
Channels = Annotated[
    int, Field(ge=0, le=10_000, description="calls the number may carry at once; 0 = unlimited")
]
Record = Annotated[
    bool | None,
    Field(
        description="record calls to this number: true or false; null follows the tenant's "
        "recording policy. A user's own `record` setting wins over it (most specific wins)",
        examples=[True],
    ),
]


class NumberProvision(StrictInput):
    """Take a number from the platform's pool: any free one in a city, one matching a
    pattern, or a specific one."""

    city: DnsLabel | None = Field(
        default=None,
        description="one of the tenant's cities; may be left out when `number` is given",
        examples=["msk"],
    )
    pattern: NumberPattern | None = None
    number: E164 | None = Field(default=None, description="this very number from the pool")
    entry: EntryTarget | None = None
    label: Label | None = None
    channels: Channels = 0
    record: Record = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "city": "msk",
                    "pattern": "+7495*",
                    "entry": {"type": "group", "group_id": "6f1c1f9e-7f0d-4b8e-9d55-0c1e1f3b2a10"},
                    "label": "yandex-direct",
                }
            ]
        },
    )


class NumberUpdate(StrictInput):
    """Set a number's entry route, ad-channel label, channel limit, greeting or recording.

    ``entry: null`` leaves the number unrouted (calls are refused); ``label:
    null`` removes the label; ``greeting: null`` removes the greeting; ``record:
    null`` follows the tenant's policy again; a field left out is not changed.
    """

    entry: EntryTarget | None = None
    label: Label | None = None
    channels: Channels | None = None
    greeting: Prompt | None = Field(
        default=None,
        description=(
            "played to every caller of the number before routing, to its end (keys pressed "
            "meanwhile are ignored); the same kinds as an IVR menu's prompt: `tts` (rendered "
            "with espeak-ng when saved), `tone`, or `audio` naming one of the tenant's "
            "uploaded prompts"
        ),
    )
    record: Record = None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "entry": {
                        "type": "route-plan",
                        "route_plan_id": "0b7f3c52-2d0e-4a5e-8f3a-1f2e3d4c5b6a",
                    },
                    "label": "google-ads",
                }
            ]
        },
    )


class ConditionOut(BaseModel):
    type: str = Field(examples=["Ready"])
    status: str = Field(examples=["True"])
    reason: str = Field(default="", examples=["Routed"])
    message: str = ""
    last_transition_time: str | None = None


class NumberStatusOut(BaseModel):
    ready: bool | None = Field(
        default=None, description="whether calls to it are routed; null until observed"
    )
    node: str | None = Field(default=None, description="the media node serving the number")
    conditions: list[ConditionOut] = Field(default_factory=list)


class NumberOut(BaseModel):
    id: str = Field(description="the Number resource's name", examples=["acme-74950000001"])
    number: str = Field(examples=["+74950000001"])
    city: str = Field(examples=["msk"])
    label: str | None = Field(default=None, examples=["yandex-direct"])
    entry: EntryOut | None = Field(
        description=(
            "the entry route as a Target; null = unrouted; {type: legacy, name} for a"
            " group name or extension written by hand in a platform file"
        )
    )
    channels: int
    greeting: MenuPrompt | None = Field(
        default=None, description="what callers hear before routing; null: no greeting"
    )
    record: bool | None = Field(
        description="whether its calls are recorded; null: the tenant's policy decides"
    )
    status: NumberStatusOut

    @classmethod
    def of(cls, number: Number, greeting: MenuPrompt | None = None) -> NumberOut:
        spec = number.spec
        return cls(
            id=number.name,
            number=spec.number,
            city=spec.city,
            label=spec.label,
            entry=entry_document(spec.entry),
            channels=spec.channels,
            greeting=greeting,
            record=spec.record,
            status=_status(number.status),
        )


def _status(status: dict[str, Any] | None) -> NumberStatusOut:
    if not status:
        return NumberStatusOut()
    conditions = []
    for raw in status.get("conditions") or []:
        if not isinstance(raw, dict) or "type" not in raw or "status" not in raw:
            continue
        conditions.append(
            ConditionOut(
                type=str(raw["type"]),
                status=str(raw["status"]),
                reason=str(raw.get("reason") or ""),
                message=str(raw.get("message") or ""),
                last_transition_time=(
                    str(raw["lastTransitionTime"]) if raw.get("lastTransitionTime") else None
                ),
            )
        )
    ready = next((c.status == "True" for c in conditions if c.type == "Ready"), None)
    node = status.get("node")
    return NumberStatusOut(ready=ready, node=str(node) if node else None, conditions=conditions)
