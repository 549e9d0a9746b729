"""Browser legs: SIP legs whose SDP goes through the WebRTC gateway on the way.

The call sees plain RTP SDP only: the gateway's plain side is a phone at 127.0.0.1
as far as the relay is concerned. So a browser the node rings is a `WebRtcUacLeg` (its
INVITE carries the gateway's WebRTC offer, its 2xx is reported with the gateway's plain
answer), and a browser that calls is a `WebRtcUasLeg` (the call is built from the
gateway's plain offer; the 200 OK carries the gateway's WebRTC answer). Each gateway
session is keyed by the leg's Call-ID and closed when the leg ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ...sip.dialog import Dialog, DialogState
from ...sip.message import SipRequest, SipResponse, make_response
from ...sip.transaction import ServerTransaction, TransactionLayer
from ...sip.transport import Address
from ...sip.uri import SipUri
from ...webrtc.gateway import GatewayError, WebRtcGateway, WebRtcSdpError
from .base import LegState
from .sip import (
    ALLOW_IN_CALL,
    SDP,
    Answered,
    Caller,
    DeviceTarget,
    Failed,
    LegEvent,
    Provisional,
    SipUacLeg,
    SipUasLeg,
)
from .sip import send_bye as _send_bye

logger = logging.getLogger("vpbx.node.webrtc")
_tasks: set[asyncio.Task[None]] = set()


def _spawn(coroutine: Coroutine[Any, Any, None]) -> None:
    # Kept referenced until done: the loop holds only weak references to tasks.
    task = asyncio.get_running_loop().create_task(coroutine)
    _tasks.add(task)
    task.add_done_callback(_tasks.discard)


def is_websocket_contact(contact: str) -> bool:
    """A device registered over SIP-over-WebSocket (RFC 7118): its Contact URI has
    ;transport=ws or ;transport=wss (any case). The edge's contract with the node."""
    lowered = contact.lower()
    start = lowered.find(";transport=ws")
    if start < 0:
        return False
    rest = lowered[start + len(";transport=ws") :]
    return rest[:1] in ("", ";", ">", "?") or (rest[:1] == "s" and rest[1:2] in ("", ";", ">", "?"))


@dataclass(slots=True)
class WebRtcUacLeg(SipUacLeg):
    """A browser the node rings: a SIP UAC leg with a gateway-translated SDP."""

    gateway: WebRtcGateway | None = None
    # CANCELled while the gateway was still making the offer (no INVITE out yet).
    cancelled_early: bool = False

    def cancel(self) -> None:
        if self.final_status is None and self.transaction is None:
            self.cancelled_early = True
            return
        SipUacLeg.cancel(self)

    async def _drive(self, layer: TransactionLayer, report: Callable[[LegEvent], None]) -> None:
        gateway = self.gateway
        if gateway is None:
            report(Failed(self, 488))
            return
        try:
            offer = await gateway.offer_to_browser(self.call_id, self.request.body)
        except WebRtcSdpError as exc:
            logger.warning("call-id=%s no WebRTC offer: %s", self.call_id, exc.reason)
            report(Failed(self, 488))
            return
        except GatewayError as exc:
            logger.warning("call-id=%s WebRTC gateway: %s", self.call_id, exc)
            report(Failed(self, 503))
            return
        if self.cancelled_early:
            # The call moved on (a rival answered, the caller left): this browser must
            # not start ringing now.
            report(Failed(self, 487))
            await gateway.close(self.call_id)
            return
        self.request = self.request.with_body(offer)
        self.transaction = layer.send_request(self.request, self.flow)
        async for response in self.transaction:
            if response.status == 100:
                continue
            if response.status < 200:
                # A browser's early SDP is not taken: the 2xx carries the answer.
                report(Provisional(self, response.with_body(b"")))
            elif response.status < 300:
                await self._answered(layer, response, report)
            else:
                report(Failed(self, response.status))
                await gateway.close(self.call_id)

    async def _answered(
        self, layer: TransactionLayer, response: SipResponse, report: Callable[[LegEvent], None]
    ) -> None:
        assert self.gateway is not None
        try:
            plain = await self.gateway.answer_from_browser(self.call_id, response.body)
        except (WebRtcSdpError, GatewayError) as exc:
            # The browser answered with SDP we cannot bridge: confirm its dialog and end it
            # (RFC 3261 13.2.2.4: a 2xx is always ACKed), and the call treats it as failed.
            logger.warning("call-id=%s unusable WebRTC answer: %s", self.call_id, exc)
            dialog = Dialog.as_uac(self.request, response)
            self.dialog = dialog
            self.send_ack(layer, response.cseq.seq)
            await _send_bye(layer, dialog, self.flow)
            report(Failed(self, 488))
            await self.gateway.close(self.call_id)
            return
        report(Answered(self, response.with_body(plain)))

    def stop(self) -> None:
        SipUacLeg.stop(self)
        if self.gateway is not None:
            _spawn(self.gateway.close(self.call_id))


