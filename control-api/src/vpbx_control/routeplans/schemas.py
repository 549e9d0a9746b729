"""Route plans: the documents of /v1/route-plans and the rules on their shape.

A plan is an ordered list of steps; the call goes through them one after the
other. A step that always ends the call (``ends_call``) must be the last of its
list. A schedule step has two branches, each itself a step list; a branch that
does not end the call goes on with the steps after the schedule step, so an
empty branch means "just continue".
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Iterator
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    ValidationInfo,
    field_validator,
    model_validator,
)

from vpbx_common.crm import CATEGORY_PATTERN

from ..prompts.schemas import AudioOrTone
from ..targets import E164, Target

MAX_STEPS_PER_LIST = 50
MAX_STEPS = 200  # in the whole plan, branches included
MAX_DEPTH = 5  # schedule steps nested in schedule branches

Name = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^\S(.*\S)?$")]
Category = Annotated[
    str, Field(min_length=1, max_length=32, pattern=CATEGORY_PATTERN.pattern, examples=["client"])
]
RingTimeout = Annotated[int, Field(ge=5, le=600, description="seconds to ring")]
# A stage of the CRM lookup's escalation chain: 0 skips it.
StageTimeout = Annotated[int, Field(ge=0, le=600)]
MIN_MANAGER_RING_S = 5

# Whether the host may be internal is the deployment's outbound policy (vpbx_common/outbound.py).
DecisionUrl = Annotated[
    HttpUrl,
    Field(max_length=2048, examples=["https://crm.example.com/vpbx/route"]),
]


class HangupReason(enum.StrEnum):
    BUSY = "busy"
    UNAVAILABLE = "unavailable"
    NORMAL = "normal"


class _Step(BaseModel):
    model_config = ConfigDict(extra="forbid")

    def ends_call(self) -> bool:
        """Whether the call never goes on to the next step."""
        return True

    def children(self, at: str) -> Iterator[tuple[str, list[Step]]]:
        """The nested step lists, with their field paths."""
        return iter(())


class ScheduleBranches(BaseModel):
    model_config = ConfigDict(extra="forbid")

    open: list[Step] = Field(
        default_factory=list,
        max_length=MAX_STEPS_PER_LIST,
        description="steps during working hours; empty = continue with the next step",
    )
    closed: list[Step] = Field(
        default_factory=list,
        max_length=MAX_STEPS_PER_LIST,
        description="steps outside working hours; empty = continue with the next step",
    )


class ScheduleStep(_Step):
    """Branch on the schedule: open or closed right now."""

    type: Literal["schedule"] = "schedule"
    schedule_id: uuid.UUID
    branches: ScheduleBranches

    def ends_call(self) -> bool:
        return _ends(self.branches.open) and _ends(self.branches.closed)

    def children(self, at: str) -> Iterator[tuple[str, list[Step]]]:
        yield f"{at}.branches.open", self.branches.open
        yield f"{at}.branches.closed", self.branches.closed


class CrmLookupStep(_Step):
    """Look the caller up in the tenant's CRM by their number and route by what it knows.

    The media node asks the CRM on every call (never from a cache, so a client
    reassigned a moment ago reaches their new manager); callers without a phone number
    (internal calls, anonymous) are not looked up. Then, in this order:

    - a known client with a responsible manager, when ``to_responsible_manager``: the
      escalation chain. The manager rings first (all their devices, their follow-me as
      for any call to them) for ``manager_timeout_s``; unanswered, every member of every
      group the manager belongs to rings at once (the manager too; members on a call, in
      do-not-disturb or wrap-up are skipped) for ``group_timeout_s``; unanswered, every
      user of the tenant rings for ``everyone_timeout_s``; still unanswered, the next
      step. A stage whose time is 0 is skipped (the group stage also when the manager is
      in no group);
    - otherwise a contact whose category has a target in ``categories``: that target, as
      if the plan had a step going to it (a group or user nobody answers goes on with the
      next step);
    - otherwise (an unknown caller, a category without a target, the CRM not reachable
      or slower than the node's lookup timeout): the next step.

    The call's route on its CDR says which happened (the contact and its manager, or
    why the plan went on); the contact's id, category, VIP flag and manager are on the
    CDR and on the call's events.
    """

    type: Literal["crm-lookup"] = "crm-lookup"
    to_responsible_manager: bool = True
    categories: dict[Category, Target] = Field(
        default_factory=dict,
        max_length=20,
        description="client category -> target",
        examples=[
            {"supplier": {"type": "group", "group_id": "6f1d1b0e-3f7a-4f5e-9d1c-0c1d2e3f4a5b"}}
        ],
    )
    manager_timeout_s: StageTimeout = Field(
        default=20,
        description=(
            "seconds the responsible manager rings; 0 skips them (at least 5 when "
            "to_responsible_manager)"
        ),
    )
    group_timeout_s: StageTimeout = Field(
        default=20,
        description="seconds the manager's groups ring together after them; 0 skips them",
    )
    everyone_timeout_s: StageTimeout = Field(
        default=0,
        description="seconds every user rings after the manager's groups; 0 (default) skips it",
    )

    @field_validator("manager_timeout_s")
    @classmethod
    def _manager_rings_long_enough(cls, value: int, info: ValidationInfo) -> int:
        # A field validator (not a model one) so that the 422 names manager_timeout_s.
        if info.data.get("to_responsible_manager", True) and value < MIN_MANAGER_RING_S:
            raise ValueError(
                f"must be at least {MIN_MANAGER_RING_S} when to_responsible_manager is true"
            )
        return value

    def ends_call(self) -> bool:
        return False


class HttpDecisionStep(_Step):
    """Ask the tenant's own server where the call goes.

    The media node POSTs `{"call_id", "tenant", "number", "caller", "city", "label",
    "time"}` as JSON to ``url``, signed with the tenant's decision secret
    (``X-Vpbx-Signature``, as webhooks are signed; see /v1/route-plans/decision-secret).
    A 2xx reply within ``timeout_ms`` may be `{"action": "ring", "targets": ["102"],
    "mode": "parallel" | "sequential", "ring_timeout_s": 20}`, `{"action": "target",
    "target": "<kind>:<uuid>"}` or `{"action": "hangup", "reason": "busy" |
    "unavailable" | "normal"}`; anything else, an error or no reply in time sends the
    call to ``fallback`` (so does nobody answering a `ring`). The call's route on its
    CDR says which happened.
    """

    type: Literal["http-decision"] = "http-decision"
    url: DecisionUrl
    timeout_ms: int = Field(default=1500, ge=100, le=5000)
    fallback: Target


class IvrStep(_Step):
    type: Literal["ivr"] = "ivr"
    ivr_menu_id: uuid.UUID


class GroupStep(_Step):
    """Ring a group; when nobody answers, the next step (or the group's overflow if last)."""

    type: Literal["group"] = "group"
    group_id: uuid.UUID
    ring_timeout_s: RingTimeout | None = Field(
        default=None, description="overrides the group's ring timeout"
    )

    def ends_call(self) -> bool:
        return False


class QueueStep(_Step):
    """Hold the call in the group's queue until a member is free, then the next step.

    The caller is answered and hears ``music`` (the platform's music on hold unless
    set); free members are offered the
    queue's callers first come, first served across all the tenant's cities, in the
    group's strategy. The call goes on with the next step after ``max_wait_s``, when
    the caller presses ``exit_digit``, or at once when ``max_length`` callers wait
    already. With ``announce_position`` the caller hears their place and the
    expected wait on joining and every ``announce_every_s`` (never while a member's
    phone rings for them), in the tenant's language. With ``callback_digit`` the
    caller may ask to be called back instead of waiting on the line."""

    type: Literal["queue"] = "queue"
    group_id: uuid.UUID
    max_wait_s: int = Field(default=300, ge=10, le=3600)
    announce_position: bool = Field(
        default=False,
        description=(
            "tell the caller their place in the queue and the expected wait (their place "
            "times how long one place took for recently answered callers; before any, two "
            "minutes per caller shared by the group's members)"
        ),
    )
    announce_every_s: int = Field(
        default=30, ge=10, le=600, description="seconds of waiting between announcements"
    )
    exit_digit: Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"] | None = Field(
        default=None,
        description="a key that takes the caller out of the queue to the next step; null: none",
    )
    max_length: int | None = Field(
        default=None,
        ge=1,
        le=10_000,
        description=(
            "callers waiting (in all cities) beyond which a new caller goes on to the next "
            "step at once; null: no limit"
        ),
    )
    callback_digit: Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"] | None = (
        Field(
            default=None,
            description=(
                "a key that books a callback: the caller keeps their place and may hang up "
                "(after a spoken confirmation); when the place's turn comes a free member is "
                "rung first, then the caller is called back from the number they dialled "
                "(see `GET /v1/callbacks`). Offered to outside callers with a number only, "
                "announced on joining and with every announcement; null: no callback"
            ),
        )
    )
    callback_attempts: int = Field(
        default=3, ge=1, le=10, description="calls to the caller before the callback fails"
    )
    callback_retry_s: int = Field(
        default=120, ge=30, le=3600, description="seconds between two calls to the caller"
    )
    music: AudioOrTone | None = Field(
        default=None,
        description=(
            "what the caller hears while waiting, looped and resumed after each "
            "announcement: one of the tenant's prompts (`{kind: audio, prompt_id}`, "
            "e.g. from `POST /v1/prompts`) or a tone; null: the platform's music on hold"
        ),
    )

    @model_validator(mode="after")
    def _keys_differ(self) -> QueueStep:
        if self.callback_digit is not None and self.callback_digit == self.exit_digit:
            raise ValueError("callback_digit and exit_digit must be different keys")
        return self

    def ends_call(self) -> bool:
        return False


