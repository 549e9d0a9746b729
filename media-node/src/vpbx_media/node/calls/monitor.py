"""A supervisor on a live call: listen, whisper (heard by the agent only) or barge in.

The call's two legs stop being bridged directly and meet in a conference mixer
(media/mixer.py) with the supervisor, whose phone gets media of its own from a
second relay. Listening: nobody hears the supervisor; whispering: only the agent
does; barging: everybody. When the supervisor hangs up the mixer goes and the two
legs are bridged directly again.

A supervisor joins in one of two ways: their phone dials a feature code (``*33`` +
extension...: the node answers that INVITE), or the control API asks
(``POST /v1/calls/{id}/monitor``, a ``MonitorCall`` command): the node rings the
supervisor's registered phones with its own offer, and the first to answer joins in
the mode asked, if the call is still connected with nothing else going on.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from dataclasses import dataclass, field
from typing import Protocol

from ...media.g711 import Codec
from ...media.mixer import Conference, Party
from ...media.scheduler import PacedScheduler
from ...rtp.relay import Leg, MediaRelay
from ...sdp import SdpError, SdpOriginator, SessionDescription, negotiate, rewrite_for_relay
from ...sip.message import SipRequest, make_response
from ...sip.transaction import ServerTransaction
from ..legs.sip import (
    ALLOW_IN_CALL,
    Answered,
    DeviceTarget,
    Failed,
    LegEvent,
    SipUacLeg,
    send_bye,
)
from .host import CallHost
from .offer import node_offer

# The supervisor's phones ring this long for a call they asked (through the API) to join.
SUPERVISOR_RING_S = 30.0


class MonitorMode(enum.StrEnum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


@dataclass(slots=True)
class Monitor:
    """The mixer of a monitored call and the supervisor's side of it."""

    mode: MonitorMode
    supervisor: SipUacLeg  # the supervisor's dialog (their phone called in)
    relay: MediaRelay  # the supervisor's media
    conference: Conference
    parties: tuple[Party, Party, Party]  # caller, answerer, supervisor

    @classmethod
    def start(
        cls,
        mode: MonitorMode,
        call_relay: MediaRelay,
        codecs: tuple[Codec, Codec, Codec],
        supervisor: SipUacLeg,
        supervisor_relay: MediaRelay,
        scheduler: PacedScheduler,
        name: str,
    ) -> Monitor:
        caller = Party("caller", codecs[0], call_relay.sender(Leg.A))
        answerer = Party("answerer", codecs[1], call_relay.sender(Leg.B))
        boss = Party(
            "supervisor",
            codecs[2],
            supervisor_relay.sender(Leg.A),
            listen_only=mode is MonitorMode.LISTEN,
            whisper_to=(answerer,) if mode is MonitorMode.WHISPER else (),
        )
        conference = Conference(scheduler, name=name)
        for party in (caller, answerer, boss):
            conference.add(party)
        call_relay.serve(Leg.A, caller.on_rtp)
        call_relay.serve(Leg.B, answerer.on_rtp)
        supervisor_relay.serve(Leg.A, boss.on_rtp)
        conference.start()
        return cls(mode, supervisor, supervisor_relay, conference, (caller, answerer, boss))

    async def stop(self, call_relay: MediaRelay) -> None:
        """The supervisor leaves: the two legs are bridged directly again."""
        self.conference.stop()
        call_relay.serve(Leg.A, None)
        call_relay.serve(Leg.B, None)
        self.relay.serve(Leg.A, None)
        await self.relay.stop()


@dataclass(slots=True)
class SupervisorRinging:
    """A supervisor's phones ringing to join the call (asked through the API)."""

    mode: MonitorMode
    extension: str
    by: str  # who asked: "api:<user id>"
    relay: MediaRelay  # where the supervisor's media will come
    deadline: float  # loop time
    legs: list[SipUacLeg] = field(default_factory=list)


class MonitorLine(Protocol):
    """What the monitoring room needs from its call (``Call`` is one)."""

    call_id: str

    @property
    def host(self) -> CallHost: ...

    @property
    def connected(self) -> bool: ...

    @property
    def relay(self) -> MediaRelay | None: ...

    def log(self, level: int, message: str, *args: object) -> None: ...

    def note_step(self, outcome: str, member: str, detail: str) -> None: ...

    def route_here(self, leg_call_id: str) -> None:
        """In-dialog requests of the leg with this SIP Call-ID come to this call."""
        ...

    def talking_codec(self) -> Codec:
        """The codec the caller and the answering party talk in now."""
        ...

    def fork(self, target: DeviceTarget, sdp: bytes) -> SipUacLeg: ...

    def can_join(self) -> bool:
        """The call is connected, with nothing else going on (transfer, hold, mixer)."""
        ...


