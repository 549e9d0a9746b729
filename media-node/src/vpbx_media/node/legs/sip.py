"""SIP call legs: the caller's UAS leg and the UAC legs that ring the tenant's devices."""

from __future__ import annotations

import asyncio
import contextlib
import enum
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ...sip.dialog import Dialog, DialogState
from ...sip.headers import CSeq, NameAddr
from ...sip.message import Headers, SipRequest, SipResponse, make_response
from ...sip.transaction import (
    ClientTransaction,
    ServerTransaction,
    TransactionLayer,
    new_call_id,
    new_tag,
)
from ...sip.transport import Address, Flow, TransportKind, flow_to
from ...sip.uri import SipUri
from ..bindings import Binding
from .base import LegState

SDP = "application/sdp"
# Methods a call leg of the node acts on (the node as a whole also takes REGISTER).
ALLOW_IN_CALL = "INVITE, ACK, CANCEL, BYE, OPTIONS, REFER"


class Side(enum.Enum):
    CALLER = "caller"
    CALLEE = "callee"


@dataclass(frozen=True, slots=True)
class DeviceTarget:
    """One registered device of an extension: where a UAC leg is sent."""

    extension: str
    binding: Binding


@dataclass(frozen=True, slots=True)
class Provisional:
    leg: SipUacLeg
    response: SipResponse


@dataclass(frozen=True, slots=True)
class Answered:
    leg: SipUacLeg
    response: SipResponse


@dataclass(frozen=True, slots=True)
class Failed:
    leg: SipUacLeg
    status: int


LegEvent = Provisional | Answered | Failed


@dataclass(frozen=True, slots=True)
class Caller:
    """Who the call shows as coming from, on every leg it offers."""

    user: str
    display: str | None
    label: str


class SipUasLeg:
    """The caller's leg: the INVITE we received and the dialog we answer it with."""

    def __init__(self, request: SipRequest, transaction: ServerTransaction) -> None:
        self.request = request
        self.transaction = transaction
        self.local_tag = new_tag()
        self.dialog: Dialog | None = None
        self.state = LegState.NEW

    @property
    def call_id(self) -> str:
        return self.request.call_id

    @property
    def is_final(self) -> bool:
        return self.transaction.is_final

    def _record_route(self) -> list[tuple[str, str]]:
        return [("Record-Route", value) for value in self.request.headers.values("Record-Route")]

    def ring(self) -> None:
        self.transaction.respond(
            make_response(self.request, 180, to_tag=self.local_tag, extra=self._record_route())
        )
        self.state = LegState.RINGING

    def progress(self, contact: SipUri, sdp: bytes) -> None:
        """183 with our SDP: the caller hears early media (a carrier's ringback or notice)."""
        self.transaction.respond(
            make_response(
                self.request,
                183,
                to_tag=self.local_tag,
                extra=[*self._record_route(), ("Contact", f"<{contact}>")],
                body=sdp,
                content_type=SDP,
            )
        )
        self.state = LegState.RINGING

    def answer(self, contact: SipUri, sdp: bytes) -> None:
        """200 OK with our SDP: the caller's dialog is confirmed from now on."""
        contact_header = f"<{contact}>"
        self.dialog = Dialog.as_uas(self.request, self.local_tag, contact_header)
        self.dialog.state = DialogState.CONFIRMED
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
                body=sdp,
                content_type=SDP,
            )
        )
        self.state = LegState.ANSWERED

    def reject(self, status: int, phrase: str | None = None, retry_after: str = "") -> None:
        if not self.transaction.is_final:
            extra = [("Retry-After", retry_after)] if retry_after else []
            self.transaction.respond(
                make_response(self.request, status, phrase, to_tag=self.local_tag, extra=extra)
            )
        self.state = LegState.FAILED


