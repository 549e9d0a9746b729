"""The call detail record (one per call) and the open-call snapshot the media node journals."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, Self, TypeVar


def now_ms() -> int:
    """Wall-clock time as CDRs store it: integer epoch milliseconds."""
    return time.time_ns() // 1_000_000


class Direction(StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    INTERNAL = "internal"


class EndReason(StrEnum):
    COMPLETED = "completed"  # answered, then someone hung up
    CANCELLED = "cancelled"  # the caller gave up while it was ringing
    NO_ANSWER = "no-answer"  # ring timeout
    BUSY = "busy"
    UNAVAILABLE = "unavailable"  # nobody registered or reachable
    REJECTED = "rejected"
    FAILED = "failed"
    NODE_LOST = "node-lost"  # the media node died mid-call; recovered from its journal
    VOICEMAIL = "voicemail"  # nobody answered in person; the caller left a message
    # The node had no room for the call's media (its RTP port range was in use): the
    # caller got 503 + Retry-After before anything rang. A capacity signal, not a bug.
    NO_CAPACITY = "no-capacity"
    # A queued caller asked to be called back and hung up: their place waits for them
    # (the callback's own calls are outbound CDRs whose route names it).
    CALLBACK = "callback"


class HangupBy(StrEnum):
    CALLER = "caller"
    CALLEE = "callee"
    SYSTEM = "system"


_E = TypeVar("_E", bound=StrEnum)

# Reasons that by definition mean nobody picked up: an answer time with them is a bug upstream.
UNANSWERED_REASONS = frozenset(
    {
        EndReason.CANCELLED,
        EndReason.NO_ANSWER,
        EndReason.BUSY,
        EndReason.UNAVAILABLE,
        EndReason.REJECTED,
        EndReason.VOICEMAIL,
        EndReason.NO_CAPACITY,
        EndReason.CALLBACK,
    }
)

# Bounds of the route trace kept in a CDR, so that a call looping through its route plan cannot
# make a huge row: at most MAX_ROUTE_STEPS entries (the middle of a longer route is replaced by
# one "truncated" step) and text fields cut to these lengths (ending in ROUTE_ELLIPSIS when cut).
MAX_ROUTE_STEPS = 200
MAX_ROUTE_SUBJECT_CHARS = 128
MAX_ROUTE_OUTCOME_CHARS = 32
MAX_ROUTE_MEMBER_CHARS = 64
MAX_ROUTE_DETAIL_CHARS = 256
ROUTE_ELLIPSIS = "\u2026"
ROUTE_TRUNCATED = "truncated"  # outcome of the step standing for the omitted middle of a route
_ROUTE_HEAD = MAX_ROUTE_STEPS // 2 - 1  # steps kept from the start of a long route
_ROUTE_TAIL = MAX_ROUTE_STEPS - _ROUTE_HEAD - 1  # and from its end (how it ended matters most)


def _field(data: Mapping[str, Any], name: str, kind: type[Any]) -> Any:
    if name not in data:
        raise ValueError(f"CDR field {name!r} is missing")
    value = data[name]
    # bool is an int subclass; a JSON true in a time field is corrupt, not 1.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"CDR field {name!r} must be {kind.__name__}, got {value!r}")
    return value


def _optional_int(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"CDR field {name!r} must be an integer or null, got {value!r}")
    return value


def _enum(data: Mapping[str, Any], name: str, kind: type[_E]) -> _E:
    raw = _field(data, name, str)
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"CDR field {name!r} has unknown value {raw!r}") from None


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: limit - len(ROUTE_ELLIPSIS)] + ROUTE_ELLIPSIS


def _route_text(name: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"route step field {name!r} must be str, got {value!r}")
    return _clip(value, limit)


@dataclass(frozen=True, slots=True)
class RouteStep:
    """One entry of a call's route trace: what the routing engine tried, when, and how it went.

    The media node's ``RouteEntry.as_dict()`` is exactly ``to_json()``'s shape, so
    ``RouteStep.from_json(entry.as_dict())`` converts. ``outcome`` is kept as text (the node's
    ``Outcome`` values, or ``truncated``) so that a CDR with an outcome added later still loads.
    Construction normalises instead of failing on size: ``after_s`` is rounded to milliseconds and
    text fields are cut to their bounds; only wrong types, a negative or non-finite time and an
    empty outcome are refused.
    """

    after_s: float  # seconds since routing started
    subject: str  # what was tried: "group:sales", "plan:main step 2 (schedule)", "user:101"
    outcome: str  # "no-answer", "skipped", "decided", ... (vpbx_media.node.routing.Outcome)
    member: str | None = None  # the extension concerned, if any
    detail: str = ""  # why, in words

    def __post_init__(self) -> None:
        after = self.after_s
        if (
            isinstance(after, bool)
            or not isinstance(after, int | float)
            or not math.isfinite(after)
            or after < 0
        ):
            raise ValueError(f"route step after_s must be a finite number >= 0, got {after!r}")
        object.__setattr__(self, "after_s", round(float(after), 3))
        object.__setattr__(
            self, "subject", _route_text("subject", self.subject, MAX_ROUTE_SUBJECT_CHARS)
        )
        outcome = _route_text("outcome", self.outcome, MAX_ROUTE_OUTCOME_CHARS)
        if not outcome:
            raise ValueError("route step outcome is empty")
        object.__setattr__(self, "outcome", outcome)
        if self.member is not None:
            object.__setattr__(
                self, "member", _route_text("member", self.member, MAX_ROUTE_MEMBER_CHARS)
            )
        object.__setattr__(
            self, "detail", _route_text("detail", self.detail, MAX_ROUTE_DETAIL_CHARS)
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "after_s": self.after_s,
            "subject": self.subject,
            "outcome": self.outcome,
            "member": self.member,
            "detail": self.detail,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of to_json(); member and detail may be missing. Raises ValueError."""
        after = data.get("after_s")
        if isinstance(after, bool) or not isinstance(after, int | float):
            raise ValueError(f"route step after_s must be a number, got {after!r}")
        member = data.get("member")
        if member is not None and not isinstance(member, str):
            raise ValueError(f"route step member must be str or null, got {member!r}")
        return cls(
            after_s=after,
            subject=_field(data, "subject", str),
            outcome=_field(data, "outcome", str),
            member=member,
            detail=data.get("detail", ""),
        )

    def __str__(self) -> str:
        member = f" {self.member}" if self.member else ""
        detail = f": {self.detail}" if self.detail else ""
        return f"+{self.after_s:.1f}s {self.subject} {self.outcome}{member}{detail}"


