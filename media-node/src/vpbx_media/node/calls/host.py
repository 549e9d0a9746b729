"""What a call needs from the node it runs in, as a Protocol.

Calls never import the node service: a test can run a call against a fake host
(fake legs, no sockets), and the node service is free to grow without the call
code knowing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from vpbx_common.events import CallEvent, CallEventType
from vpbx_common.nodeconfig import NodeConfig
from vpbx_common.outbound import OutboundPolicy

from ...media.scheduler import PacedScheduler
from ...rtp.relay import MediaRelay
from ...sip.transaction import TransactionLayer
from ...sip.transport import Address
from ...sip.uri import SipUri
from ...webrtc.gateway import WebRtcGateway
from ..conference import ConferenceRooms
from ..legs.sip import DeviceTarget
from ..outbound import OutboundGate, OutboundRefusal
from ..prompts import PromptLibrary
from ..queues import QueueDispatcher
from ..recordings import RecordingService
from ..routing import AgentSnapshot, CrmFailed, CrmReply, DecisionFailed, DecisionReply

if TYPE_CHECKING:
    from ..callbacks import QueueCallbacks
    from .call import Call


class CallHost(Protocol):
    @property
    def layer(self) -> TransactionLayer: ...

    @property
    def sip_address(self) -> Address: ...

    @property
    def contact_uri(self) -> SipUri: ...

    @property
    def media_address(self) -> str: ...

    @property
    def webrtc(self) -> WebRtcGateway | None:
        """The node's WebRTC gateway (browsers' legs), None when it runs without one."""
        ...

    @property
    def scheduler(self) -> PacedScheduler:
        """The node's one paced sender of generated audio."""
        ...

    @property
    def prompts(self) -> PromptLibrary: ...

    @property
    def queues(self) -> QueueDispatcher:
        """The tenant's group queues, shared with its nodes in every city."""
        ...

    @property
    def callbacks(self) -> QueueCallbacks:
        """Queue callbacks this node holds (a caller's place kept after they hung up)."""
        ...

    @property
    def rooms(self) -> ConferenceRooms:
        """The tenant's conference rooms on this node."""
        ...

    @property
    def url_policy(self) -> OutboundPolicy:
        """Where tenant-chosen destinations (their own trunks) may be."""
        ...

    @property
    def outbound(self) -> OutboundGate:
        """The tenant's outbound policy, caps and caller-ID choice."""
        ...

    @property
    def recordings(self) -> RecordingService:
        """Where calls record to (spooled, then encoded and stored after the call)."""
        ...

    def config(self) -> NodeConfig: ...

    async def devices(self, extension: str) -> list[DeviceTarget]:
        """The registered devices of ``extension`` now (in any city of the tenant)."""
        ...

    async def agent_snapshot(self) -> AgentSnapshot:
        """The tenant's live agent state (who talks, wrap-up, presence, round-robin)."""
        ...

    def agent_talking(self, extension: str, call_id: str) -> None: ...

    def agent_free(self, extension: str, call_id: str) -> None: ...

    def remember_last_member(self, group: str, extension: str) -> None: ...

    def forget_queued(self, call_id: str, group: str) -> None:
        """The call ended while it waited in ``group``'s queue (outlives the call's tasks)."""

    async def decide(
        self, url: str, body: dict[str, str], timeout_s: float
    ) -> DecisionReply | DecisionFailed:
        """POST an HTTP decision request to the tenant's URL (never raises)."""
        ...

    @property
    def crm_lookup_timeout_ms(self) -> int | None:
        """How long a crm-lookup step waits for the CRM; None: this node has no CRM."""
        ...

    async def look_up_caller(self, call_id: str, phone: str) -> CrmReply | CrmFailed:
        """Ask the CRM who ``phone`` is, fresh for every call (never raises)."""
        ...

    async def open_relay(self, call_id: str) -> MediaRelay: ...

    def park(self, call: Call, slot: str) -> str | None:
        """Put ``call`` on ``slot`` ("" = the first free); the slot taken, None if in use."""
        ...

    def unpark(self, call: Call) -> None: ...

    def count_refusal(self, refusal: OutboundRefusal) -> None:
        """Count a call out the tenant's policy refused (metrics)."""
        ...

    def release_outbound(self, key: str, talked_s: float) -> None:
        """Give back an outbound place taken with ``OutboundGate.admit``."""
        ...

    def call_by_dialog(self, call_id: str) -> Call | None:
        """The live call one of whose dialogs has SIP Call-ID ``call_id``."""
        ...

    def register_leg(self, call: Call, call_id: str) -> None:
        """Route in-dialog requests and stray responses of this outgoing leg to ``call``."""

    def publish(self, call: Call, event_type: CallEventType) -> None: ...

    def publish_event(self, event: CallEvent) -> None:
        """Publish ``event`` in the background (as ``publish``, for an event built here)."""
        ...

    async def publish_now(self, event: CallEvent) -> None:
        """Publish ``event`` and return once it is on the stream (or could not be put
        there in time): for an event its consumers must have before what follows."""
        ...

    def journal_begin(self, call: Call) -> None: ...

    def journal_answer(self, call: Call) -> None: ...

    def journal_update(self, call: Call) -> None:
        """The call's journal entry anew from its facts (a contact found, ...)."""

    def call_finished(self, call: Call) -> None:
        """The call ended: its CDR is due and it holds nothing of the node's any more."""
