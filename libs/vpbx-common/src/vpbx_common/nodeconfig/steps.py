"""Route-plan steps as the node runs them: the control API's steps, references resolved.

One class per step type the API accepts, with the same ``type`` names, so a
plan reads the same in the API and in the node config. A step whose object was
deleted carries an ``UnroutedTarget`` and is skipped by the node with a reason
on the CDR.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .prompts import Prompt
from .targets import (
    ConferenceOrUnrouted,
    ConfigModel,
    GroupOrUnrouted,
    HangupReason,
    IvrOrUnrouted,
    RoutePlanOrUnrouted,
    Target,
    UserOrUnrouted,
    VoicemailOrUnrouted,
)


class ScheduleStep(ConfigModel):
    """Branch on the schedule; a branch that does not end the call continues after this step."""

    type: Literal["schedule"] = "schedule"
    schedule: str | None  # the schedule's name; None: it was deleted (the open branch runs)
    schedule_id: str | None = None
    open: list[Step] = Field(default_factory=list)
    closed: list[Step] = Field(default_factory=list)


class CrmLookupStep(ConfigModel):
    """Look the caller up in the CRM (``vpbx_common.crm``).

    A known client with a responsible manager (``to_responsible_manager``) rings the
    manager for ``manager_timeout_s``, then every member of the manager's groups for
    ``group_timeout_s``, then everyone for ``everyone_timeout_s``; each stage is skipped
    when its time is 0. Otherwise the target of the contact's category, as if the plan
    had a step going to it. Anything else (unknown caller, no CRM, a failed lookup):
    the next step.
    """

    type: Literal["crm-lookup"] = "crm-lookup"
    to_responsible_manager: bool = True
    categories: dict[str, Target] = Field(default_factory=dict)
    manager_timeout_s: int = 20
    group_timeout_s: int = 20
    everyone_timeout_s: int = 0


class HttpDecisionStep(ConfigModel):
    type: Literal["http-decision"] = "http-decision"
    url: str
    timeout_ms: int = 1500
    fallback: Target


class IvrStep(ConfigModel):
    type: Literal["ivr"] = "ivr"
    target: IvrOrUnrouted


class GroupStep(ConfigModel):
    """Ring a group; nobody answering goes on with the next step (the overflow if last)."""

    type: Literal["group"] = "group"
    target: GroupOrUnrouted
    ring_timeout_s: int | None = None  # overrides the group's


class QueueStep(ConfigModel):
    type: Literal["queue"] = "queue"
    target: GroupOrUnrouted
    max_wait_s: int = 300
    # Tell the caller their place and the expected wait on joining, then every
    # ``announce_every_s`` while they wait.
    announce_position: bool = False
    announce_every_s: int = 30
    exit_digit: str | None = None  # 0-9, *, #: the caller leaves for the next step
    max_length: int | None = None  # a caller finding this many waiting goes on at once
    # 0-9, *, #: an outside caller asks to be called back, keeping their place, and may
    # hang up; the agent whose turn it is rings first, then the caller (node/callbacks.py).
    callback_digit: str | None = None
    callback_attempts: int = 3  # calls to the caller before the callback is given up
    callback_retry_s: int = 120  # between two of them
    # What the caller hears while waiting, looped; None: the platform's music on hold.
    music: Prompt | None = None


class UserStep(ConfigModel):
    type: Literal["user"] = "user"
    target: UserOrUnrouted
    ring_timeout_s: int | None = None


class VoicemailStep(ConfigModel):
    type: Literal["voicemail"] = "voicemail"
    target: VoicemailOrUnrouted


class ForwardStep(ConfigModel):
    type: Literal["forward"] = "forward"
    number: str  # E.164


class RoutePlanStep(ConfigModel):
    type: Literal["route-plan"] = "route-plan"
    target: RoutePlanOrUnrouted


class ConferenceStep(ConfigModel):
    """Put the caller into a conference room (the plan does not go on after it)."""

    type: Literal["conference"] = "conference"
    target: ConferenceOrUnrouted


class HangupStep(ConfigModel):
    type: Literal["hangup"] = "hangup"
    reason: HangupReason = HangupReason.NORMAL


Step = Annotated[
    ScheduleStep
    | CrmLookupStep
    | HttpDecisionStep
    | IvrStep
    | GroupStep
    | QueueStep
    | UserStep
    | VoicemailStep
    | ForwardStep
    | RoutePlanStep
    | ConferenceStep
    | HangupStep,
    Field(discriminator="type"),
]

ScheduleStep.model_rebuild()
