"""What analytics reads from a call's route, derived once when the CDR is stored.

The route trace (record.route) says everything, but as text that ClickHouse 18.16 cannot parse
cheaply (no JSONExtract). So the store derives, at insert, a few columns of the call (the group
it reached, the last extension rung, the queue and the wait in it, where the caller gave up,
the IVR choice) and one `call_legs` row per route step, with the step's kind and the object it
belongs to. This module is that derivation, the only one: reports read its columns.

The steps it understands are those the media node writes (vpbx_media.node.routing and
node/calls; see docs/cdr.md, "The route"). A plan step's subject names only the plan and the
step ("plan:main step 2 (queue)"); its `entered` step's detail names the object ("queue of
group:support", "group:sales", "ivr:main", ...), and later steps of the same subject belong to
that object.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from vpbx_common.cdr.record import CallRecord, EndReason, HangupBy

# Where the caller was when they hung up, from the router's `call caller-left` detail
# ("while queued"): the router state, see vpbx_media.node.routing.router.RouterState.
ABANDONED_QUEUE = "queue"
ABANDONED_IVR = "ivr"
ABANDONED_RING = "ring"
ABANDONED_OTHER = "other"  # greeting, HTTP decision, CRM lookup, voicemail prompt, ...
_ABANDONED_STATES = {
    "while queued": ABANDONED_QUEUE,
    "while ivr": ABANDONED_IVR,
    "while ringing": ABANDONED_RING,
}

_PLAN_STEP = re.compile(r"^plan:.* step \d+ \(([a-z-]+)\)$")
_DIGIT = re.compile(r"^digit (\S+)$")
# An `entered` plan step's detail -> the object it entered (as describe(target) spells it).
_ENTERED = (
    (re.compile(r"^queue of group:(.+)$"), "queue:{}"),
    (re.compile(r"^(group|user|ivr|conference):(.+)$"), None),
    (re.compile(r"^voicemail:(.*)$"), "voicemail:{}"),
    (re.compile(r"^plan:(.+)$"), "route-plan:{}"),
    (re.compile(r"^forward to (.+)$"), "external:{}"),
)
# Plan steps that enter no object: their kind is named after the step type.
_STEP_KINDS = {
    "crm-lookup": "crm",
    "http-decision": "decision",
    "schedule": "schedule",
    "hangup": "hangup",
}
# The object's prefix (before ':') -> the leg's kind.
_KINDS = {
    "group": "ring",
    "user": "ring",
    "external": "ring",
    "answer": "ring",
    "queue": "queue",
    "ivr": "ivr",
    "voicemail": "voicemail",
    "route-plan": "plan",
    "plan": "plan",
    "conference": "conference",
    "hangup": "hangup",
    "call": "call",
    "transfer": "transfer",
    "trunk": "trunk",
    "pickup": "pickup",
    "click-to-call": "click-to-call",
    "queue-callback": "callback",
    "route": "truncated",
    "unrouted": "plan",
}


@dataclass(frozen=True, slots=True)
class Leg:
    """One route step as a `call_legs` row."""

    seq: int
    at_ms: int
    kind: str
    target: str
    subject: str
    member: str
    outcome: str
    detail: str


@dataclass(frozen=True, slots=True)
class CallAnalytics:
    """The derived columns of a call (ANALYTICS_COLUMNS, in that order) and its legs."""

    group_name: str = ""
    last_rung: str = ""
    queue: str = ""
    queue_wait_ms: int = 0
    abandoned_in: str = ""
    ivr_menu: str = ""
    ivr_choice: str = ""
    legs: tuple[Leg, ...] = ()

    def columns(self) -> tuple[str | int, ...]:
        return (
            self.group_name,
            self.last_rung,
            self.queue,
            self.queue_wait_ms,
            self.abandoned_in,
            self.ivr_menu,
            self.ivr_choice,
        )


def _entered_object(detail: str) -> str | None:
    for pattern, spelling in _ENTERED:
        match = pattern.match(detail)
        if match is None:
            continue
        if spelling is None:
            return f"{match.group(1)}:{match.group(2)}"
        name = match.group(1)
        if spelling == "voicemail:{}" and not name:
            return "voicemail"
        return spelling.format(name)
    return None


def _object_of(subject: str) -> str:
    """The object of a step whose subject is not a plan step's (those are mapped on entry)."""
    if subject.startswith("crm manager user:"):
        return subject.removeprefix("crm manager ")
    if subject.startswith("crm manager's groups "):
        first = subject.removeprefix("crm manager's groups ").split(",")[0]
        return first if first.startswith("group:") else subject
    if subject == "crm everyone":
        return "crm-everyone"
    step = _PLAN_STEP.match(subject)
    if step is not None:
        return step.group(1)
    if subject.endswith(" ring"):  # an HTTP decision's list of extensions
        return "decision-ring"
    return subject