class UserStep(_Step):
    """Ring one user; when they do not answer, the next step."""

    type: Literal["user"] = "user"
    user_id: uuid.UUID
    ring_timeout_s: RingTimeout | None = None

    def ends_call(self) -> bool:
        return False


class VoicemailStep(_Step):
    """Take a voice message: the box owner's greeting (else the platform's), a beep, the
    message until #, 5 s of silence, 120 s or the caller hanging up; listed at
    /v1/voicemails."""

    type: Literal["voicemail"] = "voicemail"
    user_id: uuid.UUID | None = Field(default=None, description="whose box; null = general box")


class ForwardStep(_Step):
    """Forward to an external number through the tenant's trunks (under its outbound
    policy): it rings for 30 s, then the plan goes on with its next step."""

    type: Literal["forward"] = "forward"
    number: E164


class RoutePlanStep(_Step):
    """Go on in another route plan."""

    type: Literal["route-plan"] = "route-plan"
    route_plan_id: uuid.UUID


class ConferenceStep(_Step):
    """Take the caller into a conference room (the plan does not go on after it)."""

    type: Literal["conference"] = "conference"
    room_id: uuid.UUID


class HangupStep(_Step):
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

ScheduleBranches.model_rebuild()


def _ends(steps: list[Step]) -> bool:
    return any(step.ends_call() for step in steps)


