"""Calls the node places itself: click-to-call (``POST /v1/calls``).

The user's devices ring first, each offered media at the call's relay and shown
the number about to be called. When one answers, it becomes the call's first
side (``OriginatorLeg``) and the call goes on as any call out: the tenant's policy
and caps were checked before anything rang, the caller ID is chosen the usual way
(or given), the trunks are tried in order, the user hears ringback or the
carrier's early media, and the CDR says outbound, placed by the user.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from vpbx_common.cdr import Direction, EndReason, HangupBy, RouteStep, now_ms
from vpbx_common.commands import CommandReply, NodeCommand, Originate, ReplyStatus
from vpbx_common.events import CallEventType
from vpbx_common.nodeconfig import ExternalTarget

from ...rtp.relay import Leg, MediaRelay
from ...sdp import SdpOriginator, SessionDescription, rewrite_for_relay
from ...sip.dialog import Dialog
from ...sip.transaction import new_call_id
from ..legs.originator import OriginatorLeg
from ..legs.sip import Answered, Caller, DeviceTarget, Failed, LegEvent, SipUacLeg, send_bye
from ..outbound import OutboundCall, OutboundRefusal
from .call import Call
from .facts import CallFacts

if TYPE_CHECKING:
    from ..service import NodeService

logger = logging.getLogger(__name__)

# The user's devices ring this long for a call they asked for.
DEVICE_RING_S = 30.0
# A device answering after another one won is hung up for this long after.
_LATE_ANSWERS_S = 35.0

# The addresses are placeholders the relay's replace; not c=0.0.0.0, which is the hold
# marker (RFC 2543) the rewrite keeps: a phone offered it would never send its voice.
_OFFER_TEMPLATE = (
    "v=0\r\no=- 0 0 IN IP4 0.0.0.0\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n"
    "m=audio 9 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
)


def node_offer(relay: MediaRelay, origin: SdpOriginator) -> bytes:
    """The node's own offer (PCMU, PCMA, telephone-event) with media at the relay's leg A."""
    local = relay.local_endpoint(Leg.A)
    offer = rewrite_for_relay(
        SessionDescription.parse(_OFFER_TEMPLATE.encode()),
        local.ip,
        local.rtp_port,
        origin=origin,
        rtcp_port=local.rtcp_port,
    )
    return str(offer).encode()


def _unanswered(statuses: list[int | None]) -> EndReason:
    """Why the user's devices did not take the call they asked for."""
    final = [status for status in statuses if status is not None]
    if any(status in (486, 600) for status in final):
        return EndReason.BUSY
    if final and len(final) == len(statuses) and all(s in (603, 403) for s in final):
        return EndReason.REJECTED
    return EndReason.NO_ANSWER


