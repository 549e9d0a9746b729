"""The interface every call leg offers, whatever carries it (SIP phone now; trunk, WebRTC later).

A call is a set of legs: the caller's leg and the legs it offers the call to. The
call's state machine decides; legs only carry out (ring, answer, hang up) and
report what their peer did as events on the call's queue.
"""

from __future__ import annotations

import enum
from typing import Protocol


class LegState(enum.Enum):
    NEW = "new"
    RINGING = "ringing"  # the peer is alerted (180/183), or the caller waits for an answer
    ANSWERED = "answered"
    FAILED = "failed"  # the peer refused or never answered (a final non-2xx)
    ENDED = "ended"


class Leg(Protocol):
    @property
    def state(self) -> LegState: ...

    @property
    def call_id(self) -> str:
        """The SIP Call-ID of this leg's dialog: each leg is a dialog of its own (B2BUA)."""
        ...
