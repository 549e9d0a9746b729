"""Blind transfer: the person on a call hands the other party to someone else.

A phone asks with REFER (RFC 3515) on its own dialog; the control API asks with a
``Transfer`` command. The node (a B2BUA, so the transferee never sees the REFER)
puts the other party on hold with music, rings the target like any member (an
extension's devices, or a number through the trunks), and when the target
answers points the relay at them and lets the transferor go. The transferor
hears how it went through NOTIFYs carrying a sipfrag (RFC 3420) of the target's
answers. Each step is on the call's route: who transferred to whom, and how it
ended.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote

from vpbx_common.cdr import HangupBy

from ...rtp.relay import Leg, MediaRelay
from ...sdp import SdpError, SessionDescription, media_endpoint
from ...sip.dialog import Dialog
from ...sip.errors import SipParseError
from ...sip.headers import NameAddr
from ...sip.message import SipRequest, SipResponse, make_response
from ...sip.transaction import ServerTransaction, TransactionLayer
from ...sip.transport import Flow, TransportKind
from ...sip.uri import SipUri
from ..legs.sip import (
    DeviceTarget,
    Failed,
    LegEvent,
    Provisional,
    Side,
    SipUacLeg,
    send_bye,
)
from ..legs.trunk import TrunkUacLeg
from ..outbound import OutboundRefusal
from ..routing import MemberFailure
from .features import FeatureKind, parse_feature
from .host import CallHost

SIPFRAG = "message/sipfrag;version=2.0"
# The target rings at most this long before the transfer is given up.
TRANSFER_RING_S = 30.0


class TransferError(ValueError):
    """A REFER the node cannot act on; ``status`` is the answer it gets."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ReferTarget:
    """Who a REFER names: the user part of its Refer-To (an extension or a number)."""

    user: str
    replaces: str | None  # attended transfer (Replaces=...): not taken yet


def refer_target(request: SipRequest) -> ReferTarget:
    """The target of a REFER, or TransferError (400 no Refer-To, 416 not a SIP URI)."""
    values = request.headers.values("Refer-To") or request.headers.values("r")
    if len(values) != 1:
        raise TransferError(400, "Exactly One Refer-To Required")
    try:
        uri = NameAddr.parse(values[0]).uri
    except SipParseError as exc:
        raise TransferError(400, "Bad Refer-To") from exc
    if not isinstance(uri, SipUri) or not uri.user:
        raise TransferError(416, "Unsupported Refer-To URI")
    replaces = None
    for header in filter(None, uri.headers.split("&")):
        name, _, value = header.partition("=")
        if name.lower() == "replaces":
            replaces = unquote(value)
    return ReferTarget(uri.user_unescaped or uri.user, replaces)


def sipfrag(status: int, reason: str) -> bytes:
    return f"SIP/2.0 {status} {reason}\r\n".encode()


@dataclass(slots=True)
class PendingTransfer:
    target: str  # as asked: an extension or an E.164 number
    by: str  # who asked: the transferor's extension, or "api:<user id>"
    started: float  # loop time
    # Where the progress NOTIFYs go: the transferor's dialog (None: asked by the API).
    notify_dialog: Dialog | None
    notify_flow: Flow | None
    transferor: SipUacLeg | None  # the party that leaves once the target answers
    transferor_gone: bool = False  # hung up already (blind transfers usually do)
    legs: list[SipUacLeg] = field(default_factory=list)
    recall: bool = False  # a parked call ringing whoever parked it

    @property
    def deadline(self) -> float:
        return self.started + TRANSFER_RING_S


def notify_progress(
    layer: TransactionLayer,
    transfer: PendingTransfer,
    status: int,
    reason: str,
) -> None:
    """Tell the transferor how the target answered (the last one ends the subscription)."""
    if transfer.notify_dialog is not None and not transfer.transferor_gone:
        notify_refer(layer, transfer.notify_dialog, transfer.notify_flow, status, reason)


