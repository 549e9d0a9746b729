"""What the router knows about the call it routes: the facts fixed when the call arrived."""

from __future__ import annotations

from dataclasses import dataclass

from vpbx_common.cdr import Direction


@dataclass(frozen=True, slots=True)
class CallContext:
    """The routing view of one call's facts (the call model owns the rest)."""

    call_id: str
    tenant: str
    number: str  # the dialled tenant number (E.164), or the extension dialled internally
    caller: str  # E.164 of an outside caller, or the calling extension
    city: str  # the node's city, where the call's media lives
    label: str = ""  # the number's label (the ad channel, for call tracking)
    direction: Direction = Direction.INBOUND

    @property
    def internal_caller(self) -> str | None:
        """The calling extension of an internal call: never offered its own call."""
        return self.caller if self.direction is Direction.INTERNAL else None