Route = tuple[RouteStep, ...]


def bounded_route(steps: Iterable[RouteStep]) -> Route:
    """The route as a CDR keeps it: at most MAX_ROUTE_STEPS steps.

    A longer route keeps its first and last steps, with one step of outcome ``truncated`` in
    place of the omitted middle (its ``after_s`` is the first omitted step's, its detail says how
    many were omitted). Bounding a bounded route changes nothing.
    """
    route = tuple(steps)
    if len(route) <= MAX_ROUTE_STEPS:
        return route
    omitted = len(route) - _ROUTE_HEAD - _ROUTE_TAIL
    marker = RouteStep(
        after_s=route[_ROUTE_HEAD].after_s,
        subject="route",
        outcome=ROUTE_TRUNCATED,
        detail=f"{omitted} steps omitted",
    )
    return (*route[:_ROUTE_HEAD], marker, *route[len(route) - _ROUTE_TAIL :])


def route_to_json(route: Route) -> list[dict[str, Any]]:
    return [step.to_json() for step in route]


def route_from_json(value: object) -> Route:
    """A route from its JSON list (bounded, so an over-long list from elsewhere still loads)."""
    if not isinstance(value, list):
        raise ValueError(f"a route must be a JSON list, got {type(value).__name__}")
    steps = []
    for index, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValueError(f"route step {index} must be a JSON object")
        try:
            steps.append(RouteStep.from_json(item))
        except ValueError as exc:
            raise ValueError(f"route step {index}: {exc}") from None
    return bounded_route(steps)


def dumps_route(route: Route) -> str:
    """The route as the `cdr.route` column holds it: compact JSON, or '' for no route."""
    if not route:
        return ""
    return json.dumps(route_to_json(route), ensure_ascii=False, separators=(",", ":"))