class Monitoring:
    """The supervisor of one call, if any: joins them, hears their requests, lets them go."""

    def __init__(self, line: MonitorLine) -> None:
        self.line = line
        self.active: Monitor | None = None
        self.ringing: SupervisorRinging | None = None
        self._starting = False  # a request is being set up (awaits before it rings)

    @property
    def idle(self) -> bool:
        return self.active is None and self.ringing is None and not self._starting

    @property
    def deadline(self) -> float | None:
        return self.ringing.deadline if self.ringing is not None else None

    def owns_leg(self, leg: SipUacLeg) -> bool:
        """``leg`` rings a supervisor's phone now."""
        return self.ringing is not None and leg in self.ringing.legs

    async def ring(
        self, mode: MonitorMode, extension: str, devices: list[DeviceTarget], by: str
    ) -> None:
        """Ring the supervisor's ``devices``; the first to answer joins in ``mode``."""
        line = self.line
        host = line.host
        # Taken before the first await: a second request (a double click, a three-way
        # asked at the same moment) finds the call busy.
        self._starting = True
        try:
            relay = await host.open_relay(f"{line.call_id}/supervisor")
        finally:
            self._starting = False
        if not line.connected:  # the call ended meanwhile
            await relay.stop()
            return
        offer = node_offer(relay, SdpOriginator(host.media_address))
        deadline = asyncio.get_running_loop().time() + SUPERVISOR_RING_S
        ringing = SupervisorRinging(mode, extension, by, relay, deadline)
        ringing.legs = [line.fork(device, offer) for device in devices]
        self.ringing = ringing
        line.log(logging.INFO, "supervisor %s rings to %s (asked by %s)", extension, mode, by)

    async def on_leg(self, event: LegEvent) -> None:
        """What a leg ringing the supervisor reports."""
        ringing = self.ringing
        assert ringing is not None
        if isinstance(event, Failed):
            event.leg.final_status = event.status
            if all(leg.final_status is not None for leg in ringing.legs):
                await self._unanswered(f"{event.status} from every phone")
        elif isinstance(event, Answered):
            await self._answered(ringing, event)

    async def on_timer(self, now: float) -> None:
        if self.ringing is not None and now >= self.ringing.deadline:
            await self._unanswered("no answer in time")

    async def _unanswered(self, why: str) -> None:
        ringing, self.ringing = self.ringing, None
        assert ringing is not None
        for leg in ringing.legs:
            leg.cancel()
        await ringing.relay.stop()
        detail = f"supervisor {ringing.extension} did not answer ({why})"
        self.line.note_step("unanswered", ringing.extension, detail)
        self.line.log(logging.INFO, "%s", detail)

    async def _answered(self, ringing: SupervisorRinging, event: Answered) -> None:
        line = self.line
        layer = line.host.layer
        leg, response = event.leg, event.response
        self.ringing = None
        leg.take_answer(layer, response, ringing.legs)
        try:
            chosen = negotiate(SessionDescription.parse(response.body))
        except SdpError as exc:
            line.log(logging.WARNING, "supervisor's phone answered unusable SDP: %s", exc)
            chosen = None
        if chosen is None or not line.can_join():
            # The call moved on while the phone rang (ended, a transfer, a hold).
            await send_bye(layer, leg.dialog, leg.flow)
            await ringing.relay.stop()
            line.note_step("refused", ringing.extension, "the call could not be joined now")
            return
        ringing.relay.set_remote(Leg.A, *chosen.endpoint)
        self._join(ringing.mode, leg, ringing.relay, Codec.from_name(chosen.codec.name))

    def owns(self, request: SipRequest) -> bool:
        """``request`` comes on the supervisor's dialog."""
        return self.active is not None and request.call_id == self.active.supervisor.call_id

    async def take(
        self,
        request: SipRequest,
        transaction: ServerTransaction,
        person: str,
        mode: MonitorMode,
    ) -> None:
        """A supervisor's phone called in (a feature code) to listen, whisper or barge."""
        line = self.line
        if not line.can_join():
            transaction.respond(make_response(request, 486, "Call Cannot Be Monitored Now"))
            return
        assert line.relay is not None
        host = line.host
        relay = await host.open_relay(f"{line.call_id}/supervisor")
        try:
            offer = SessionDescription.parse(request.body)
            chosen = negotiate(offer)
            local = relay.local_endpoint(Leg.A)
            body = str(
                rewrite_for_relay(
                    offer,
                    local.ip,
                    local.rtp_port,
                    origin=SdpOriginator(host.media_address),
                    rtcp_port=local.rtcp_port,
                    keep_codecs=chosen.codec_names,
                )
            ).encode()
        except SdpError as exc:
            await relay.stop()
            transaction.respond(make_response(request, exc.status_code, str(exc)[:80]))
            return
        relay.set_remote(Leg.A, *chosen.endpoint)
        leg = SipUacLeg.answering(request, transaction, person, host.contact_uri, body)
        line.route_here(leg.call_id)
        self._join(mode, leg, relay, Codec.from_name(chosen.codec.name))

    def _join(self, mode: MonitorMode, leg: SipUacLeg, relay: MediaRelay, codec: Codec) -> None:
        line = self.line
        assert line.relay is not None
        talking = line.talking_codec()
        self.active = Monitor.start(
            mode,
            line.relay,
            (talking, talking, codec),
            leg,
            relay,
            line.host.scheduler,
            line.call_id,
        )
        line.note_step(str(mode), leg.extension, f"supervisor {leg.extension} {mode}s")
        line.log(logging.INFO, "supervisor %s %ss", leg.extension, mode)

    async def stop(self, *, hang_up: bool) -> None:
        ringing, self.ringing = self.ringing, None
        if ringing is not None:  # the call ends while the supervisor's phones ring
            for leg in ringing.legs:
                leg.cancel()
            await ringing.relay.stop()
        monitor, self.active = self.active, None
        relay = self.line.relay
        if monitor is None or relay is None:
            return
        await monitor.stop(relay)
        if hang_up:
            layer = self.line.host.layer
            await send_bye(layer, monitor.supervisor.dialog, monitor.supervisor.flow)

    async def on_request(self, request: SipRequest, transaction: ServerTransaction) -> None:
        """A request on the supervisor's dialog."""
        monitor = self.active
        assert monitor is not None
        dialog = monitor.supervisor.dialog
        if dialog is None or not dialog.accept_remote_request(request):
            transaction.respond(make_response(request, 500))
        elif request.method == "BYE":
            transaction.respond(make_response(request, 200))
            await self.stop(hang_up=False)
            self.line.note_step("left", monitor.supervisor.extension, "the supervisor left")
        else:
            transaction.respond(make_response(request, 405, extra=[("Allow", ALLOW_IN_CALL)]))