def _kind(target: str) -> str:
    prefix = target.split(":", 1)[0]
    if prefix in _STEP_KINDS:
        return _STEP_KINDS[prefix]
    if target in ("crm-everyone", "decision-ring"):
        return "ring"
    return _KINDS.get(prefix, prefix)


def _name(target: str) -> str:
    return target.split(":", 1)[1] if ":" in target else ""


def derive_call(record: CallRecord) -> CallAnalytics:
    """The derived columns and legs of ``record`` (pure; never raises on an odd route)."""
    objects: dict[str, str] = {}  # a plan step's subject -> the object it entered
    legs: list[Leg] = []
    group = last_rung = queue = ivr_menu = ivr_choice = ""
    left_while = ""
    waiting_since: int | None = None  # ms after the start when the current queue wait began
    waited = 0
    for seq, step in enumerate(record.route):
        after_ms = round(step.after_s * 1000)
        if step.outcome == "entered" and _PLAN_STEP.match(step.subject):
            entered = _entered_object(step.detail)
            if entered is not None:
                objects[step.subject] = entered
        target = objects.get(step.subject) or _object_of(step.subject)
        kind = _kind(target)
        member = step.member or ""
        if waiting_since is not None and not (
            kind == "queue" and step.outcome != "answered" and not step.detail.startswith("left")
        ):
            waited += max(0, after_ms - waiting_since)
            waiting_since = None
        if kind == "queue" and step.outcome == "queued" and step.detail == "joined":
            queue = _name(target)
            waiting_since = after_ms
        if target.startswith(("group:", "queue:")):
            group = _name(target)
        if step.outcome == "ringing" and member:
            last_rung = member
        if kind == "ivr":
            if _name(target) != ivr_menu:
                ivr_menu, ivr_choice = _name(target), ""
            digit = _DIGIT.match(step.detail) if step.outcome == "decided" else None
            if digit is not None:
                ivr_choice = digit.group(1)
        if step.subject == "call" and step.outcome == "caller-left":
            left_while = step.detail
        legs.append(
            Leg(
                seq=seq,
                at_ms=record.start_ms + after_ms,
                kind=kind,
                target=target,
                subject=step.subject,
                member=member,
                outcome=step.outcome,
                detail=step.detail,
            )
        )
    if waiting_since is not None:  # still waiting when the route ends: until the call ended
        waited += max(0, record.end_ms - record.start_ms - waiting_since)
    return CallAnalytics(
        group_name=group,
        last_rung=last_rung,
        queue=queue,
        queue_wait_ms=waited,
        abandoned_in=_abandoned_in(record, left_while),
        ivr_menu=ivr_menu,
        ivr_choice=ivr_choice,
        legs=tuple(legs),
    )


def _abandoned_in(record: CallRecord, left_while: str) -> str:
    """Where an unanswered caller hung up; '' for an answered call or one that did not end by
    the caller leaving (no answer, busy, voicemail, a booked callback, ...)."""
    if record.answered or record.end_reason is not EndReason.CANCELLED:
        return ""
    if left_while:
        return _ABANDONED_STATES.get(left_while, ABANDONED_OTHER)
    # No router trace (a call straight to an extension): cancelled means it was ringing.
    return ABANDONED_RING if record.hangup_by is HangupBy.CALLER else ""
