"""One call through the tenant node: a B2BUA with an inbound leg and forked outbound legs.

The caller's leg (A) is a UAS dialog; each ringing device is a UAC leg (B).
Media of every call is anchored in the node's relay. The call is an explicit
state machine driven by one task that consumes events from the legs, so
races (a CANCEL crossing a 200, two devices answering at once) are decided
in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from vpbx_common.cdr import CallRecord, Direction, EndReason, HangupBy, now_ms
from vpbx_common.events import CallEventType

from ..rtp.relay import Leg
from ..sdp import (
    NotAcceptableError,
    SdpError,
    SdpOriginator,
    SessionDescription,
    media_endpoint,
    negotiate,
    rewrite_for_relay,
)
from ..sip.dialog import Dialog, DialogState
from ..sip.headers import CSeq, NameAddr
from ..sip.message import Headers, SipRequest, SipResponse, make_response
from ..sip.transaction import ClientTransaction, ServerTransaction, new_call_id, new_tag
from ..sip.transport import Flow, TransportKind, flow_to
from ..sip.uri import SipUri
from .bindings import Binding

if TYPE_CHECKING:
    from ..rtp.relay import MediaRelay
    from .service import NodeService

logger = logging.getLogger(__name__)

SDP = "application/sdp"
# Methods a call leg of the node accepts (the node as a whole also takes REGISTER).
ALLOW_IN_CALL = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"


class CallState(Enum):
    ROUTING = "routing"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


class Side(Enum):
    CALLER = "caller"
    CALLEE = "callee"


@dataclass(frozen=True, slots=True)
class Target:
    extension: str
    binding: Binding


@dataclass(slots=True)
class OutboundLeg:
    target: Target
    request: SipRequest
    flow: Flow
    transaction: ClientTransaction | None = None
    dialog: Dialog | None = None
    ringing: bool = False
    final_status: int | None = None
    task: asyncio.Task[None] | None = None


# Events the call's task consumes.
@dataclass(frozen=True, slots=True)
class _Provisional:
    leg: OutboundLeg
    response: SipResponse


@dataclass(frozen=True, slots=True)
class _Answered:
    leg: OutboundLeg
    response: SipResponse


@dataclass(frozen=True, slots=True)
class _Failed:
    leg: OutboundLeg
    status: int


@dataclass(frozen=True, slots=True)
class _CallerCancelled:
    pass


@dataclass(frozen=True, slots=True)
class _InDialog:
    side: Side
    request: SipRequest
    transaction: ServerTransaction


_Event = _Provisional | _Answered | _Failed | _CallerCancelled | _InDialog


@dataclass(slots=True)
class CallPlan:
    """What routing decided before ringing starts."""

    direction: Direction
    number: str  # the dialled tenant number, or the dialled extension for internal calls
    label: str
    caller: str
    caller_display: str | None
    targets: list[Target]
    ring_timeout_s: float


@dataclass(slots=True)
class CallTimes:
    start_ms: int = field(default_factory=now_ms)
    answer_ms: int | None = None
    end_ms: int | None = None


class Call:
    def __init__(
        self,
        node: NodeService,
        request: SipRequest,
        transaction: ServerTransaction,
        plan: CallPlan,
    ) -> None:
        self.node = node
        self.request = request
        self.transaction = transaction
        self.plan = plan
        self.call_id = request.call_id
        self.state = CallState.ROUTING
        self.times = CallTimes()
        self.local_tag = new_tag()
        self.legs: list[OutboundLeg] = []
        self.winner: OutboundLeg | None = None
        self.caller_dialog: Dialog | None = None
        self.relay: MediaRelay | None = None
        self.caller_origin = SdpOriginator(node.media_address)
        self.callee_origin = SdpOriginator(node.media_address)
        self.events: asyncio.Queue[_Event] = asyncio.Queue()
        self.end_reason = EndReason.FAILED
        self.hangup_by = HangupBy.SYSTEM
        self.final_status = 0
        self.answered_by = ""

    # --- logging and state ------------------------------------------------

    def _log(self, level: int, message: str, *args: object, exc_info: bool = False) -> None:
        logger.log(
            level,
            "call=%s tenant=%s " + message,
            self.call_id,
            self.node.tenant,
            *args,
            exc_info=exc_info,
        )

    def _set_state(self, state: CallState) -> None:
        self._log(logging.INFO, "state %s -> %s", self.state.name, state.name)
        self.state = state

    # --- entry points from the node -------------------------------------

    def on_caller_cancel(self) -> None:
        self.events.put_nowait(_CallerCancelled())

    def on_in_dialog(self, side: Side, request: SipRequest, transaction: ServerTransaction) -> None:
        self.events.put_nowait(_InDialog(side, request, transaction))

    def on_callee_2xx_retransmission(self, response: SipResponse) -> None:
        """The callee did not get our ACK: send it again."""
        leg = self.winner
        if leg is not None and leg.dialog is not None and response.to.tag == leg.dialog.remote_tag:
            self._send_ack(leg, response.cseq.seq)

    # --- the call ------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except Exception:
            self._log(logging.ERROR, "call failed unexpectedly", exc_info=True)
            if not self.transaction.is_final:
                self.transaction.respond(make_response(self.request, 500, to_tag=self.local_tag))
            self.end_reason = EndReason.FAILED
        finally:
            await self._finish()

    async def _run(self) -> None:
        self.node.journal_begin(self)
        if not self.plan.targets:
            self._reject(480, EndReason.UNAVAILABLE)
            return
        try:
            offer = SessionDescription.parse(self.request.body)
            negotiation = negotiate(offer)
        except SdpError as exc:  # 488 when no codec is common, 400 when malformed
            prefix = "" if isinstance(exc, NotAcceptableError) else "Bad SDP: "
            self._reject(exc.status_code, EndReason.FAILED, f"{prefix}{exc}"[:80])
            return
        self.relay = await self.node.open_relay(self.call_id)
        self.relay.set_remote(Leg.A, *negotiation.endpoint)
        body = self._sdp_for(Leg.B, offer, keep_codecs=negotiation.codec_names)
        for target in self.plan.targets:
            self._fork(target, body)
        self._set_state(CallState.RINGING)
        self.node.publish(self, CallEventType.RINGING)
        deadline = asyncio.get_running_loop().time() + self.plan.ring_timeout_s
        while self.state is CallState.RINGING:
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                event = await asyncio.wait_for(self.events.get(), max(0.0, remaining))
            except TimeoutError:
                self._cancel_forks()
                self._reject(480, EndReason.NO_ANSWER, "No Answer")
                return
            await self._on_ringing_event(event)
        if self.state is CallState.ANSWERED:
            await self._talk()

    def _reject(self, status: int, reason: EndReason, phrase: str | None = None) -> None:
        self.final_status = status
        self.end_reason = reason
        if not self.transaction.is_final:
            self.transaction.respond(
                make_response(self.request, status, phrase, to_tag=self.local_tag)
            )
        self._set_state(CallState.ENDED)

    def _fork(self, target: Target, body: bytes) -> None:
        binding = target.binding
        config = self.node.config()
        contact = SipUri.parse(binding.contact)
        via = self.node.layer.via_for(TransportKind.UDP)
        headers = Headers().add("Via", str(via))
        for route in binding.path:
            headers = headers.add("Route", route)
        headers = headers.add("Max-Forwards", "70")
        caller_uri = SipUri(host=config.sip_domain, user=self.plan.caller or "anonymous")
        headers = headers.add(
            "From", str(NameAddr(caller_uri, self.plan.caller_display, (("tag", new_tag()),)))
        )
        headers = headers.add(
            "To", str(NameAddr(SipUri(host=config.sip_domain, user=target.extension)))
        )
        headers = headers.add("Call-ID", new_call_id(self.node.sip_address.host))
        headers = headers.add("CSeq", str(CSeq(1, "INVITE")))
        headers = headers.add("Contact", f"<{self.node.contact_uri}>")
        headers = headers.add("Allow", ALLOW_IN_CALL)
        if self.plan.label:
            headers = headers.add("X-Vpbx-Label", self.plan.label)
        headers = headers.add("Content-Type", SDP)
        request = SipRequest("INVITE", contact, headers, body)
        first_hop = NameAddr.parse(binding.path[0]).uri if binding.path else contact
        assert isinstance(first_hop, SipUri)
        leg = OutboundLeg(target=target, request=request, flow=flow_to(first_hop))
        self.legs.append(leg)
        self.node.register_leg(self, request.call_id)
        leg.task = asyncio.get_running_loop().create_task(self._drive_leg(leg))

    async def _drive_leg(self, leg: OutboundLeg) -> None:
        leg.transaction = self.node.layer.send_request(leg.request, leg.flow)
        async for response in leg.transaction:
            if response.status == 100:
                continue
            if response.status < 200:
                self.events.put_nowait(_Provisional(leg, response))
            elif response.status < 300:
                self.events.put_nowait(_Answered(leg, response))
            else:
                self.events.put_nowait(_Failed(leg, response.status))

    async def _on_ringing_event(self, event: _Event) -> None:
        if isinstance(event, _Provisional):
            if event.response.status in (180, 183) and not event.leg.ringing:
                event.leg.ringing = True
                if not any(leg.ringing for leg in self.legs if leg is not event.leg):
                    self.transaction.respond(
                        make_response(
                            self.request, 180, to_tag=self.local_tag, extra=self._record_route()
                        )
                    )
        elif isinstance(event, _Answered):
            await self._on_answer(event.leg, event.response)
        elif isinstance(event, _Failed):
            event.leg.final_status = event.status
            if all(leg.final_status is not None for leg in self.legs):
                self._on_all_failed()
        elif isinstance(event, _CallerCancelled):
            self._cancel_forks()
            self.hangup_by = HangupBy.CALLER
            self._reject(487, EndReason.CANCELLED)
        else:
            # In-dialog requests before the answer cannot belong to an established leg.
            event.transaction.respond(make_response(event.request, 481))

    def _on_all_failed(self) -> None:
        statuses = [leg.final_status or 480 for leg in self.legs]
        if any(status in (486, 600) for status in statuses):
            self._reject(486, EndReason.BUSY)
        elif all(status in (603, 403) for status in statuses):
            self._reject(603, EndReason.REJECTED)
        else:
            self._reject(480, EndReason.UNAVAILABLE)

    def _cancel_forks(self, keep: OutboundLeg | None = None) -> None:
        for leg in self.legs:
            if leg is not keep and leg.final_status is None and leg.transaction is not None:
                leg.transaction.cancel()

    def _record_route(self) -> list[tuple[str, str]]:
        return [("Record-Route", value) for value in self.request.headers.values("Record-Route")]

    async def _on_answer(self, leg: OutboundLeg, response: SipResponse) -> None:
        leg.final_status = response.status
        leg.dialog = Dialog.as_uac(leg.request, response)
        if self.winner is not None:
            # A second device answered too late: acknowledge and hang it up.
            self._send_ack(leg, response.cseq.seq)
            await self._send_bye(leg.dialog)
            return
        self.winner = leg
        self._send_ack(leg, response.cseq.seq)
        self._cancel_forks(keep=leg)
        assert self.relay is not None
        try:
            answer = SessionDescription.parse(response.body)
            endpoint = media_endpoint(answer)
            caller_answer = self._sdp_for(Leg.A, answer)
        except SdpError as exc:
            self._log(logging.WARNING, "callee answered with unusable SDP: %s", exc)
            await self._send_bye(leg.dialog)
            self._reject(488, EndReason.FAILED)
            return
        self.relay.set_remote(Leg.B, *endpoint)
        self.times.answer_ms = now_ms()
        self.answered_by = leg.target.extension
        self.final_status = 200
        contact = f"<{self.node.contact_uri}>"
        self.caller_dialog = Dialog.as_uas(self.request, self.local_tag, contact)
        self.caller_dialog.state = DialogState.CONFIRMED
        self.transaction.respond(
            make_response(
                self.request,
                200,
                to_tag=self.local_tag,
                extra=[
                    *self._record_route(),
                    ("Contact", contact),
                    ("Allow", ALLOW_IN_CALL),
                ],
                body=caller_answer,
                content_type=SDP,
            )
        )
        self._set_state(CallState.ANSWERED)
        self.node.publish(self, CallEventType.ANSWERED)
        self.node.journal_answer(self)

    def _send_ack(self, leg: OutboundLeg, seq: int) -> None:
        assert leg.dialog is not None
        via = self.node.layer.via_for(leg.flow.transport)
        ack = leg.dialog.create_request("ACK", str(via), seq=seq)
        task = asyncio.get_running_loop().create_task(
            self.node.layer.send_stateless(ack, leg.dialog.next_hop(leg.flow))
        )
        self.node.layer.track(task)

    async def _send_bye(self, dialog: Dialog | None, fallback: Flow | None = None) -> None:
        if dialog is None:
            return
        via = self.node.layer.via_for(TransportKind.UDP)
        bye = dialog.create_request("BYE", str(via))
        transaction = self.node.layer.send_request(bye, dialog.next_hop(fallback))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(transaction.final, self.node.layer.timers.b + 1)

    async def _talk(self) -> None:
        while self.state is CallState.ANSWERED:
            event = await self.events.get()
            if isinstance(event, _InDialog):
                await self._on_in_dialog(event)
            elif isinstance(event, _Answered) and event.leg is not self.winner:
                await self._on_answer(event.leg, event.response)
            elif isinstance(event, _CallerCancelled):
                continue  # too late: the call is answered; the caller must BYE

    async def _on_in_dialog(self, event: _InDialog) -> None:
        request, transaction = event.request, event.transaction
        dialog = (
            self.caller_dialog
            if event.side is Side.CALLER
            else (self.winner.dialog if self.winner else None)
        )
        if dialog is None or not dialog.accept_remote_request(request):
            transaction.respond(make_response(request, 500 if dialog else 481))
            return
        if request.method == "BYE":
            transaction.respond(make_response(request, 200))
            self.times.end_ms = now_ms()
            self.hangup_by = HangupBy.CALLER if event.side is Side.CALLER else HangupBy.CALLEE
            self.end_reason = EndReason.COMPLETED
            self._set_state(CallState.ENDED)
            other = (
                self.winner.dialog
                if event.side is Side.CALLER and self.winner
                else self.caller_dialog
            )
            await self._send_bye(other, self.winner.flow if self.winner else None)
        elif request.method == "INVITE":
            await self._relay_reinvite(event.side, request, transaction)
        else:
            transaction.respond(make_response(request, 200))

    def _sdp_for(
        self, leg: Leg, sdp: SessionDescription, keep_codecs: tuple[str, ...] | None = None
    ) -> bytes:
        """`sdp` as sent to `leg`'s peer: media pointed at that leg of the relay."""
        assert self.relay is not None
        local = self.relay.local_endpoint(leg)
        origin = self.caller_origin if leg is Leg.A else self.callee_origin
        if keep_codecs is None:
            rewritten = rewrite_for_relay(
                sdp, local.ip, local.rtp_port, origin=origin, rtcp_port=local.rtcp_port
            )
        else:
            rewritten = rewrite_for_relay(
                sdp,
                local.ip,
                local.rtp_port,
                origin=origin,
                rtcp_port=local.rtcp_port,
                keep_codecs=keep_codecs,
            )
        return str(rewritten).encode()

    async def _relay_reinvite(
        self, side: Side, request: SipRequest, transaction: ServerTransaction
    ) -> None:
        """Pass a re-INVITE (hold, unhold, codec change) to the other leg through the relay."""
        assert self.relay is not None
        assert self.winner is not None
        assert self.winner.dialog is not None
        assert self.caller_dialog is not None
        here, there = (Leg.A, Leg.B) if side is Side.CALLER else (Leg.B, Leg.A)
        other_dialog = self.winner.dialog if side is Side.CALLER else self.caller_dialog
        body = b""
        if request.body:
            try:
                offer = SessionDescription.parse(request.body)
                self.relay.set_remote(here, *media_endpoint(offer))
                body = self._sdp_for(there, offer)
            except SdpError as exc:
                transaction.respond(make_response(request, 488, str(exc)[:80]))
                return
        hop = other_dialog.next_hop(self.winner.flow)
        via = str(self.node.layer.via_for(TransportKind.UDP))
        forwarded = other_dialog.create_request(
            "INVITE", via, body=body, content_type=SDP if body else None
        )
        final = await self.node.layer.send_request(forwarded, hop).final
        answer_body = b""
        if final.is_success:
            via = str(self.node.layer.via_for(TransportKind.UDP))
            ack = other_dialog.create_request("ACK", via, seq=forwarded.cseq.seq)
            await self.node.layer.send_stateless(ack, hop)
            if final.body:
                try:
                    answer = SessionDescription.parse(final.body)
                    self.relay.set_remote(there, *media_endpoint(answer))
                    answer_body = self._sdp_for(here, answer)
                except SdpError as exc:
                    self._log(logging.WARNING, "unusable SDP in re-INVITE answer: %s", exc)
        transaction.respond(
            make_response(
                request,
                final.status,
                final.reason,
                extra=[("Contact", f"<{self.node.contact_uri}>")],
                body=answer_body,
                content_type=SDP if answer_body else None,
            )
        )

    async def _finish(self) -> None:
        if self.times.end_ms is None:
            self.times.end_ms = now_ms()
        self._cancel_forks()
        for leg in self.legs:
            if leg.task is not None and not leg.task.done():
                leg.task.cancel()
        stats = None
        if self.relay is not None:
            stats = self.relay.stats()
            await self.relay.stop()
        self.state = CallState.ENDED
        record = self.record()
        self._log(
            logging.INFO,
            "ended reason=%s status=%s answered_by=%s media=%s",
            record.end_reason,
            record.sip_status,
            record.answered_by or "-",
            stats,
        )
        self.node.publish(self, CallEventType.ENDED)
        self.node.call_finished(self, record)

    def record(self) -> CallRecord:
        return CallRecord.build(
            call_id=self.call_id,
            tenant=self.node.tenant,
            city=self.node.city,
            node=self.node.node_name,
            direction=self.plan.direction,
            caller=self.plan.caller,
            dialled=self.plan.number,
            label=self.plan.label,
            answered_by=self.answered_by,
            start_ms=self.times.start_ms,
            answer_ms=self.times.answer_ms,
            end_ms=max(self.times.end_ms or now_ms(), self.times.start_ms),
            end_reason=self.end_reason,
            sip_status=self.final_status,
            hangup_by=self.hangup_by,
        )
