"""One call through the tenant node: a B2BUA with the caller's leg and the legs it rings.

The caller's leg (A) is a UAS dialog; each ringing device is a UAC leg (B).
Media of every call is anchored in the node's relay. The call is an explicit
state machine driven by one task that consumes events from the legs, so
races (a CANCEL crossing a 200, two devices answering at once) are decided
in one place. What the call learns goes into its ``CallFacts``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from enum import Enum

from vpbx_common.cdr import EndReason, HangupBy, now_ms
from vpbx_common.events import CallEventType

from ...rtp.relay import Leg, MediaRelay
from ...sdp import (
    NotAcceptableError,
    SdpError,
    SdpOriginator,
    SessionDescription,
    media_endpoint,
    negotiate,
    rewrite_for_relay,
)
from ...sip.dialog import Dialog
from ...sip.message import SipRequest, SipResponse, make_response
from ...sip.transaction import ServerTransaction
from ...sip.transport import TransportKind
from ..legs.sip import (
    ALLOW_IN_CALL,
    SDP,
    Answered,
    Caller,
    DeviceTarget,
    Failed,
    LegEvent,
    Provisional,
    Side,
    SipUacLeg,
    SipUasLeg,
    send_bye,
)
from .facts import CallFacts
from .host import CallHost

logger = logging.getLogger(__name__)


class CallState(Enum):
    ROUTING = "routing"
    RINGING = "ringing"
    ANSWERED = "answered"
    ENDED = "ended"


# Events from the caller's side that the call's task consumes (leg events come from legs).
@dataclass(frozen=True, slots=True)
class _CallerCancelled:
    pass


@dataclass(frozen=True, slots=True)
class _InDialog:
    side: Side
    request: SipRequest
    transaction: ServerTransaction


_Event = LegEvent | _CallerCancelled | _InDialog


@dataclass(slots=True)
class CallPlan:
    """Who rings, and for how long, as decided before ringing starts."""

    targets: list[DeviceTarget]
    ring_timeout_s: float


class Call:
    def __init__(
        self,
        host: CallHost,
        caller: SipUasLeg,
        facts: CallFacts,
        plan: CallPlan,
    ) -> None:
        self.host = host
        self.caller = caller
        self.facts = facts
        self.plan = plan
        self.call_id = caller.call_id
        self.state = CallState.ROUTING
        self.legs: list[SipUacLeg] = []
        self.winner: SipUacLeg | None = None
        self.relay: MediaRelay | None = None
        self.caller_origin = SdpOriginator(host.media_address)
        self.callee_origin = SdpOriginator(host.media_address)
        self.events: asyncio.Queue[_Event] = asyncio.Queue()
        facts.ringing = tuple(target.extension for target in plan.targets)

    @property
    def transaction(self) -> ServerTransaction:
        return self.caller.transaction

    # --- logging and state ------------------------------------------------

    def _log(self, level: int, message: str, *args: object, exc_info: bool = False) -> None:
        logger.log(
            level,
            "call=%s tenant=%s " + message,
            self.call_id,
            self.facts.node.tenant,
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
            leg.send_ack(self.host.layer, response.cseq.seq)

    # --- the call ------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except Exception:
            self._log(logging.ERROR, "call failed unexpectedly", exc_info=True)
            self.caller.reject(500)
            self.facts.end_reason = EndReason.FAILED
        finally:
            await self._finish()

    async def _run(self) -> None:
        self.host.journal_begin(self)
        if not self.plan.targets:
            self._reject(480, EndReason.UNAVAILABLE)
            return
        try:
            offer = SessionDescription.parse(self.caller.request.body)
            negotiation = negotiate(offer)
        except SdpError as exc:  # 488 when no codec is common, 400 when malformed
            prefix = "" if isinstance(exc, NotAcceptableError) else "Bad SDP: "
            self._reject(exc.status_code, EndReason.FAILED, f"{prefix}{exc}"[:80])
            return
        self.relay = await self.host.open_relay(self.call_id)
        self.relay.set_remote(Leg.A, *negotiation.endpoint)
        body = self._sdp_for(Leg.B, offer, keep_codecs=negotiation.codec_names)
        for target in self.plan.targets:
            self._fork(target, body)
        self._set_state(CallState.RINGING)
        self.host.publish(self, CallEventType.RINGING)
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
        self.facts.sip_status = status
        self.facts.end_reason = reason
        self.caller.reject(status, phrase)
        self._set_state(CallState.ENDED)

    def _fork(self, target: DeviceTarget, body: bytes) -> None:
        leg = SipUacLeg.invite(
            target,
            layer=self.host.layer,
            sip_domain=self.host.config().sip_domain,
            node_address=self.host.sip_address,
            contact=self.host.contact_uri,
            caller=Caller(self.facts.caller, self.facts.caller_display, self.facts.label),
            sdp=body,
        )
        self.legs.append(leg)
        self.host.register_leg(self, leg.call_id)
        leg.start(self.host.layer, self.events.put_nowait)

    async def _on_ringing_event(self, event: _Event) -> None:
        if isinstance(event, Provisional):
            if event.response.status in (180, 183) and not event.leg.ringing:
                event.leg.ringing = True
                if not any(leg.ringing for leg in self.legs if leg is not event.leg):
                    self.caller.ring()
        elif isinstance(event, Answered):
            await self._on_answer(event.leg, event.response)
        elif isinstance(event, Failed):
            event.leg.final_status = event.status
            if all(leg.final_status is not None for leg in self.legs):
                self._on_all_failed()
        elif isinstance(event, _CallerCancelled):
            self._cancel_forks()
            self.facts.hangup_by = HangupBy.CALLER
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

    def _cancel_forks(self, keep: SipUacLeg | None = None) -> None:
        for leg in self.legs:
            if leg is not keep:
                leg.cancel()

    async def _on_answer(self, leg: SipUacLeg, response: SipResponse) -> None:
        leg.final_status = response.status
        leg.dialog = Dialog.as_uac(leg.request, response)
        if self.winner is not None:
            # A second device answered too late: acknowledge and hang it up.
            leg.send_ack(self.host.layer, response.cseq.seq)
            await send_bye(self.host.layer, leg.dialog, None)
            return
        self.winner = leg
        leg.send_ack(self.host.layer, response.cseq.seq)
        self._cancel_forks(keep=leg)
        assert self.relay is not None
        try:
            answer = SessionDescription.parse(response.body)
            endpoint = media_endpoint(answer)
            caller_answer = self._sdp_for(Leg.A, answer)
        except SdpError as exc:
            self._log(logging.WARNING, "callee answered with unusable SDP: %s", exc)
            await send_bye(self.host.layer, leg.dialog, None)
            self._reject(488, EndReason.FAILED)
            return
        self.relay.set_remote(Leg.B, *endpoint)
        self.facts.answer_ms = now_ms()
        self.facts.answered_by = leg.extension
        self.facts.sip_status = 200
        self.caller.answer(self.host.contact_uri, caller_answer)
        self._set_state(CallState.ANSWERED)
        self.host.publish(self, CallEventType.ANSWERED)
        self.host.journal_answer(self)

    async def _talk(self) -> None:
        while self.state is CallState.ANSWERED:
            event = await self.events.get()
            if isinstance(event, _InDialog):
                await self._on_in_dialog(event)
            elif isinstance(event, Answered) and event.leg is not self.winner:
                await self._on_answer(event.leg, event.response)
            elif isinstance(event, _CallerCancelled):
                continue  # too late: the call is answered; the caller must BYE

    async def _on_in_dialog(self, event: _InDialog) -> None:
        request, transaction = event.request, event.transaction
        dialog = (
            self.caller.dialog
            if event.side is Side.CALLER
            else (self.winner.dialog if self.winner else None)
        )
        if dialog is None or not dialog.accept_remote_request(request):
            transaction.respond(make_response(request, 500 if dialog else 481))
            return
        if request.method == "BYE":
            transaction.respond(make_response(request, 200))
            self.facts.end_ms = now_ms()
            self.facts.hangup_by = HangupBy.CALLER if event.side is Side.CALLER else HangupBy.CALLEE
            self.facts.end_reason = EndReason.COMPLETED
            self._set_state(CallState.ENDED)
            other = (
                self.winner.dialog
                if event.side is Side.CALLER and self.winner
                else self.caller.dialog
            )
            await send_bye(self.host.layer, other, self.winner.flow if self.winner else None)
        elif request.method == "INVITE":
            await self._relay_reinvite(event.side, request, transaction)
        elif request.method == "OPTIONS":
            transaction.respond(make_response(request, 200, extra=[("Allow", ALLOW_IN_CALL)]))
        else:
            # REFER, INFO, UPDATE, MESSAGE...: a 200 would tell the phone that a transfer
            # or a DTMF INFO was acted on when nothing happened (RFC 3261 8.2.1).
            transaction.respond(make_response(request, 405, extra=[("Allow", ALLOW_IN_CALL)]))

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
        assert self.caller.dialog is not None
        here, there = (Leg.A, Leg.B) if side is Side.CALLER else (Leg.B, Leg.A)
        other_dialog = self.winner.dialog if side is Side.CALLER else self.caller.dialog
        body = b""
        if request.body:
            try:
                offer = SessionDescription.parse(request.body)
                self.relay.set_remote(here, *media_endpoint(offer))
                body = self._sdp_for(there, offer)
            except SdpError as exc:
                transaction.respond(make_response(request, 488, str(exc)[:80]))
                return
        layer = self.host.layer
        hop = other_dialog.next_hop(self.winner.flow)
        via = str(layer.via_for(TransportKind.UDP))
        forwarded = other_dialog.create_request(
            "INVITE", via, body=body, content_type=SDP if body else None
        )
        final = await layer.send_request(forwarded, hop).final
        answer_body = b""
        if final.is_success:
            via = str(layer.via_for(TransportKind.UDP))
            ack = other_dialog.create_request("ACK", via, seq=forwarded.cseq.seq)
            await layer.send_stateless(ack, hop)
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
                extra=[("Contact", f"<{self.host.contact_uri}>")],
                body=answer_body,
                content_type=SDP if answer_body else None,
            )
        )

    async def _finish(self) -> None:
        if self.facts.end_ms is None:
            self.facts.end_ms = now_ms()
        self._cancel_forks()
        for leg in self.legs:
            leg.stop()
        stats = None
        if self.relay is not None:
            stats = self.relay.stats()
            await self.relay.stop()
        self.state = CallState.ENDED
        self._log(
            logging.INFO,
            "ended reason=%s status=%s answered_by=%s media=%s",
            self.facts.end_reason,
            self.facts.sip_status,
            self.facts.answered_by or "-",
            stats,
        )
        self.host.publish(self, CallEventType.ENDED)
        self.host.call_finished(self)
