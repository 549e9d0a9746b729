"""The first side of a call the node places itself (click-to-call).

The node rings the user's devices with an offer pointing at the call's relay;
the device that answers becomes the call's "caller": to the ``Call`` it looks
like a caller whose INVITE just arrived, with the device's answer as its SDP. What
a caller's leg would answer in SIP (ringing, the answer) has happened already on
this dialog, so those are no-ops here; alerting starts the node's ringback, and a
refusal hangs the device up.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from ...sip.dialog import Dialog
from ...sip.message import SipRequest
from ...sip.transaction import TransactionLayer
from ...sip.uri import SipUri
from .base import LegState
from .sip import send_bye


class OriginatorLeg:
    def __init__(
        self,
        call_id: str,
        device_request: SipRequest,
        dialog: Dialog,
        answer_sdp: bytes,
        layer: TransactionLayer,
    ) -> None:
        self._call_id = call_id  # the call's id (the API's), not the device dialog's Call-ID
        # What the Call reads as "the caller's INVITE": the device's SDP as the offer.
        self.request = dataclasses.replace(device_request, body=answer_sdp)
        self.dialog: Dialog | None = dialog
        self.layer = layer
        self.state = LegState.NEW
        self.transaction = None
        self.on_alerting: Callable[[], None] = lambda: None

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def device_call_id(self) -> str:
        return self.request.call_id

    @property
    def is_final(self) -> bool:
        return True  # the device's dialog is confirmed from the start

    def ring(self) -> None:
        self.state = LegState.RINGING
        self.on_alerting()

    def progress(self, contact: SipUri, sdp: bytes) -> None:
        """Early media reaches the device through the relay it already talks to."""

    def answer(self, contact: SipUri, sdp: bytes) -> None:
        """The relay's address did not change: the device's session stays as it is."""
        self.state = LegState.ANSWERED

    def reject(self, status: int, phrase: str | None = None, retry_after: str = "") -> None:
        """The call could not be put through: hang the device up."""
        if self.state is LegState.ENDED:
            return
        self.state = LegState.ENDED
        task = asyncio.get_running_loop().create_task(send_bye(self.layer, self.dialog, None))
        self.layer.track(task)