def notify_refer(
    layer: TransactionLayer, dialog: Dialog, flow: Flow | None, status: int, reason: str
) -> None:
    """A NOTIFY of the implicit subscription a REFER made (RFC 3515), with a sipfrag of
    ``status``; a final status ends the subscription."""
    final = status >= 200
    via = str(layer.via_for(TransportKind.UDP))
    request = dialog.create_request(
        "NOTIFY", via, body=sipfrag(status, reason), content_type=SIPFRAG
    )
    state = "terminated;reason=noresource" if final else "active;expires=60"
    request = request.with_headers(
        request.headers.add("Event", "refer").add("Subscription-State", state)
    )
    # Its answer matters to nobody (a transferor gone answers 481): sent and left.
    layer.send_request(request, dialog.next_hop(flow))


class Ringer(Protocol):
    """How a room rings someone on its call's behalf (``Call`` is one)."""

    @property
    def host(self) -> CallHost: ...

    def fork(self, target: DeviceTarget, sdp: bytes) -> SipUacLeg: ...

    async def fork_trunk(
        self, number: str, sdp: bytes, caller_id: str | None = None
    ) -> TrunkUacLeg | OutboundRefusal:
        """A leg out, judged by the tenant's outbound policy and caps; ``caller_id``: the
        tenant's number to show (default: the usual choice)."""
        ...


class TransferLine(Ringer, Protocol):
    """What the transfer room needs from its call (``Call`` is one): the connected
    phase's parties and media, and the ways to ring someone on the call's behalf."""

    call_id: str
    winner: SipUacLeg | None  # the party the caller talks to

    @property
    def connected(self) -> bool: ...

    @property
    def joining(self) -> bool:
        """A supervisor or a third party is in the call's mixer, or their phone rings."""
        ...

    @property
    def relay(self) -> MediaRelay | None: ...

    def log(self, level: int, message: str, *args: object) -> None: ...

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None: ...

    def note_step(self, outcome: str, member: str, detail: str) -> None:
        """A step on the call's route (subject ``transfer``)."""
        ...

    def person_of(self, member: str) -> str: ...

    def current_offer(self) -> bytes:
        """An offer at the relay's leg B in the codec the caller talks in now."""
        ...

    def hold_caller(self) -> None:
        """The caller hears music on hold until ``stop_media``."""
        ...

    def stop_media(self) -> None: ...

    def take_party(self, leg: SipUacLeg, answer: bytes, *, resumed: bool = False) -> None:
        """``leg`` (answered with SDP ``answer``) is the caller's party now; ``resumed``:
        nobody holds the caller any more."""
        ...

    def adopt(self, leg: SipUacLeg) -> None:
        """``leg`` comes from another call: its requests come here from now on."""
        ...

    def give_away(self, party: SipUacLeg, to_call: str) -> None:
        """``party`` went to another call: forget it and end this call."""
        ...

    async def park(self, slot: str, by: str, *, let_go: bool) -> tuple[int, str] | None: ...

    def unpark(self) -> None:
        """The parked call is taken (its slot is free again)."""
        ...

    async def recall_unanswered(self) -> None:
        """A park recall was not answered: the caller waits on (or is let go)."""
        ...

    async def reinvite(
        self, dialog: Dialog | None, flow: Flow | None, body: bytes
    ) -> SipResponse | None: ...

    async def end_connected(self, hangup_by: HangupBy, *, answerer_gone: bool = False) -> None: ...


def member_failure(statuses: list[int]) -> MemberFailure:
    """Why every device of an extension failed, from their final SIP statuses."""
    if any(status in (486, 600) for status in statuses):
        return MemberFailure.BUSY
    if statuses and all(status in (603, 403) for status in statuses):
        return MemberFailure.DECLINED
    return MemberFailure.UNAVAILABLE


@dataclass(frozen=True, slots=True)
class Ringing:
    """A target rung for a call: as rung (a number in E.164), and its legs."""

    target: str
    legs: list[SipUacLeg]


