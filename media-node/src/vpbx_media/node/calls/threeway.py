"""A three-way conference: a party of a connected call (or a supervisor, through the
API) adds a third person.

The node rings the target like any member (an extension's registered devices, or a
number through the trunks, judged by the tenant's outbound policy and caps) with its
own offer at a relay of the target's own, while the two parties talk on untouched.
When the target answers, the call's two relay legs and the target's relay meet in a
conference mixer (media/mixer.py): everybody hears the other two, each in their own
codec (PCMU or PCMA). If nobody answers within ``THREEWAY_RING_S``, or every device
refuses, the call goes on as it was.

When one of the three hangs up the other two go on:

- the target: the mixer goes, the call's legs are bridged directly again;
- the answering party: the target is moved onto the call's relay leg B (a re-INVITE
  with the codec the caller talks in) and becomes the party the caller talks to,
  bridged directly; if the target's phone refuses the move, the call ends;
- the caller: the answering party and the target stay in the mixer (the call's
  caller side is gone, so they are not moved), until one of them hangs up.

Every step is on the call's route under the subject ``three-way``: who added whom
(``ringing``), and ``joined``, ``unanswered``, ``refused``, ``left``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from typing import Protocol

from vpbx_common.cdr import HangupBy

from ...media.g711 import Codec
from ...media.mixer import Conference, Party
from ...rtp.relay import Leg, MediaRelay
from ...sdp import SdpError, SdpOriginator, SessionDescription, media_endpoint, negotiate
from ...sip.dialog import Dialog
from ...sip.message import SipRequest, SipResponse, make_response
from ...sip.transaction import ServerTransaction
from ...sip.transport import Flow
from ..legs.sip import ALLOW_IN_CALL, Answered, Failed, LegEvent, Side, SipUacLeg, send_bye
from .offer import node_offer
from .transfer import Ringer, ring_target

logger = logging.getLogger(__name__)

# The target rings at most this long before the call goes on without them.
THREEWAY_RING_S = 30.0
SUBJECT = "three-way"


class ThreeWayState(enum.Enum):
    IDLE = "idle"  # two parties, bridged directly
    RINGING = "ringing"  # the target rings; the two talk on
    JOINED = "joined"  # the three in the mixer
    CALLER_GONE = "caller-gone"  # the answering party and the target, in the mixer


class ThreeWayLine(Ringer, Protocol):
    """What the three-way room needs from its call (``Call`` is one)."""

    call_id: str
    winner: SipUacLeg | None

    @property
    def relay(self) -> MediaRelay | None: ...

    def log(self, level: int, message: str, *args: object) -> None: ...

    def note_step(
        self, outcome: str, member: str, detail: str, *, subject: str = "transfer"
    ) -> None: ...

    def person_of(self, member: str) -> str: ...

    def talking_codec(self) -> Codec: ...

    def current_offer(self) -> bytes: ...

    def take_party(self, leg: SipUacLeg, answer: bytes, *, resumed: bool = False) -> None: ...

    async def reinvite(
        self, dialog: Dialog | None, flow: Flow | None, body: bytes
    ) -> SipResponse | None: ...

    async def end_connected(self, hangup_by: HangupBy, *, answerer_gone: bool = False) -> None: ...


class ThreeWay:
    """The third party of one call: ringing, in the mixer, and leaving."""

    def __init__(self, line: ThreeWayLine) -> None:
        self.line = line
        self.state = ThreeWayState.IDLE
        self.target = ""  # as rung: an extension or an E.164 number
        self.by = ""
        self.deadline: float | None = None  # loop time, while the target rings
        self.legs: list[SipUacLeg] = []  # the target's, while they ring
        self.party: SipUacLeg | None = None  # the target, once they answered
        self._relay: MediaRelay | None = None  # the target's media
        self._conference: Conference | None = None
        self._parties: dict[str, Party] = {}  # "caller", "answerer", "target"

    @property
    def idle(self) -> bool:
        return self.state is ThreeWayState.IDLE

    @property
    def mixing(self) -> bool:
        return self.state in (ThreeWayState.JOINED, ThreeWayState.CALLER_GONE)

    def _set_state(self, state: ThreeWayState) -> None:
        self.line.log(logging.INFO, "three-way %s -> %s", self.state.name, state.name)
        self.state = state

    def _note(self, outcome: str, member: str, detail: str) -> None:
        self.line.note_step(outcome, member, detail, subject=SUBJECT)

    # --- ringing ------------------------------------------------------------------

    async def start(self, target: str, *, by: str, caller_id: str | None) -> tuple[int, str] | None:
        """Ring ``target`` for a three-way conference; the SIP status and reason why
        not, or None. The caller of this checked that the call may be joined."""
        line = self.line
        host = line.host
        relay = await host.open_relay(f"{line.call_id}/third")
        offer = node_offer(relay, SdpOriginator(host.media_address))
        rung = await ring_target(line, target, offer, caller_id)
        if isinstance(rung, tuple):
            await relay.stop()
            status, reason = rung
            self._note("refused", target, f"added by {by}: {status} {reason}")
            return rung
        self.target, self.by, self.legs, self._relay = rung.target, by, rung.legs, relay
        self.deadline = asyncio.get_running_loop().time() + THREEWAY_RING_S
        self._set_state(ThreeWayState.RINGING)
        self._note("ringing", rung.target, f"added by {by}")
        return None

    def owns_leg(self, leg: SipUacLeg) -> bool:
        """``leg`` rings the target now."""
        return self.state is ThreeWayState.RINGING and leg in self.legs

    def owns(self, request: SipRequest) -> bool:
        """``request`` comes on the target's dialog while they are in the mixer."""
        return self.mixing and self.party is not None and request.call_id == self.party.call_id

    async def on_leg(self, event: LegEvent) -> None:
        if isinstance(event, Failed):
            event.leg.final_status = event.status
            if all(leg.final_status is not None for leg in self.legs):
                await self._unanswered(f"{event.status} from the target")
        elif isinstance(event, Answered):
            await self._answered(event.leg, event.response)

    async def on_timer(self, now: float) -> None:
        if self.state is ThreeWayState.RINGING and self.deadline and now >= self.deadline:
            await self._unanswered("no answer in time")

    async def _unanswered(self, why: str) -> None:
        for leg in self.legs:
            leg.cancel()
        await self._release()
        self._note("unanswered", self.target, f"added by {self.by}: {why}")

    async def _answered(self, leg: SipUacLeg, response: SipResponse) -> None:
        line = self.line
        layer = line.host.layer
        leg.take_answer(layer, response, self.legs)
        try:
            chosen = negotiate(SessionDescription.parse(response.body))
        except SdpError as exc:
            line.log(logging.WARNING, "three-way target answered unusable SDP: %s", exc)
            await send_bye(layer, leg.dialog, leg.flow)
            await self._release()
            self._note("failed", self.target, f"unusable SDP: {exc}"[:120])
            return
        call_relay, relay = line.relay, self._relay
        assert call_relay is not None
        assert relay is not None
        relay.set_remote(Leg.A, *chosen.endpoint)
        talking = line.talking_codec()
        caller = Party("caller", talking, call_relay.sender(Leg.A))
        answerer = Party("answerer", talking, call_relay.sender(Leg.B))
        third = Party("target", Codec.from_name(chosen.codec.name), relay.sender(Leg.A))
        conference = Conference(line.host.scheduler, name=f"{line.call_id}/three-way")
        for party in (caller, answerer, third):
            conference.add(party)
        call_relay.serve(Leg.A, caller.on_rtp)
        call_relay.serve(Leg.B, answerer.on_rtp)
        relay.serve(Leg.A, third.on_rtp)
        conference.start()
        self._conference = conference
        self._parties = {"caller": caller, "answerer": answerer, "target": third}
        self.party, self.legs, self.deadline = leg, [], None
        person = line.person_of(leg.extension)
        if not person.startswith("+"):
            line.host.agent_talking(person, line.call_id)
        self._set_state(ThreeWayState.JOINED)
        self._note("joined", person, f"added by {self.by}")

    # --- in the mixer -------------------------------------------------------------

    async def on_request(self, request: SipRequest, transaction: ServerTransaction) -> None:
        """A request on the target's dialog."""
        party = self.party
        assert party is not None
        dialog = party.dialog
        if dialog is None or not dialog.accept_remote_request(request):
            transaction.respond(make_response(request, 500))
        elif request.method == "BYE":
            transaction.respond(make_response(request, 200))
            await self._target_left()
        elif request.method == "OPTIONS":
            transaction.respond(make_response(request, 200, extra=[("Allow", ALLOW_IN_CALL)]))
        elif request.method == "INVITE":
            # Hold or a codec change would pull the target out of the mix.
            transaction.respond(make_response(request, 491))
        else:
            transaction.respond(make_response(request, 405, extra=[("Allow", ALLOW_IN_CALL)]))

    async def _target_left(self) -> None:
        line = self.line
        person = self._person()
        caller_gone = self.state is ThreeWayState.CALLER_GONE
        await self._release()
        self._note("left", person, "the added party hung up")
        if caller_gone:  # the answering party was alone with them
            await line.end_connected(HangupBy.CALLER)

    async def party_left(self, side: Side) -> None:
        """The caller (``Side.CALLER``) or the answering party hung up (their BYE was
        answered); the other two go on."""
        line = self.line
        if side is Side.CALLER and self.state is ThreeWayState.JOINED:
            assert self._conference is not None
            self._conference.remove(self._parties["caller"])
            self._set_state(ThreeWayState.CALLER_GONE)
            self._note("caller-left", "", "the answering party and the added party go on")
            return
        if self.state is ThreeWayState.CALLER_GONE:  # the last two: nobody is left
            party = self.party
            await self._release()
            if party is not None:
                await send_bye(line.host.layer, party.dialog, party.flow)
            await line.end_connected(HangupBy.CALLER, answerer_gone=True)
            return
        await self._answerer_left()

    async def _answerer_left(self) -> None:
        """The target takes the answering party's place on the relay's leg B."""
        line = self.line
        party, old = self.party, line.winner
        assert party is not None
        person = self._person()
        self._unmix()
        answer = await line.reinvite(party.dialog, party.flow, line.current_offer())
        endpoint = None
        if answer is not None and answer.is_success:
            try:
                endpoint = media_endpoint(SessionDescription.parse(answer.body))
            except SdpError as exc:
                line.log(logging.WARNING, "added party's re-INVITE answer unusable: %s", exc)
        if answer is None or endpoint is None or line.relay is None:
            line.log(logging.WARNING, "the added party could not be moved: the call ends")
            await self._release()
            await send_bye(line.host.layer, party.dialog, party.flow)
            await line.end_connected(HangupBy.CALLEE, answerer_gone=True)
            return
        line.relay.set_remote(Leg.B, *endpoint)
        line.take_party(party, answer.body, resumed=True)
        self.party = None  # the call's own party now: its requests go the usual way
        await self._release()
        if old is not None:
            line.host.agent_free(line.person_of(old.extension), line.call_id)
        self._note("answerer-left", person, "the caller and the added party go on")

    async def stop(self) -> None:
        """The call ends: the target's phone stops ringing, or is hung up."""
        if self.state is ThreeWayState.IDLE:
            return
        if self.state is ThreeWayState.RINGING:
            self._note("abandoned", self.target, "the call ended while it rang")
        for leg in self.legs:
            leg.cancel()
        party = self.party
        await self._release()
        if party is not None:
            await send_bye(self.line.host.layer, party.dialog, party.flow)

    # --- tidying up ---------------------------------------------------------------

    def _person(self) -> str:
        return self.line.person_of(self.party.extension) if self.party else self.target

    def _unmix(self) -> None:
        """The mixer goes; the call's relay legs forward to each other again."""
        conference, self._conference = self._conference, None
        if conference is None:
            return
        conference.stop()
        if self.line.relay is not None:
            self.line.relay.serve(Leg.A, None)
            self.line.relay.serve(Leg.B, None)
        if self._relay is not None:
            self._relay.serve(Leg.A, None)
        self._parties = {}

    async def _release(self) -> None:
        """Back to two parties: no mixer, no target relay, nothing ringing."""
        self._unmix()
        relay, self._relay = self._relay, None
        if relay is not None:
            await relay.stop()
        party = self.party
        if party is not None:
            person = self.line.person_of(party.extension)
            if not person.startswith("+"):
                self.line.host.agent_free(person, self.line.call_id)
        self.legs, self.party, self.deadline = [], None, None
        self._set_state(ThreeWayState.IDLE)