def loads_route(text: str) -> Route:
    """Inverse of dumps_route(); '' (rows written before the column existed) is no route."""
    if not text:
        return ()
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"route is not JSON: {exc}") from None
    return route_from_json(value)


def _route_field(data: Mapping[str, Any]) -> Route:
    # Spool lines and journal entries written before routes existed have no "route".
    if "route" not in data:
        return ()
    try:
        return route_from_json(data["route"])
    except ValueError as exc:
        raise ValueError(f"CDR field 'route': {exc}") from None


def _check_route(owner: str, route: object) -> None:
    if not isinstance(route, tuple) or not all(isinstance(step, RouteStep) for step in route):
        raise ValueError(f"{owner}: route must be a tuple of RouteStep")
    if len(route) > MAX_ROUTE_STEPS:
        raise ValueError(
            f"{owner}: route has {len(route)} steps, more than {MAX_ROUTE_STEPS} "
            "(bound it with bounded_route())"
        )


@dataclass(frozen=True, slots=True)
class CallRecord:
    """One finished call. Times are epoch milliseconds; durations are derived from them."""

    call_id: str
    tenant: str
    city: str
    node: str
    direction: Direction
    caller: str
    dialled: str
    label: str  # ad-channel label of the dialled number, '' if none
    answered_by: str  # extension that answered, '' if nobody did
    start_ms: int
    answer_ms: int | None
    end_ms: int
    ring_ms: int
    talk_ms: int
    end_reason: EndReason
    sip_status: int  # final status of the inbound leg; 0 if none was ever sent (node lost)
    hangup_by: HangupBy
    route: Route = ()  # how the call was routed, oldest step first (bounded_route())
    # Storage key of the call's recording ('' when it was not recorded). Set when the call
    # ends; the audio itself is encoded and stored after that (``recording.ready``).
    recording: str = ""
    # The caller as the CRM knew them when the call came in (the node's crm-lookup step),
    # so reports need no join with the CRM: '' / False when not looked up or unknown.
    contact_id: str = ""
    contact_category: str = ""
    contact_vip: bool = False
    contact_owner_user_id: str = ""  # the responsible manager's user id, '' for none

    def __post_init__(self) -> None:
        if not self.call_id:
            raise ValueError("a CDR needs a call id")
        if not self.tenant:
            raise ValueError(f"CDR {self.call_id}: tenant is empty")
        for name, kind in (
            ("direction", Direction),
            ("end_reason", EndReason),
            ("hangup_by", HangupBy),
        ):
            if not isinstance(getattr(self, name), kind):
                raise ValueError(f"CDR {self.call_id}: {name} must be a {kind.__name__}")
        if self.start_ms < 0:
            raise ValueError(f"CDR {self.call_id}: negative start time")
        if self.end_ms < self.start_ms:
            raise ValueError(f"CDR {self.call_id}: ends before it starts")
        if self.answer_ms is not None and not self.start_ms <= self.answer_ms <= self.end_ms:
            raise ValueError(f"CDR {self.call_id}: answer time outside the call")
        expected_ring, expected_talk = _durations(self.start_ms, self.answer_ms, self.end_ms)
        if (self.ring_ms, self.talk_ms) != (expected_ring, expected_talk):
            raise ValueError(
                f"CDR {self.call_id}: ring/talk {self.ring_ms}/{self.talk_ms} ms do not match "
                f"the times (expected {expected_ring}/{expected_talk} ms)"
            )
        if self.end_reason is EndReason.COMPLETED and self.answer_ms is None:
            raise ValueError(f"CDR {self.call_id}: a completed call must have been answered")
        if self.end_reason in UNANSWERED_REASONS and self.answer_ms is not None:
            raise ValueError(f"CDR {self.call_id}: {self.end_reason} but answered")
        if self.sip_status != 0 and not 100 <= self.sip_status <= 699:
            raise ValueError(f"CDR {self.call_id}: SIP status {self.sip_status} out of range")
        _check_route(f"CDR {self.call_id}", self.route)
        _check_contact(f"CDR {self.call_id}", self)

    @classmethod
    def build(
        cls,
        *,
        call_id: str,
        tenant: str,
        city: str,
        node: str,
        direction: Direction,
        caller: str,
        dialled: str,
        start_ms: int,
        answer_ms: int | None,
        end_ms: int,
        end_reason: EndReason,
        sip_status: int,
        hangup_by: HangupBy,
        label: str = "",
        answered_by: str = "",
        route: Iterable[RouteStep] = (),
        recording: str = "",
        contact_id: str = "",
        contact_category: str = "",
        contact_vip: bool = False,
        contact_owner_user_id: str = "",
    ) -> Self:
        """A record whose ring and talk durations are computed from the three times, and whose
        route is bounded (bounded_route())."""
        ring_ms, talk_ms = _durations(start_ms, answer_ms, end_ms)
        return cls(
            call_id=call_id,
            tenant=tenant,
            city=city,
            node=node,
            direction=direction,
            caller=caller,
            dialled=dialled,
            label=label,
            answered_by=answered_by,
            start_ms=start_ms,
            answer_ms=answer_ms,
            end_ms=end_ms,
            ring_ms=ring_ms,
            talk_ms=talk_ms,
            end_reason=end_reason,
            sip_status=sip_status,
            hangup_by=hangup_by,
            route=bounded_route(route),
            recording=recording,
            contact_id=contact_id,
            contact_category=contact_category,
            contact_vip=contact_vip,
            contact_owner_user_id=contact_owner_user_id,
        )

    @property
    def answered(self) -> bool:
        return self.answer_ms is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "tenant": self.tenant,
            "city": self.city,
            "node": self.node,
            "direction": self.direction.value,
            "caller": self.caller,
            "dialled": self.dialled,
            "label": self.label,
            "answered_by": self.answered_by,
            "start_ms": self.start_ms,
            "answer_ms": self.answer_ms,
            "end_ms": self.end_ms,
            "ring_ms": self.ring_ms,
            "talk_ms": self.talk_ms,
            "end_reason": self.end_reason.value,
            "sip_status": self.sip_status,
            "hangup_by": self.hangup_by.value,
            "route": route_to_json(self.route),
            "recording": self.recording,
            **_contact_json(self),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """Inverse of to_json(); raises ValueError on anything malformed."""
        return cls(
            call_id=_field(data, "call_id", str),
            tenant=_field(data, "tenant", str),
            city=_field(data, "city", str),
            node=_field(data, "node", str),
            direction=_enum(data, "direction", Direction),
            caller=_field(data, "caller", str),
            dialled=_field(data, "dialled", str),
            label=_field(data, "label", str),
            answered_by=_field(data, "answered_by", str),
            start_ms=_field(data, "start_ms", int),
            answer_ms=_optional_int(data, "answer_ms"),
            end_ms=_field(data, "end_ms", int),
            ring_ms=_field(data, "ring_ms", int),
            talk_ms=_field(data, "talk_ms", int),
            end_reason=_enum(data, "end_reason", EndReason),
            sip_status=_field(data, "sip_status", int),
            hangup_by=_enum(data, "hangup_by", HangupBy),
            route=_route_field(data),
            # Spool lines and journal entries written before recordings existed have none.
            recording=_field(data, "recording", str) if "recording" in data else "",
            **_contact_fields(data),
        )

    def dumps(self) -> str:
        """Compact single-line JSON (what the spool writes, one record per line)."""
        return json.dumps(self.to_json(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def loads(cls, text: str | bytes) -> Self:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a CDR must be a JSON object")
        return cls.from_json(data)


def _durations(start_ms: int, answer_ms: int | None, end_ms: int) -> tuple[int, int]:
    if answer_ms is None:
        return end_ms - start_ms, 0
    return answer_ms - start_ms, end_ms - answer_ms


@dataclass(frozen=True, slots=True)
class OpenCall:
    """What the media node knows about a call still in progress (journalled for crash recovery)."""

    call_id: str
    tenant: str
    city: str
    node: str
    direction: Direction
    caller: str
    dialled: str
    start_ms: int
    label: str = ""
    answer_ms: int | None = None
    answered_by: str = ""
    sip_status: int = 0  # last final status sent on the inbound leg (200 once answered)
    route: Route = ()  # the route so far (bounded_route()); a node-lost CDR keeps it
    recording: str = ""  # storage key of the recording started; a node-lost CDR keeps it
    # The CRM contact found for the caller (as in CallRecord); a node-lost CDR keeps it.
    contact_id: str = ""
    contact_category: str = ""
    contact_vip: bool = False
    contact_owner_user_id: str = ""

    def __post_init__(self) -> None:
        if not self.call_id or not self.tenant:
            raise ValueError("an open call needs a call id and a tenant")
        _check_route(f"open call {self.call_id}", self.route)
        _check_contact(f"open call {self.call_id}", self)
        if not isinstance(self.direction, Direction):
            raise ValueError(f"open call {self.call_id}: direction must be a Direction")
        if self.answer_ms is not None and self.answer_ms < self.start_ms:
            raise ValueError(f"open call {self.call_id}: answered before it started")

    def to_json(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id,
            "tenant": self.tenant,
            "city": self.city,
            "node": self.node,
            "direction": self.direction.value,
            "caller": self.caller,
            "dialled": self.dialled,
            "start_ms": self.start_ms,
            "label": self.label,
            "answer_ms": self.answer_ms,
            "answered_by": self.answered_by,
            "sip_status": self.sip_status,
            "route": route_to_json(self.route),
            "recording": self.recording,
            **_contact_json(self),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            call_id=_field(data, "call_id", str),
            tenant=_field(data, "tenant", str),
            city=_field(data, "city", str),
            node=_field(data, "node", str),
            direction=_enum(data, "direction", Direction),
            caller=_field(data, "caller", str),
            dialled=_field(data, "dialled", str),
            start_ms=_field(data, "start_ms", int),
            label=_field(data, "label", str),
            answer_ms=_optional_int(data, "answer_ms"),
            answered_by=_field(data, "answered_by", str),
            sip_status=_field(data, "sip_status", int),
            route=_route_field(data),
            # Spool lines and journal entries written before recordings existed have none.
            recording=_field(data, "recording", str) if "recording" in data else "",
            **_contact_fields(data),
        )

    def lost(self, end_ms: int) -> CallRecord:
        """The CDR for this call after its node died; end_ms is clamped into the call."""
        floor = self.answer_ms if self.answer_ms is not None else self.start_ms
        return CallRecord.build(
            call_id=self.call_id,
            tenant=self.tenant,
            city=self.city,
            node=self.node,
            direction=self.direction,
            caller=self.caller,
            dialled=self.dialled,
            label=self.label,
            answered_by=self.answered_by,
            start_ms=self.start_ms,
            answer_ms=self.answer_ms,
            end_ms=max(end_ms, floor),
            end_reason=EndReason.NODE_LOST,
            sip_status=self.sip_status,
            hangup_by=HangupBy.SYSTEM,
            route=self.route,
            recording=self.recording,
            contact_id=self.contact_id,
            contact_category=self.contact_category,
            contact_vip=self.contact_vip,
            contact_owner_user_id=self.contact_owner_user_id,
        )


class _HasContact(Protocol):
    @property
    def contact_id(self) -> str: ...
    @property
    def contact_category(self) -> str: ...
    @property
    def contact_vip(self) -> bool: ...
    @property
    def contact_owner_user_id(self) -> str: ...


_CONTACT_TEXT = ("contact_id", "contact_category", "contact_owner_user_id")


def _check_contact(owner: str, record: _HasContact) -> None:
    for name in _CONTACT_TEXT:
        if not isinstance(getattr(record, name), str):
            raise ValueError(f"{owner}: {name} must be a str")
    if not isinstance(record.contact_vip, bool):
        raise ValueError(f"{owner}: contact_vip must be a bool")
    if not record.contact_id and (
        record.contact_category or record.contact_vip or record.contact_owner_user_id
    ):
        raise ValueError(f"{owner}: contact details without a contact id")


def _contact_json(record: _HasContact) -> dict[str, Any]:
    return {
        "contact_id": record.contact_id,
        "contact_category": record.contact_category,
        "contact_vip": record.contact_vip,
        "contact_owner_user_id": record.contact_owner_user_id,
    }


def _contact_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The contact columns of a spool line or journal entry; lines written before contacts
    existed have none (no contact)."""
    values: dict[str, Any] = {
        name: _field(data, name, str) if name in data else "" for name in _CONTACT_TEXT
    }
    values["contact_vip"] = _field(data, "contact_vip", bool) if "contact_vip" in data else False
    return values
