"""The call detail record (one per call) and the open-call snapshot the media node journals."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self, TypeVar


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
    }
)


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
    ) -> Self:
        """A record whose ring and talk durations are computed from the three times."""
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

    def __post_init__(self) -> None:
        if not self.call_id or not self.tenant:
            raise ValueError("an open call needs a call id and a tenant")
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
        )