def walk(steps: list[Step], at: str, depth: int = 1) -> Iterator[tuple[str, list[Step], int]]:
    """Every step list of a plan (the top one and all branches) with its path and depth."""
    yield at, steps, depth
    for index, step in enumerate(steps):
        for path, branch in step.children(f"{at}[{index}]"):
            yield from walk(branch, path, depth + 1)


_EXAMPLE_STEPS = [
    {
        "type": "schedule",
        "schedule_id": "0b5e2c4c-8c1e-4a53-9a7d-3c2f1e0d9b8a",
        "branches": {
            "open": [
                {"type": "crm-lookup", "to_responsible_manager": True, "categories": {}},
                {"type": "group", "group_id": "6f1d1b0e-3f7a-4f5e-9d1c-0c1d2e3f4a5b"},
            ],
            "closed": [{"type": "voicemail", "user_id": None}],
        },
    },
    {"type": "hangup", "reason": "unavailable"},
]


class RoutePlanCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name = Field(examples=["sales"])
    steps: list[Step] = Field(
        min_length=1, max_length=MAX_STEPS_PER_LIST, examples=[_EXAMPLE_STEPS]
    )


class RoutePlanUpdate(BaseModel):
    """Only the fields given change; ``steps``, when given, replaces all steps."""

    model_config = ConfigDict(extra="forbid")

    name: Name | None = Field(default=None, examples=["sales"])
    steps: list[Step] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_STEPS_PER_LIST,
        examples=[[{"type": "voicemail", "user_id": None}]],
    )


class RoutePlanOut(BaseModel):
    id: uuid.UUID
    name: str
    steps: list[Step]
    revision: int
    created_at: dt.datetime
    updated_at: dt.datetime
