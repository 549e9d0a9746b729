"""Call events published on Redis for the CRM, webhooks and live boards.

Channel per tenant: `vpbx:events:<tenant>`; the message is the event as JSON.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum


class CallEventType(StrEnum):
    RINGING = "call.ringing"
    ANSWERED = "call.answered"
    ENDED = "call.ended"


@dataclass(frozen=True, slots=True)
class CallEvent:
    type: CallEventType
    call_id: str
    tenant: str
    city: str
    node: str
    number: str
    caller: str
    callee: str
    at_ms: int
    end_reason: str = ""
    label: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> CallEvent:
        data = json.loads(text)
        data["type"] = CallEventType(data["type"])
        return cls(**data)


def events_channel(tenant: str) -> str:
    return f"vpbx:events:{tenant}"