class Originator:
    """Places the calls the control API asks a node for."""

    def __init__(self, service: NodeService) -> None:
        self.service = service

    async def originate(self, command: NodeCommand, body: Originate) -> CommandReply:
        service = self.service
        config = service.config()
        user = config.user(body.extension)
        if user is None:
            return CommandReply(status=ReplyStatus.REFUSED, detail="no such extension")
        number = service.outbound.destination(body.to, config)
        if number is None:
            return CommandReply(status=ReplyStatus.REFUSED, detail="not a phone number")
        call_id = new_call_id(service.sip_address.host)
        facts = CallFacts(
            call_id=call_id,
            node=service.identity.ref,
            direction=Direction.OUTBOUND,
            number=number,
            label="",
            caller=body.extension,
            caller_display=user.name,
        )
        refusal = service.outbound.policy_refusal(number, config)
        caller_id = service.outbound.caller_id(config, user, number, body.caller_id)
        if refusal is None and caller_id is None:
            refusal = OutboundRefusal.NO_CALLER_ID
        if refusal is None:
            admission = await service.outbound.admit(call_id, config)
            if isinstance(admission, OutboundRefusal):
                refusal = admission
        if refusal is not None or caller_id is None:
            refusal = refusal or OutboundRefusal.NO_CALLER_ID
            service.record_refusal(facts, refusal)
            return CommandReply(status=ReplyStatus.REFUSED, call_id=call_id, detail=str(refusal))
        assert not isinstance(admission, OutboundRefusal)
        devices = await service.devices(body.extension)
        if not devices:
            service.release_outbound(call_id, 0.0)
            return CommandReply(
                status=ReplyStatus.REFUSED, detail="the user has no registered phone"
            )
        outbound = OutboundCall(number, caller_id, False, admission.max_talk_s)
        service.spawn(self._run(command, facts, outbound, devices))
        return CommandReply(status=ReplyStatus.ACCEPTED, call_id=call_id)

    async def _run(
        self,
        command: NodeCommand,
        facts: CallFacts,
        outbound: OutboundCall,
        devices: list[DeviceTarget],
    ) -> None:
        service = self.service
        relay = await service.open_relay(facts.call_id)
        origin = SdpOriginator(service.media_address)
        offer = node_offer(relay, origin)
        events: asyncio.Queue[LegEvent] = asyncio.Queue()
        legs = [
            SipUacLeg.invite(
                device,
                layer=service.layer,
                sip_domain=service.config().sip_domain,
                node_address=service.sip_address,
                contact=service.contact_uri,
                # The phone shows whom it is about to call.
                caller=Caller(outbound.number, outbound.number, ""),
                sdp=offer,
            )
            for device in devices
        ]
        for leg in legs:
            leg.start(service.layer, events.put_nowait)
        service.publish_facts(facts, CallEventType.RINGING)
        winner, answer = await self._first_answer(legs, events)
        if winner is None or answer is None:
            await relay.stop()
            service.release_outbound(facts.call_id, 0.0)
            facts.end_reason = _unanswered([leg.final_status for leg in legs])
            facts.hangup_by = HangupBy.SYSTEM
            facts.end_ms = now_ms()
            service.finish_facts(facts)
            return
        dialog = Dialog.as_uac(winner.request, answer.response)
        winner.dialog = dialog
        winner.send_ack(service.layer, answer.response.cseq.seq)
        originator = OriginatorLeg(
            facts.call_id, winner.request, dialog, answer.response.body, service.layer
        )
        call = Call(
            service,
            originator,
            facts,
            ExternalTarget(number=outbound.number),
            outbound=outbound,
            relay=relay,
            caller_origin=origin,
            first_steps=[
                RouteStep(
                    after_s=0.0,
                    subject="click-to-call",
                    outcome="answered",
                    member=facts.caller,
                    detail=f"placed through the API by user {command.by_user or '-'}",
                )
            ],
        )
        await service.run_originated(call, originator.device_call_id)

    async def _first_answer(
        self, legs: list[SipUacLeg], events: asyncio.Queue[LegEvent]
    ) -> tuple[SipUacLeg | None, Answered | None]:
        """The device that answered first (the others are cancelled), or None."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + DEVICE_RING_S
        while True:
            if all(leg.final_status is not None for leg in legs):
                return None, None
            try:
                event = await asyncio.wait_for(events.get(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                for leg in legs:
                    leg.cancel()
                return None, None
            if isinstance(event, Failed):
                event.leg.final_status = event.status
            elif isinstance(event, Answered):
                event.leg.final_status = event.response.status
                for leg in legs:
                    if leg is not event.leg:
                        leg.cancel()
                self.service.spawn(self._hang_up_late(events))
                return event.leg, event

    async def _hang_up_late(self, events: asyncio.Queue[LegEvent]) -> None:
        """Another device answered in the same moment: acknowledge and hang it up."""
        service = self.service
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _LATE_ANSWERS_S
        while (left := deadline - loop.time()) > 0:
            try:
                event = await asyncio.wait_for(events.get(), left)
            except TimeoutError:
                return
            if isinstance(event, Answered):
                event.leg.dialog = Dialog.as_uac(event.leg.request, event.response)
                event.leg.send_ack(service.layer, event.response.cseq.seq)
                await send_bye(service.layer, event.leg.dialog, None)
