"""What a call needs from the node it runs in, as a Protocol.

Calls never import the node service: a test can run a call against a fake host
(fake legs, no sockets), and the node service is free to grow without the call
code knowing it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from vpbx_common.events import CallEventType
from vpbx_common.nodeconfig import NodeConfig

from ...rtp.relay import MediaRelay
from ...sip.transaction import TransactionLayer
from ...sip.transport import Address
from ...sip.uri import SipUri

if TYPE_CHECKING:
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

    def config(self) -> NodeConfig: ...

    async def open_relay(self, call_id: str) -> MediaRelay: ...

    def register_leg(self, call: Call, call_id: str) -> None:
        """Route in-dialog requests and stray responses of this outgoing leg to ``call``."""

    def publish(self, call: Call, event_type: CallEventType) -> None: ...

    def journal_begin(self, call: Call) -> None: ...

    def journal_answer(self, call: Call) -> None: ...

    def call_finished(self, call: Call) -> None:
        """The call ended: its CDR is due and it holds nothing of the node's any more."""