@dataclass(slots=True)
class SipUacLeg:
    """An INVITE the node sends to one registered device, and the dialog if it answers."""

    member: str  # what the router rang: an extension, or an E.164 number (trunk legs)
    request: SipRequest
    flow: Flow
    transaction: ClientTransaction | None = None
    dialog: Dialog | None = None
    ringing: bool = False
    final_status: int | None = None
    task: asyncio.Task[None] | None = None
    state: LegState = field(default=LegState.NEW)

    @property
    def call_id(self) -> str:
        return self.request.call_id

    @property
    def extension(self) -> str:
        return self.member

    @classmethod
    def invite(
        cls,
        target: DeviceTarget,
        *,
        layer: TransactionLayer,
        sip_domain: str,
        node_address: Address,
        contact: SipUri,
        caller: Caller,
        sdp: bytes,
    ) -> SipUacLeg:
        binding = target.binding
        device = SipUri.parse(binding.contact)
        via = layer.via_for(TransportKind.UDP)
        headers = Headers().add("Via", str(via))
        for route in binding.path:
            headers = headers.add("Route", route)
        headers = headers.add("Max-Forwards", "70")
        caller_uri = SipUri(host=sip_domain, user=caller.user or "anonymous")
        headers = headers.add(
            "From", str(NameAddr(caller_uri, caller.display, (("tag", new_tag()),)))
        )
        headers = headers.add("To", str(NameAddr(SipUri(host=sip_domain, user=target.extension))))
        headers = headers.add("Call-ID", new_call_id(node_address.host))
        headers = headers.add("CSeq", str(CSeq(1, "INVITE")))
        headers = headers.add("Contact", f"<{contact}>")
        headers = headers.add("Allow", ALLOW_IN_CALL)
        if caller.label:
            headers = headers.add("X-Vpbx-Label", caller.label)
        headers = headers.add("Content-Type", SDP)
        request = SipRequest("INVITE", device, headers, sdp)
        first_hop = NameAddr.parse(binding.path[0]).uri if binding.path else device
        assert isinstance(first_hop, SipUri)
        return cls(member=target.extension, request=request, flow=flow_to(first_hop))

    @classmethod
    def answering(
        cls,
        request: SipRequest,
        transaction: ServerTransaction,
        member: str,
        contact: SipUri,
        sdp: bytes,
    ) -> SipUacLeg:
        """A phone that called in to take a call (pickup, park retrieval): the node answers
        its INVITE, and from then on it is the call's answering party like any other."""
        local_tag = new_tag()
        contact_header = f"<{contact}>"
        record_route = [("Record-Route", value) for value in request.headers.values("Record-Route")]
        transaction.respond(
            make_response(
                request,
                200,
                to_tag=local_tag,
                extra=[*record_route, ("Contact", contact_header), ("Allow", ALLOW_IN_CALL)],
                body=sdp,
                content_type=SDP,
            )
        )
        dialog = Dialog.as_uas(request, local_tag, contact_header)
        dialog.state = DialogState.CONFIRMED
        return cls(
            member=member,
            request=request,
            flow=transaction.flow,
            dialog=dialog,
            final_status=200,
            state=LegState.ANSWERED,
        )

    def start(self, layer: TransactionLayer, report: Callable[[LegEvent], None]) -> None:
        self.task = asyncio.get_running_loop().create_task(self._drive(layer, report))

    async def _drive(self, layer: TransactionLayer, report: Callable[[LegEvent], None]) -> None:
        self.transaction = layer.send_request(self.request, self.flow)
        async for response in self.transaction:
            if response.status == 100:
                continue
            if response.status < 200:
                report(Provisional(self, response))
            elif response.status < 300:
                report(Answered(self, response))
            else:
                report(Failed(self, response.status))

    def cancel(self) -> None:
        """CANCEL the INVITE if no final answer came yet."""
        if self.final_status is None and self.transaction is not None:
            self.transaction.cancel()

    def stop(self) -> None:
        if self.task is not None and not self.task.done():
            self.task.cancel()

    def take_answer(
        self, layer: TransactionLayer, response: SipResponse, rivals: Iterable[SipUacLeg]
    ) -> None:
        """This leg won: its dialog is confirmed (ACK) and the rivals still ringing stop."""
        self.final_status = response.status
        self.dialog = Dialog.as_uac(self.request, response)
        self.send_ack(layer, response.cseq.seq)
        for other in rivals:
            if other is not self:
                other.cancel()

    def send_ack(self, layer: TransactionLayer, seq: int) -> None:
        assert self.dialog is not None
        via = layer.via_for(self.flow.transport)
        ack = self.dialog.create_request("ACK", str(via), seq=seq)
        task = asyncio.get_running_loop().create_task(
            layer.send_stateless(ack, self.dialog.next_hop(self.flow))
        )
        layer.track(task)


async def send_bye(layer: TransactionLayer, dialog: Dialog | None, fallback: Flow | None) -> None:
    """BYE on ``dialog`` (if there is one), waiting at most a transaction timeout."""
    if dialog is None:
        return
    via = layer.via_for(TransportKind.UDP)
    bye = dialog.create_request("BYE", str(via))
    transaction = layer.send_request(bye, dialog.next_hop(fallback))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(transaction.final, layer.timers.b + 1)
