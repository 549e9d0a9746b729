"""Calls the node places itself: click-to-call (``POST /v1/calls``) and queue callbacks.

The user's devices ring first, each offered media at the call's relay and shown
the number about to be called. When one answers, it becomes the call's first
side (``OriginatorLeg``) and the call goes on as any call out: the tenant's policy
and caps were checked before anything rang, the caller ID is chosen the usual way
(or given), the trunks are tried in order, the user hears ringback or the
carrier's early media, and the CDR says outbound, placed by the user.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vpbx_common.cdr import Direction, EndReason, HangupBy, RouteStep, now_ms
from vpbx_common.commands import CommandReply, NodeCommand, Originate, ReplyStatus
from vpbx_common.events import CallEventType
from vpbx_common.nodeconfig import ExternalTarget

from ...sdp import SdpOriginator
from ...sip.dialog import Dialog
from ...sip.transaction import new_call_id
from ..legs.originator import OriginatorLeg
from ..legs.sip import Answered, Caller, DeviceTarget, Failed, LegEvent, SipUacLeg, send_bye
from ..legs.webrtc import device_leg
from ..outbound import OutboundCall, OutboundRefusal
from .call import Call
from .facts import CallFacts
from .offer import node_offer

if TYPE_CHECKING:
    from ..service import NodeService

logger = logging.getLogger(__name__)

# The user's devices ring this long for a call they asked for.
DEVICE_RING_S = 30.0
# A device answering after another one won is hung up for this long after.
_LATE_ANSWERS_S = 35.0


def _unanswered(statuses: list[int | None]) -> EndReason:
    """Why the user's devices did not take the call they asked for."""
    final = [status for status in statuses if status is not None]
    if any(status in (486, 600) for status in final):
        return EndReason.BUSY
    if final and len(final) == len(statuses) and all(s in (603, 403) for s in final):
        return EndReason.REJECTED
    return EndReason.NO_ANSWER


class PlacementOutcome(enum.StrEnum):
    REFUSED = "refused"  # the tenant's policy or caps, or not a number: nothing rang
    UNREACHABLE = "unreachable"  # the user has no registered phone: nothing rang
    UNANSWERED = "unanswered"  # the user's phones rang, nobody took it
    PLACED = "placed"  # the user answered; the call out ran (``facts`` says how)


@dataclass(frozen=True, slots=True)
class Placement:
    """A call the node places: ring ``extension``'s phones, then call ``to``."""

    extension: str
    to: str  # any form the outbound rules read (normalised with the tenant's country)
    caller_id: str | None  # the number shown to ``to``; None: chosen the usual way
    first_step: RouteStep  # how the call came about, first on its route
    ring_s: float = DEVICE_RING_S
    label: str = ""  # the ad channel the call belongs to (a callback: the number called)
    # Called the moment the user answers (before ``to`` rings).
    on_user_answered: Callable[[str], None] | None = None  # the call id


@dataclass(frozen=True, slots=True)
class PlacementResult:
    outcome: PlacementOutcome
    call_id: str = ""
    detail: str = ""
    facts: CallFacts | None = None  # the finished call (PLACED, UNANSWERED)
    # REFUSED for now only (the tenant's lines or calls-out cap were full): try later.
    busy: bool = False


@dataclass(frozen=True, slots=True)
class _Ready:
    placement: Placement
    facts: CallFacts
    outbound: OutboundCall
    devices: list[DeviceTarget]


