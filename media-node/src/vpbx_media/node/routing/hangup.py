"""How the router ends a call: the SIP status and CDR end reason for each way.

Unanswered caller: the status is the final response. Answered caller (IVR,
queue, voicemail came first): a BYE, with ``Reason: SIP;cause=<status>``
unless the status is 200.

- hangup step/target, reason ``busy``: 486 (answered: cause 486); CDR busy
- hangup, reason ``unavailable``: 480 (cause 480); unavailable
- hangup, reason ``normal``: 603 Decline; answered: plain BYE (200); rejected / completed
- unrouted, a deleted object, an external number the outbound policy refuses or
  no trunk carries, the end of a route plan, a routing loop: 480; unavailable
- a group or user nobody answered: 480; no-answer (busy / unavailable when
  nobody could be rung because they were busy / away, dnd, not registered)
- a user busy (on a call, or their phone said 486) without voicemail: 486; busy
- a user who declined (603) without voicemail: 603; rejected
- an IVR without a timeout/invalid target: plain BYE (it answered); completed
- voicemail recorded: plain BYE; voicemail (the router builds that Hangup itself)

A group that nobody answers says 480, unless every member was busy (486) or
declined (603): then the caller hears what one person would have told them.
"""

from __future__ import annotations

from vpbx_common.cdr import EndReason
from vpbx_common.nodeconfig import HangupReason

from .actions import Hangup

_STATUS = {
    HangupReason.BUSY: 486,
    HangupReason.UNAVAILABLE: 480,
    HangupReason.NORMAL: 603,
}
_END_REASON = {
    HangupReason.BUSY: EndReason.BUSY,
    HangupReason.UNAVAILABLE: EndReason.UNAVAILABLE,
    HangupReason.NORMAL: EndReason.REJECTED,
}


def hangup_status(reason: HangupReason, *, answered: bool) -> int:
    """The SIP status of a hangup ``reason``: 486, 480, 603; 200 for a normal end once
    answered (a plain BYE)."""
    if answered and reason is HangupReason.NORMAL:
        return 200
    return _STATUS[reason]


def hangup_for(reason: HangupReason, detail: str, *, answered: bool) -> Hangup:
    end_reason = _END_REASON[reason]
    if answered and reason is HangupReason.NORMAL:
        end_reason = EndReason.COMPLETED
    return Hangup(hangup_status(reason, answered=answered), end_reason, detail, answered)