async def ring_target(
    line: Ringer, target: str, sdp: bytes, caller_id: str | None = None
) -> Ringing | tuple[int, str]:
    """Ring ``target`` for the call: an extension's devices, or a number through the
    trunks (judged by the outbound policy and caps like any leg out). The target as
    rung (a number in E.164) and its legs, or the SIP status and reason why not."""
    host = line.host
    config = host.config()
    if config.user(target) is not None:
        devices = await host.devices(target)
        legs = [line.fork(device, sdp) for device in devices]
        if not legs:
            return 480, "Target Not Reachable"
        return Ringing(target, legs)
    number = host.outbound.destination(target, config)
    if number is None:
        return 404, "No Such Target"
    leg = await line.fork_trunk(number, sdp, caller_id)
    if not isinstance(leg, TrunkUacLeg):
        return leg.sip_status
    return Ringing(number, [leg])


class Transfers:
    """The transfers of one call: at most one pending, and the parties it let go
    (whose late requests still come to the call)."""

    def __init__(self, line: TransferLine) -> None:
        self.line = line
        self.pending: PendingTransfer | None = None
        self.departed: list[SipUacLeg] = []  # parties transferred away

    @property
    def deadline(self) -> float | None:
        return self.pending.deadline if self.pending is not None else None

    @property
    def transferor_gone(self) -> bool:
        return self.pending is not None and self.pending.transferor_gone

    def owns(self, leg: SipUacLeg) -> bool:
        """``leg`` rings a transfer target now."""
        return self.pending is not None and leg in self.pending.legs

    def departed_leg(self, call_id: str) -> SipUacLeg | None:
        return next((leg for leg in self.departed if leg.call_id == call_id), None)

    def depart(self, leg: SipUacLeg) -> None:
        """``leg`` left the call (transferred or parked away); it may still say goodbye."""
        self.departed.append(leg)

    async def start(
        self, target: str, *, by: str, by_refer: bool = False
    ) -> tuple[int, str] | None:
        """Hand the caller to ``target`` (an extension or a number); the answering party
        leaves once the target answers. The SIP status and reason why not, or None."""
        line = self.line
        if not line.connected or line.winner is None:
            return 481, "Call Not Connected"
        if self.pending is not None:
            return 491, "Transfer In Progress"
        if line.joining:  # the mixer holds the call's legs: a transfer would pull one out
            return 491, "Monitoring Or Conference In Progress"
        config = line.host.config()
        feature = parse_feature(target, config.feature_codes)
        if feature is not None and feature.kind is FeatureKind.PARK:
            # A REFER's sender is told by NOTIFY and let go by its handler.
            return await line.park(feature.argument, by, let_go=not by_refer)
        rung = await ring_target(line, target, line.current_offer())
        if isinstance(rung, tuple):
            status, reason = rung
            return status, "No Such Transfer Target" if status == 404 else reason
        target, legs = rung.target, rung.legs
        loop = asyncio.get_running_loop()
        self.pending = PendingTransfer(
            target=target,
            by=by,
            started=loop.time(),
            notify_dialog=None,
            notify_flow=None,
            transferor=line.winner,
            legs=legs,
        )
        line.note_step("entered", target, f"blind transfer by {by}")
        line.log(logging.INFO, "transfer to %s by %s", target, by)
        line.hold_caller()
        return None

    async def recall(self, parker: str) -> bool:
        """A parked call rings ``parker`` (who parked it); whether anything rings."""
        line = self.line
        if self.pending is not None:
            return False
        rung = await ring_target(line, parker, line.current_offer())
        if isinstance(rung, tuple):
            line.note_step("recall-failed", parker, f"{rung[0]} {rung[1]}")
            return False
        self.pending = PendingTransfer(
            target=rung.target,
            by="park recall",
            started=asyncio.get_running_loop().time(),
            notify_dialog=None,
            notify_flow=None,
            transferor=None,
            legs=rung.legs,
            recall=True,
        )
        line.note_step("recall", rung.target, "parked too long: ringing whoever parked it")
        return True

    def stop_recall(self) -> None:
        """Somebody took the parked call while its recall rang."""
        transfer = self.pending
        if transfer is None or not transfer.recall:
            return
        for leg in transfer.legs:
            leg.cancel()
        self.pending = None

    async def on_refer(
        self, side: Side, request: SipRequest, transaction: ServerTransaction
    ) -> None:
        """A blind transfer asked by the person who answered (RFC 3515)."""
        line = self.line
        layer = line.host.layer
        if side is not Side.CALLEE or line.winner is None:
            transaction.respond(make_response(request, 403, "Only The Answering Party Transfers"))
            return
        if self.pending is not None:
            transaction.respond(make_response(request, 491, "Transfer In Progress"))
            return
        try:
            target = refer_target(request)
        except TransferError as exc:
            transaction.respond(make_response(request, exc.status, exc.reason))
            return
        if target.replaces is not None:
            await self._attended(request, transaction, target.replaces)
            return
        winner = line.winner
        by = line.person_of(winner.extension)
        refused = await self.start(target.user, by=by, by_refer=True)
        if refused is not None:
            transaction.respond(make_response(request, *refused))
            return
        transaction.respond(make_response(request, 202))
        if self.pending is None:  # parked at once: nothing rings
            if winner.dialog is not None:
                notify_refer(layer, winner.dialog, winner.flow, 200, "OK")
            line.spawn(send_bye(layer, winner.dialog, winner.flow))
            return
        self.pending.notify_dialog = winner.dialog
        self.pending.notify_flow = winner.flow
        notify_progress(layer, self.pending, 100, "Trying")

    async def _attended(
        self, request: SipRequest, transaction: ServerTransaction, replaces: str
    ) -> None:
        """REFER with Replaces (RFC 3891): the answering party talked to someone on a call
        of their own (the consultation) and joins the two: this call's caller now talks
        to the person they consulted, and the transferor leaves both calls."""
        line = self.line
        layer = line.host.layer
        assert line.winner is not None
        transferor = line.winner
        consult_id = replaces.split(";", 1)[0].strip()
        donor = line.host.call_by_dialog(consult_id)
        party = donor.transfers.consulted_party(consult_id) if donor is not None else None
        if donor is None or donor.transfers is self or party is None:
            transaction.respond(make_response(request, 481, "Consultation Call Not Found"))
            return
        transaction.respond(make_response(request, 202))
        by = line.person_of(transferor.extension)
        pending = PendingTransfer(
            target=party.extension,
            by=by,
            started=asyncio.get_running_loop().time(),
            notify_dialog=transferor.dialog,
            notify_flow=transferor.flow,
            transferor=transferor,
        )
        notify_progress(layer, pending, 100, "Trying")
        answer = await line.reinvite(party.dialog, party.flow, line.current_offer())
        endpoint = None
        if answer is not None and answer.is_success:
            try:
                endpoint = media_endpoint(SessionDescription.parse(answer.body))
            except SdpError as exc:
                line.log(logging.WARNING, "consulted party answered unusable SDP: %s", exc)
        relay = line.relay
        if answer is None or endpoint is None or relay is None:
            status = answer.status if answer is not None and answer.status >= 300 else 500
            notify_progress(layer, pending, status, "Consulted Party Did Not Move")
            line.note_step("failed", party.extension, f"attended transfer by {by}")
            return
        line.stop_media()
        relay.set_remote(Leg.B, *endpoint)
        donor.transfers.hand_over(party, line.call_id)
        line.adopt(party)
        line.take_party(party, answer.body, resumed=True)
        self.depart(transferor)
        notify_progress(layer, pending, 200, "OK")
        line.spawn(send_bye(layer, transferor.dialog, transferor.flow))
        person = line.person_of(party.extension)
        line.host.agent_free(line.person_of(transferor.extension), line.call_id)
        line.host.agent_talking(person, line.call_id)
        line.note_step("answered", person, f"attended transfer by {by}")
        line.log(logging.INFO, "attended transfer by %s to %s", by, person)

    def consulted_party(self, dialog_call_id: str) -> SipUacLeg | None:
        """The party the caller of this call talks to, when ``dialog_call_id`` is the
        caller's dialog (the transferor placed this consultation call); else None."""
        if not self.line.connected or self.line.call_id != dialog_call_id:
            return None
        return self.line.winner

    def hand_over(self, party: SipUacLeg, to_call: str) -> None:
        """``party`` now belongs to another call: forget it here and end this call."""
        self.line.give_away(party, to_call)

    async def on_leg(self, event: LegEvent) -> None:
        """What a leg ringing the target reports."""
        transfer = self.pending
        assert transfer is not None
        if isinstance(event, Provisional):
            if event.response.status in (180, 183) and not event.leg.ringing:
                event.leg.ringing = True
                notify_progress(self.line.host.layer, transfer, 180, "Ringing")
        elif isinstance(event, Failed):
            event.leg.final_status = event.status
            if all(leg.final_status is not None for leg in transfer.legs):
                statuses = [leg.final_status or 480 for leg in transfer.legs]
                status = 486 if member_failure(statuses) is MemberFailure.BUSY else statuses[0]
                await self.fail(status, "Transfer Target Did Not Answer")
        else:
            await self._complete(event.leg, event.response)

    async def _complete(self, leg: SipUacLeg, response: SipResponse) -> None:
        line = self.line
        layer = line.host.layer
        transfer = self.pending
        assert transfer is not None
        relay = line.relay
        assert relay is not None
        leg.take_answer(layer, response, transfer.legs)
        try:
            endpoint = media_endpoint(SessionDescription.parse(response.body))
        except SdpError as exc:
            line.log(logging.WARNING, "transfer target answered with unusable SDP: %s", exc)
            await send_bye(layer, leg.dialog, None)
            await self.fail(488, "Not Acceptable Here")
            return
        line.stop_media()
        relay.set_remote(Leg.B, *endpoint)
        old = transfer.transferor
        line.take_party(leg, response.body)
        self.pending = None
        person = line.person_of(leg.extension)
        notify_progress(layer, transfer, 200, "OK")
        if old is not None:
            self.depart(old)
            line.host.agent_free(line.person_of(old.extension), line.call_id)
            if not transfer.transferor_gone:
                line.spawn(send_bye(layer, old.dialog, old.flow))
        line.host.agent_talking(person, line.call_id)
        if transfer.recall:
            line.unpark()
            line.note_step("retrieved", person, "answered the park recall")
            return
        line.note_step("answered", person, f"transferred by {transfer.by}")
        line.log(logging.INFO, "transferred by %s to %s", transfer.by, person)

    async def fail(self, status: int, reason: str) -> None:
        """The target did not take the call: back to the transferor if they are still
        there, else the caller is told goodbye."""
        line = self.line
        transfer = self.pending
        assert transfer is not None
        for leg in transfer.legs:
            leg.cancel()
        notify_progress(line.host.layer, transfer, status, reason)
        self.pending = None
        if transfer.recall:  # still parked, with music
            line.note_step("recall-unanswered", transfer.target, f"{status} {reason}")
            await line.recall_unanswered()
            return
        line.note_step("failed", transfer.target, f"{status} {reason}")
        line.stop_media()
        if transfer.transferor_gone:
            await line.end_connected(HangupBy.SYSTEM, answerer_gone=True)

    def transferor_left(self) -> None:
        """The transferor hung up while the target rings (a blind transfer does)."""
        assert self.pending is not None
        self.pending.transferor_gone = True

    def abandon(self) -> None:
        """The caller hung up while the target rang."""
        transfer = self.pending
        if transfer is None:
            return
        for leg in transfer.legs:
            leg.cancel()
        self.line.note_step("abandoned", transfer.target, "the caller hung up")