class Originator:
    """Places calls: those the control API asks a node for, and queue callbacks."""

    def __init__(self, service: NodeService) -> None:
        self.service = service

    async def originate(self, command: NodeCommand, body: Originate) -> CommandReply:
        placement = Placement(
            extension=body.extension,
            to=body.to,
            caller_id=body.caller_id,
            first_step=RouteStep(
                after_s=0.0,
                subject="click-to-call",
                outcome="answered",
                member=body.extension,
                detail=f"placed through the API by user {command.by_user or '-'}",
            ),
        )
        ready = await self.prepare(placement)
        if isinstance(ready, PlacementResult):
            return CommandReply(
                status=ReplyStatus.REFUSED, call_id=ready.call_id or None, detail=ready.detail
            )
        self.service.spawn(self._run_detached(ready))
        return CommandReply(status=ReplyStatus.ACCEPTED, call_id=ready.facts.call_id)

    async def place(self, placement: Placement) -> PlacementResult:
        """Place the call and follow it to its end."""
        ready = await self.prepare(placement)
        if isinstance(ready, PlacementResult):
            return ready
        return await self._run(ready)

    async def prepare(self, placement: Placement) -> _Ready | PlacementResult:
        """Everything checked before anything rings: the policy, the caps (a place taken),
        the caller ID, the user's phones."""
        service = self.service
        config = service.config()
        refused = PlacementOutcome.REFUSED
        user = config.user(placement.extension)
        if user is None:
            return PlacementResult(refused, detail="no such extension")
        number = service.outbound.destination(placement.to, config)
        if number is None:
            return PlacementResult(refused, detail="not a phone number")
        call_id = new_call_id(service.sip_address.host)
        facts = CallFacts(
            call_id=call_id,
            node=service.identity.ref,
            direction=Direction.OUTBOUND,
            number=number,
            label=placement.label,
            caller=placement.extension,
            caller_display=user.name,
        )
        refusal = service.outbound.policy_refusal(number, config)
        caller_id = service.outbound.caller_id(config, user, number, placement.caller_id)
        if refusal is None and caller_id is None:
            refusal = OutboundRefusal.NO_CALLER_ID
        if refusal is None:
            admission = await service.outbound.admit(call_id, config)
            if isinstance(admission, OutboundRefusal):
                refusal = admission
        if refusal is not None or caller_id is None:
            refusal = refusal or OutboundRefusal.NO_CALLER_ID
            service.record_refusal(facts, refusal)
            busy = refusal in (OutboundRefusal.CONCURRENT_LIMIT, OutboundRefusal.PLAN_LIMIT)
            return PlacementResult(refused, call_id, str(refusal), busy=busy)
        assert not isinstance(admission, OutboundRefusal)
        devices = await service.devices(placement.extension)
        if not devices:
            service.release_outbound(call_id, 0.0)
            return PlacementResult(
                PlacementOutcome.UNREACHABLE, detail="the user has no registered phone"
            )
        outbound = OutboundCall(number, caller_id, False, admission.max_talk_s)
        return _Ready(placement, facts, outbound, devices)

    async def _run_detached(self, ready: _Ready) -> None:
        await self._run(ready)

    async def _run(self, ready: _Ready) -> PlacementResult:
        service = self.service
        facts, outbound, placement = ready.facts, ready.outbound, ready.placement
        relay = await service.open_relay(facts.call_id)
        origin = SdpOriginator(service.media_address)
        offer = node_offer(relay, origin)
        events: asyncio.Queue[LegEvent] = asyncio.Queue()
        legs = [
            device_leg(
                device,
                service.webrtc,
                layer=service.layer,
                sip_domain=service.config().sip_domain,
                node_address=service.sip_address,
                contact=service.contact_uri,
                # The phone shows whom it is about to call.
                caller=Caller(outbound.number, outbound.number, ""),
                sdp=offer,
            )
            for device in ready.devices
        ]
        for leg in legs:
            leg.start(service.layer, events.put_nowait)
        service.publish_facts(facts, CallEventType.RINGING)
        winner, answer = await self._first_answer(legs, events, placement.ring_s)
        if winner is None or answer is None:
            for leg in legs:
                leg.stop()  # a browser's leg frees its gateway session
            await relay.stop()
            service.release_outbound(facts.call_id, 0.0)
            facts.end_reason = _unanswered([leg.final_status for leg in legs])
            facts.hangup_by = HangupBy.SYSTEM
            facts.end_ms = now_ms()
            service.finish_facts(facts)
            return PlacementResult(PlacementOutcome.UNANSWERED, facts.call_id, facts=facts)
        dialog = Dialog.as_uac(winner.request, answer.response)
        winner.dialog = dialog
        winner.send_ack(service.layer, answer.response.cseq.seq)
        # The user is on a call from now on: no queue offers them another.
        service.agent_talking(placement.extension, facts.call_id)
        if placement.on_user_answered is not None:
            placement.on_user_answered(facts.call_id)
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
            first_steps=[placement.first_step],
        )
        try:
            await service.run_originated(call, originator.device_call_id)
        finally:
            service.agent_free(placement.extension, facts.call_id)
            for leg in legs:
                leg.stop()  # a browser's leg frees its gateway session
        return PlacementResult(PlacementOutcome.PLACED, facts.call_id, facts=call.facts)

    async def _first_answer(
        self, legs: list[SipUacLeg], events: asyncio.Queue[LegEvent], ring_s: float
    ) -> tuple[SipUacLeg | None, Answered | None]:
        """The device that answered first (the others are cancelled), or None."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + ring_s
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