class WebRtcUasLeg(SipUasLeg):
    """A browser's INVITE: the call sees the gateway's plain offer as the request body."""

    def __init__(
        self,
        request: SipRequest,
        transaction: ServerTransaction,
        gateway: WebRtcGateway,
    ) -> None:
        super().__init__(request, transaction)
        self.gateway = gateway

    def progress(self, contact: SipUri, sdp: bytes) -> None:
        # Early media would be a second answer to the browser's one offer; ring instead.
        self.ring()

    def answer(self, contact: SipUri, sdp: bytes) -> None:
        """The dialog is confirmed now (the call goes on at once); the 200 leaves once
        the gateway has turned the plain answer into the browser's WebRTC answer."""
        contact_header = f"<{contact}>"
        self.dialog = Dialog.as_uas(self.request, self.local_tag, contact_header)
        self.dialog.state = DialogState.CONFIRMED
        self.state = LegState.ANSWERED
        _spawn(self._send_answer(contact_header, sdp))

    async def _send_answer(self, contact_header: str, sdp: bytes) -> None:
        try:
            body = await self.gateway.answer_to_browser(self.call_id, sdp)
        except (WebRtcSdpError, GatewayError) as exc:
            logger.warning("call-id=%s no WebRTC answer: %s", self.call_id, exc)
            status = 488 if isinstance(exc, WebRtcSdpError) else 503
            if not self.transaction.is_final:
                self.transaction.respond(make_response(self.request, status, to_tag=self.local_tag))
            # The call went on as answered: the browser never will be, so end it (the
            # far side would otherwise talk to silence).
            if self.gateway.on_failed is not None:
                self.gateway.on_failed(self.call_id, f"no WebRTC answer: {exc}")
            return
        if self.transaction.is_final:
            return  # CANCELled while the gateway worked
        self.transaction.respond(
            make_response(
                self.request,
                200,
                to_tag=self.local_tag,
                extra=[
                    *self._record_route(),
                    ("Contact", contact_header),
                    ("Allow", ALLOW_IN_CALL),
                ],
                body=body,
                content_type=SDP,
            )
        )

    def close(self) -> None:
        _spawn(self.gateway.close(self.call_id))


def device_leg(
    target: DeviceTarget,
    gateway: WebRtcGateway | None,
    *,
    layer: TransactionLayer,
    sip_domain: str,
    node_address: Address,
    contact: SipUri,
    caller: Caller,
    sdp: bytes,
) -> SipUacLeg:
    """The leg that rings one registered device: a browser's through the gateway."""
    if not is_websocket_contact(target.binding.contact):
        return SipUacLeg.invite(
            target,
            layer=layer,
            sip_domain=sip_domain,
            node_address=node_address,
            contact=contact,
            caller=caller,
            sdp=sdp,
        )
    leg = WebRtcUacLeg.invite(
        target,
        layer=layer,
        sip_domain=sip_domain,
        node_address=node_address,
        contact=contact,
        caller=caller,
        sdp=sdp,
    )
    assert isinstance(leg, WebRtcUacLeg)
    leg.gateway = gateway
    return leg


class BrowserReinvite:
    """The server transaction of a browser's re-INVITE (hold, resume) as the call sees it:
    the call answers with plain SDP, the browser gets the gateway's WebRTC answer."""

    def __init__(self, inner: ServerTransaction, gateway: WebRtcGateway, session_id: str) -> None:
        self.inner = inner
        self.gateway = gateway
        self.session_id = session_id

    def respond(self, response: SipResponse) -> None:
        if response.is_success and response.body:
            _spawn(self._respond_translated(response))
        else:
            self.inner.respond(response)

    async def _respond_translated(self, response: SipResponse) -> None:
        try:
            body = await self.gateway.answer_to_browser(self.session_id, response.body)
        except (WebRtcSdpError, GatewayError) as exc:
            logger.warning("call-id=%s no WebRTC answer to a re-INVITE: %s", self.session_id, exc)
            self.inner.respond(make_response(self.inner.request, 488))
            return
        self.inner.respond(response.with_body(body))

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def browser_session(leg: object) -> tuple[WebRtcGateway, str] | None:
    """The gateway session of a browser's leg; None for any other leg."""
    if isinstance(leg, WebRtcUacLeg) and leg.gateway is not None:
        return leg.gateway, leg.call_id
    if isinstance(leg, WebRtcUasLeg):
        return leg.gateway, leg.call_id
    return None
