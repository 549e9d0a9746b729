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

A consultation (an attended transfer asked through the API) is the same room with
the caller left out: the caller hears music on hold from the moment the target
rings, and once the target answers only the answering party and the target talk
(``CONSULTING``, in the mixer without the caller). Then:

- ``complete``: the answering party is hung up and the target takes their place
  (moved onto the relay's leg B as above), the caller off hold: transferred;
- ``cancel``: the target is hung up (or stops ringing), the caller comes off hold
  and talks to the answering party again;
- the answering party hanging up completes the transfer (also while the target
  still rings: it is then put through when it answers, and the caller is hung up
  if it does not); the target hanging up or not answering is a cancel; the caller
  hanging up leaves the other two talking.

Those steps are on the route under ``transfer``: ``consulting`` (who consulted
whom), then ``transferred`` or ``cancelled``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Coroutine
from typing import Any, Protocol

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
    CONSULTING = "consulting"  # the answering party and the target; the caller on hold
    CALLER_GONE = "caller-gone"  # the answering party and the target, in the mixer


class ThreeWayLine(Ringer, Protocol):
    """What the three-way room needs from its call (``Call`` is one)."""

    call_id: str
    winner: SipUacLeg | None

    @property
    def connected(self) -> bool: ...

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

    def hold_caller(self) -> None: ...

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None: ...

    def stop_media(self) -> None: ...

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
        self.consult = False  # an attended transfer's consultation, not a conference
        self._starting = False  # a request is being set up (awaits before it rings)
        self._completing = False  # complete() is moving the target over
        self._put_through = False  # the consulting party left while the target rang

    @property
    def idle(self) -> bool:
        return self.state is ThreeWayState.IDLE and not self._starting

    @property
    def mixing(self) -> bool:
        return self.state in (
            ThreeWayState.JOINED,
            ThreeWayState.CONSULTING,
            ThreeWayState.CALLER_GONE,
        )

    @property
    def consulting_rings(self) -> bool:
        """A consultation's target rings (the caller on hold)."""
        return self.consult and self.state is ThreeWayState.RINGING

    def _set_state(self, state: ThreeWayState) -> None:
        self.line.log(logging.INFO, "three-way %s -> %s", self.state.name, state.name)
        self.state = state

    def _note(self, outcome: str, member: str, detail: str) -> None:
        self.line.note_step(outcome, member, detail, subject=SUBJECT)

    # --- ringing ------------------------------------------------------------------

    async def start(
        self, target: str, *, by: str, caller_id: str | None, consult: bool = False
    ) -> tuple[int, str] | None:
        """Ring ``target`` for a three-way conference (``consult``: a consultation,
        the caller on hold); the SIP status and reason why not, or None. The caller
        of this checked that the call may be joined."""
        line = self.line
        host = line.host
        # Taken before the first await: a second request (a double click, a supervisor
        # asked at the same moment) finds the call busy.
        self._starting = True
        try:
            relay = await host.open_relay(f"{line.call_id}/third")
            offer = node_offer(relay, SdpOriginator(host.media_address))
            rung = await ring_target(line, target, offer, caller_id)
        finally:
            self._starting = False
        if isinstance(rung, tuple):
            await relay.stop()
            status, reason = rung
            self._note("refused", target, f"added by {by}: {status} {reason}")
            return rung
        if not line.connected:  # the call ended while the target was looked up
            for leg in rung.legs:
                leg.cancel()
            await relay.stop()
            return 481, "Call Ended"
        self.target, self.by, self.legs, self._relay = rung.target, by, rung.legs, relay
        self.deadline = asyncio.get_running_loop().time() + THREEWAY_RING_S
        self.consult, self._put_through = consult, False
        self._set_state(ThreeWayState.RINGING)
        if consult:
            line.hold_caller()
            line.note_step("consulting", rung.target, f"attended transfer by {by}")
        else:
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
        if not self.consult:
            self._note("unanswered", self.target, f"added by {self.by}: {why}")
            return
        self.line.note_step("cancelled", self.target, f"the consulted party: {why}")
        if self._put_through:  # nobody is left for the caller
            await self.line.end_connected(HangupBy.CALLEE, answerer_gone=True)
        else:
            self.line.stop_media()  # off hold, back with the answering party

    async def _answered(self, leg: SipUacLeg, response: SipResponse) -> None:
        line = self.line
        layer = line.host.layer
        leg.take_answer(layer, response, self.legs)
        try:
            chosen = negotiate(SessionDescription.parse(response.body))
        except SdpError as exc:
            line.log(logging.WARNING, "three-way target answered unusable SDP: %s", exc)
            await send_bye(layer, leg.dialog, leg.flow)
            if self.consult:
                await self._unanswered(f"unusable SDP: {exc}"[:120])
                return
            await self._release()
            self._note("failed", self.target, f"unusable SDP: {exc}"[:120])
            return
        call_relay, relay = line.relay, self._relay
        assert call_relay is not None
        assert relay is not None
        relay.set_remote(Leg.A, *chosen.endpoint)
        talking = line.talking_codec()
        answerer = Party("answerer", talking, call_relay.sender(Leg.B))
        third = Party("target", Codec.from_name(chosen.codec.name), relay.sender(Leg.A))
        conference = Conference(line.host.scheduler, name=f"{line.call_id}/three-way")
        self._parties = {"answerer": answerer, "target": third}
        if not self.consult:  # a consultation leaves the caller on hold, out of the mix
            caller = Party("caller", talking, call_relay.sender(Leg.A))
            self._parties["caller"] = caller
            call_relay.serve(Leg.A, caller.on_rtp)
        for party in self._parties.values():
            conference.add(party)
        call_relay.serve(Leg.B, answerer.on_rtp)
        relay.serve(Leg.A, third.on_rtp)
        conference.start()
        self._conference = conference
        self.party, self.legs, self.deadline = leg, [], None
        person = line.person_of(leg.extension)
        if not person.startswith("+"):
            line.host.agent_talking(person, line.call_id)
        if not self.consult:
            self._set_state(ThreeWayState.JOINED)
            self._note("joined", person, f"added by {self.by}")
            return
        self._set_state(ThreeWayState.CONSULTING)
        if self._put_through:
            await self._transferred("the consulting party had hung up")

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
        consulting = self.state is ThreeWayState.CONSULTING
        await self._release()
        if consulting:
            line.note_step("cancelled", person, "the consulted party hung up")
            line.stop_media()  # off hold, back with the answering party
            return
        self._note("left", person, "the added party hung up")
        if caller_gone:  # the answering party was alone with them
            await line.end_connected(HangupBy.CALLER)

    # --- a consultation's end, asked through the API --------------------------------

    async def complete(self) -> tuple[int, str] | None:
        """Put the caller through to the consulted target; the answering party is hung up."""
        if self.state is ThreeWayState.RINGING and self.consult:
            return 409, "Consulted Party Not Answered Yet"
        if self.state is not ThreeWayState.CONSULTING or self._completing:
            return 481, "No Consultation Going On"
        # Answered at once: the BYE and the target's move wait on the phones.
        self._completing = True
        self.line.spawn(self._complete())
        return None

    async def _complete(self) -> None:
        old = self.line.winner
        if old is not None:
            self.line.spawn(send_bye(self.line.host.layer, old.dialog, old.flow))
        await self._transferred(f"completed by {self.by}")

    async def cancel(self) -> tuple[int, str] | None:
        """End the consultation: the target goes, the caller is back with the answering party."""
        if (
            self._completing
            or not self.consult
            or self.state
            not in (
                ThreeWayState.RINGING,
                ThreeWayState.CONSULTING,
            )
        ):
            return 481, "No Consultation Going On"
        target, party = self._person(), self.party
        for leg in self.legs:
            leg.cancel()
        await self._release()
        if party is not None:
            self.line.spawn(send_bye(self.line.host.layer, party.dialog, party.flow))
        self.line.note_step("cancelled", target, f"cancelled by {self.by}")
        self.line.stop_media()
        return None

    async def _transferred(self, why: str) -> None:
        """The consulted target takes the answering party's place; the caller off hold."""
        self.line.stop_media()
        await self._answerer_left("transferred", why)

    async def party_left(self, side: Side) -> None:
        """The caller (``Side.CALLER``) or the answering party hung up (their BYE was
        answered); the other two go on."""
        line = self.line
        if self.state is ThreeWayState.CONSULTING:
            if self._completing:
                return  # complete() is moving the target over already
            if side is Side.CALLEE:  # the consulting party hangs up: that completes it
                self._completing = True
                await self._transferred("the consulting party hung up")
            else:
                self._set_state(ThreeWayState.CALLER_GONE)
                line.note_step("cancelled", self._person(), "the caller hung up on hold")
            return
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

    def transferor_left(self) -> None:
        """The consulting party hung up while the target rings: put it through when it
        answers (the caller stays on hold meanwhile)."""
        self._put_through = True
        self.line.note_step("put-through", self.target, "the consulting party hung up")

    async def _answerer_left(
        self, outcome: str = "answerer-left", detail: str = "the caller and the added party go on"
    ) -> None:
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
        if outcome == "transferred":
            line.note_step(outcome, person, detail)
        else:
            self._note(outcome, person, detail)

    async def stop(self) -> None:
        """The call ends: the target's phone stops ringing, or is hung up."""
        if self.state is ThreeWayState.IDLE:
            return
        if self.state is ThreeWayState.RINGING:
            self._note("abandoned", self.target, "the call ended while it rang")
        if self.state is ThreeWayState.CONSULTING:
            self.line.stop_media()
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
        self._completing = False
        self._set_state(ThreeWayState.IDLE)
