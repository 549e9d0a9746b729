"""A call's facts in one place: the CDR, the journal entry and the call events derive from it.

The call code only ever updates ``CallFacts``; what leaves the node (a CDR on the
spool, an open-call journal entry, an event on Redis) is a view of it, so the
three can never disagree about who called, who answered and why it ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from vpbx_common.cdr import (
    CallRecord,
    Direction,
    EndReason,
    HangupBy,
    OpenCall,
    Route,
    bounded_route,
    now_ms,
)
from vpbx_common.crm import CrmContact
from vpbx_common.events import CallEvent, CallEventType


@dataclass(frozen=True, slots=True)
class NodeRef:
    """The node a call is handled by, as CDRs and events name it."""

    tenant: str
    city: str
    node_name: str


@dataclass(slots=True)
class CallFacts:
    call_id: str
    node: NodeRef
    direction: Direction
    number: str  # the dialled tenant number, or the dialled extension for internal calls
    label: str  # the number's ad-channel label, '' if none
    caller: str  # E.164 when it is a phone number, else as sent; an extension inside
    caller_display: str | None = None
    ringing: tuple[str, ...] = ()  # extensions offered the call, for the events
    start_ms: int = field(default_factory=now_ms)
    answer_ms: int | None = None
    end_ms: int | None = None
    answered_by: str = ""  # the extension that answered
    end_reason: EndReason = EndReason.FAILED
    sip_status: int = 0  # the final status sent to the caller
    hangup_by: HangupBy = HangupBy.SYSTEM
    # The route so far, oldest step first: RouteStep.from_json(entry.as_dict()) per RouteEntry.
    route: Route = ()
    recording: str = ""  # the storage key of the call's recording, once one started
    # The caller as the CRM described them (a crm-lookup step found them); on the CDR and
    # on every event from then on.
    contact: CrmContact | None = None

    @property
    def callee(self) -> str:
        """Who the call is for: whoever answered, else everybody it was offered to."""
        return self.answered_by or ",".join(sorted(set(self.ringing)))

    def record(self) -> CallRecord:
        """The CDR of the call, ended now if no end was set."""
        return CallRecord.build(
            call_id=self.call_id,
            tenant=self.node.tenant,
            city=self.node.city,
            node=self.node.node_name,
            direction=self.direction,
            caller=self.caller,
            dialled=self.number,
            label=self.label,
            answered_by=self.answered_by,
            start_ms=self.start_ms,
            answer_ms=self.answer_ms,
            end_ms=max(self.end_ms or now_ms(), self.start_ms),
            end_reason=self.end_reason,
            sip_status=self.sip_status,
            hangup_by=self.hangup_by,
            route=self.route,
            recording=self.recording,
            **self._contact_columns(),
        )

    def open_call(self) -> OpenCall:
        """The journal entry of the call in progress (turned into a CDR after a crash)."""
        return OpenCall(
            call_id=self.call_id,
            tenant=self.node.tenant,
            city=self.node.city,
            node=self.node.node_name,
            direction=self.direction,
            caller=self.caller,
            dialled=self.number,
            label=self.label,
            answered_by=self.answered_by,
            start_ms=self.start_ms,
            answer_ms=self.answer_ms,
            sip_status=self.sip_status,
            route=bounded_route(self.route),
            recording=self.recording,
            **self._contact_columns(),
        )

    def _contact_columns(self) -> dict[str, Any]:
        contact = self.contact
        if contact is None:
            return {}
        return {
            "contact_id": contact.id,
            "contact_category": contact.category,
            "contact_vip": contact.vip,
            "contact_owner_user_id": contact.owner_user_id or "",
        }

    def event(self, event_type: CallEventType) -> CallEvent:
        return CallEvent(
            type=event_type,
            call_id=self.call_id,
            tenant=self.node.tenant,
            city=self.node.city,
            node=self.node.node_name,
            number=self.number,
            caller=self.caller,
            callee=self.callee,
            at_ms=now_ms(),
            end_reason=str(self.end_reason) if event_type is CallEventType.ENDED else "",
            label=self.label,
            direction=str(self.direction),
            contact=self.contact.to_dict() if self.contact is not None else None,
        )
