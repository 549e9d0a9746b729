"""The HTTP decision step: ask the tenant's server where the call goes.

The executor POSTs ``decision_body`` as JSON to the step's URL (through the
outbound policy) and hands back the reply; reading the reply is pure and lives
here (``parse_decision``). A 2xx JSON object is one of::

    {"action": "ring", "targets": ["102", "103"], "mode": "parallel", "ring_timeout_s": 20}
    {"action": "target", "target": "group:<uuid>"}
    {"action": "hangup", "reason": "busy"}

- ``ring``: ``targets`` are extensions of the tenant; unknown ones are left out
  (and named on the route); none left: the fallback. ``mode`` is ``parallel``
  (default: all at once) or ``sequential`` (one after the other, each an equal
  share of the time); ``ring_timeout_s`` (5..600, default 30) is the whole
  ringing, as for a group. The ringing obeys the group rules (busy, away, dnd
  and wrap-up members are skipped); nobody answering: the step's fallback.
- ``target``: ``<kind>:<uuid>`` with kind ``user``, ``group``, ``ivr``,
  ``route-plan``, ``conference`` or ``voicemail`` (a user's box; a bare ``voicemail`` is the
  general box), the id of an object of the tenant; unknown: the fallback.
- ``hangup``: ``reason`` ``busy`` (486), ``unavailable`` (480) or ``normal``
  (603); default ``normal``.

Anything else (another status, not JSON, another shape, no reply within
``timeout_ms``, a failed request) goes to the step's fallback; the route says
which it was.
"""

from __future__ import annotations

import enum
import json
import uuid
from dataclasses import dataclass
from typing import Any

from vpbx_common.nodeconfig import (
    ConferenceTarget,
    GroupTarget,
    HangupReason,
    HangupTarget,
    IvrTarget,
    NodeConfig,
    RoutePlanTarget,
    Target,
    UserTarget,
    VoicemailTarget,
)

from .actions import RequestDecision
from .context import CallContext
from .env import RouterEnv
from .trace import Outcome

DEFAULT_DECISION_RING_S = 30
MIN_DECISION_RING_S = 5  # the API's bounds for any ring timeout
MAX_DECISION_RING_S = 600


@dataclass(frozen=True, slots=True)
class RingDecision:
    extensions: tuple[str, ...]
    sequential: bool
    ring_timeout_s: int
    ignored: tuple[str, ...] = ()  # targets that are no extension of the tenant


@dataclass(frozen=True, slots=True)
class TargetDecision:
    target: Target
    why: str


@dataclass(frozen=True, slots=True)
class FallbackDecision:
    why: str


Decision = RingDecision | TargetDecision | FallbackDecision


def decision_body(call: CallContext, time_iso: str) -> dict[str, str]:
    """What the tenant's server gets: the call's facts (``time``: ISO 8601, UTC)."""
    return {
        "call_id": call.call_id,
        "tenant": call.tenant,
        "number": call.number,
        "caller": call.caller,
        "city": call.city,
        "label": call.label,
        "time": time_iso,
    }


def parse_decision(status: int, body: bytes, config: NodeConfig) -> Decision:
    if not 200 <= status < 300:
        return FallbackDecision(f"HTTP {status}")
    try:
        reply = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return FallbackDecision("reply is not JSON")
    if not isinstance(reply, dict):
        return FallbackDecision("reply is not a JSON object")
    action = reply.get("action")
    if action == "ring":
        return _ring(reply, config)
    if action == "target":
        return _target(reply.get("target"), config)
    if action == "hangup":
        reason = reply.get("reason", HangupReason.NORMAL.value)
        if not isinstance(reason, str) or reason not in set(HangupReason):
            return FallbackDecision(f"unknown hangup reason {reason!r}")
        return TargetDecision(HangupTarget(reason=HangupReason(reason)), f"hangup {reason}")
    return FallbackDecision(f"unknown action {action!r}")


def _ring(reply: dict[str, Any], config: NodeConfig) -> Decision:
    targets = reply.get("targets")
    if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
        return FallbackDecision("ring: targets must be a list of extensions")
    mode = reply.get("mode", "parallel")
    if mode not in ("parallel", "sequential"):
        return FallbackDecision(f"ring: unknown mode {mode!r}")
    timeout = reply.get("ring_timeout_s", DEFAULT_DECISION_RING_S)
    if (
        not isinstance(timeout, int)
        or isinstance(timeout, bool)
        or not MIN_DECISION_RING_S <= timeout <= MAX_DECISION_RING_S
    ):
        return FallbackDecision(f"ring: ring_timeout_s must be {MIN_DECISION_RING_S}..600")
    unique = list(dict.fromkeys(targets))
    known = tuple(t for t in unique if config.user(t) is not None)
    ignored = tuple(t for t in unique if config.user(t) is None)
    if not known:
        return FallbackDecision("ring: no extension of the tenant in targets")
    return RingDecision(known, mode == "sequential", timeout, ignored)


class _Kind(enum.StrEnum):
    USER = "user"
    GROUP = "group"
    IVR = "ivr"
    ROUTE_PLAN = "route-plan"
    VOICEMAIL = "voicemail"
    CONFERENCE = "conference"


def _same_id(stored: str | None, wanted: str) -> bool:
    if stored is None:
        return False
    try:
        return str(uuid.UUID(stored)) == wanted
    except ValueError:
        return False


def _target(reference: object, config: NodeConfig) -> Decision:
    if not isinstance(reference, str):
        return FallbackDecision("target: not a string")
    if reference == _Kind.VOICEMAIL:
        return TargetDecision(VoicemailTarget(), "target voicemail (general box)")
    kind_text, _, ident = reference.partition(":")
    try:
        kind = _Kind(kind_text)
        wanted = str(uuid.UUID(ident))
    except ValueError:
        return FallbackDecision(f"target: not <kind>:<uuid>: {reference!r}")
    target: Target | None = None
    match kind:
        case _Kind.USER | _Kind.VOICEMAIL:
            user = next((u for u in config.users if _same_id(u.id, wanted)), None)
            if user is not None and kind is _Kind.USER:
                target = UserTarget(extension=user.extension, user_id=user.id)
            elif user is not None:
                target = VoicemailTarget(extension=user.extension, user_id=user.id)
        case _Kind.GROUP:
            group = next((g for g in config.groups if _same_id(g.id, wanted)), None)
            if group is not None:
                target = GroupTarget(name=group.name, group_id=group.id)
        case _Kind.IVR:
            menu = next((m for m in config.ivr_menus if _same_id(m.id, wanted)), None)
            if menu is not None:
                target = IvrTarget(name=menu.name, ivr_menu_id=menu.id)
        case _Kind.ROUTE_PLAN:
            plan = next((p for p in config.route_plans if _same_id(p.id, wanted)), None)
            if plan is not None:
                target = RoutePlanTarget(name=plan.name, route_plan_id=plan.id)
        case _Kind.CONFERENCE:
            room = next((r for r in config.conference_rooms if _same_id(r.id, wanted)), None)
            if room is not None:
                target = ConferenceTarget(room=room.extension, room_id=room.id)
    if target is None:
        return FallbackDecision(f"target: no {kind} with id {wanted}")
    return TargetDecision(target, f"target {reference}")


class DecisionState(enum.Enum):
    IDLE = "idle"
    WAITING = "waiting"
    DECIDED = "decided"


class DecisionSession:
    def __init__(
        self, url: str, timeout_ms: int, fallback: Target, subject: str, env: RouterEnv
    ) -> None:
        self.url = url
        self.timeout_ms = timeout_ms
        self.fallback = fallback
        self.subject = subject
        self.env = env
        self.state = DecisionState.IDLE
        self.decision: Decision | None = None
        self._deadline = 0.0

    @property
    def deadline(self) -> float | None:
        return self._deadline if self.state is DecisionState.WAITING else None

    def start(self, now: float) -> None:
        body = decision_body(self.env.call, self.env.wall(now).isoformat().replace("+00:00", "Z"))
        self.env.out.act(RequestDecision(self.url, self.timeout_ms, body))
        self.state = DecisionState.WAITING
        self._deadline = now + self.timeout_ms / 1000

    def on_reply(self, status: int, body: bytes, now: float) -> None:
        if self.state is DecisionState.WAITING:
            self._decide(parse_decision(status, body, self.env.config), now)

    def on_failed(self, reason: str, now: float) -> None:
        if self.state is DecisionState.WAITING:
            self._decide(FallbackDecision(f"request failed: {reason}"), now)

    def on_timer(self, now: float) -> None:
        if self.state is DecisionState.WAITING and now >= self._deadline:
            self._decide(FallbackDecision(f"no reply within {self.timeout_ms} ms"), now)

    def stop(self) -> None:
        self.state = DecisionState.DECIDED

    def _decide(self, decision: Decision, now: float) -> None:
        self.state = DecisionState.DECIDED
        self.decision = decision
        match decision:
            case RingDecision(extensions=extensions, sequential=sequential, ignored=ignored):
                mode = "sequential" if sequential else "parallel"
                detail = f"ring {','.join(extensions)} {mode}"
                if ignored:
                    detail += f" (unknown extensions left out: {','.join(ignored)})"
            case TargetDecision(why=why):
                detail = why
            case FallbackDecision(why=why):
                detail = f"fallback: {why}"
        self.env.out.note(now, self.subject, Outcome.DECIDED, detail=detail)
