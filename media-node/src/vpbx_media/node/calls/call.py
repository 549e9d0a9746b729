"""One call through the tenant node: a B2BUA that routes by the routing engine's actions.

The caller's leg (A) is a UAS dialog; every device the router rings is a UAC leg
(B). Media of every call is anchored in the node's relay; while the node itself
serves the caller (IVR, queue, voicemail) their RTP goes to ``CallerMedia``.

One task drives the call: it feeds the router what the legs, the caller and the
clock report, and carries out the actions the router answers with, in order.
Races (a CANCEL crossing a 200, two devices answering at once, an answer
crossing a ring timeout) are decided in this one place. What the call learns
goes into its ``CallFacts``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import logging
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Any

import redis.asyncio as redis

from vpbx_common import speech
from vpbx_common.cdr import Direction, EndReason, HangupBy, RouteStep, bounded_route, now_ms
from vpbx_common.events import CallEventType
from vpbx_common.manifests import RecordingPolicy
from vpbx_common.nodeconfig import Prompt, Target
from vpbx_common.storage import recording_key, voicemail_key

from ...media.dtmf import DTMF_PLAIN, DTMF_RELAY, DtmfError, parse_info_body
from ...media.g711 import Codec
from ...media.recorder import Channel, Recording, RecordingKind, RecordingMeta
from ...overload import retry_after
from ...rtp.ports import PortsExhaustedError
from ...rtp.relay import Leg, MediaRelay, RelayStats
from ...sdp import (
    TELEPHONE_EVENT,
    Negotiation,
    NotAcceptableError,
    SdpError,
    SdpOriginator,
    SessionDescription,
    media_endpoint,
    mirrored_directions,
    negotiate,
    rewrite_for_relay,
)
from ...sip.dialog import Dialog
from ...sip.message import SipRequest, SipResponse, make_response
from ...sip.transaction import ServerTransaction
from ...sip.transport import Flow, TransportKind
from ...webrtc.gateway import GatewayError
from ..legs.originator import OriginatorLeg
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
from ..legs.trunk import OutboundIdentity, TrunkUacLeg
from ..legs.webrtc import browser_session, device_leg
from ..outbound import OutboundCall, OutboundRefusal
from ..queues import QueueFullError
from ..routing import (
    Action,
    Answer,
    AskQueueStatus,
    BackToQueue,
    BookCallback,
    CallbackBooked,
    CallContext,
    CallerHungUp,
    CallRouter,
    CollectDigits,
    Connect,
    Digit,
    Done,
    Hangup,
    JoinConference,
    JoinQueue,
    LeaveQueue,
    LookUpCaller,
    MemberAnswered,
    MemberFailed,
    MemberFailure,
    Play,
    PromptFinished,
    QueueLeft,
    QueueOffer,
    QueueStatus,
    RecordVoicemail,
    RememberLastMember,
    RequestDecision,
    Ring,
    RouteResult,
    StopPlayback,
    StopRinging,
    TimerFired,
    VoicemailFinished,
)
from ..routing import Event as RouterEvent
from ..routing.actions import Sound, SpokenPhrase
from .facts import CallFacts
from .host import CallHost
from .media import CallerMedia
from .monitor import Monitoring, MonitorMode
from .room import RoomLine, RoomVisit
from .threeway import ThreeWay
from .transfer import Transfers, member_failure
from .voicemail import VoicemailEnd, VoicemailTaker

logger = logging.getLogger(__name__)


# A parked call rings whoever parked it this many times before the caller is let go.
MAX_PARK_RECALLS = 3


class CallState(Enum):
    ROUTING = "routing"  # the router is at work; the caller may be served by the node
    CONNECTED = "connected"  # bridged to the person who answered
    CONFERENCE = "conference"  # in a conference room (or on the way in: room.py)
    ENDED = "ended"


# What the call's task consumes besides the legs' events.
@dataclass(frozen=True, slots=True)
class _CallerCancelled:
    pass


@dataclass(frozen=True, slots=True)
class _InDialog:
    side: Side
    request: SipRequest
    transaction: ServerTransaction


@dataclass(frozen=True, slots=True)
class _QueueOffer:
    """The queue dispatcher picked an agent for this caller."""

    extension: str


@dataclass(frozen=True, slots=True)
class _ForRouter:
    """Something the router must hear (a digit, a prompt's end, a decision's reply)."""

    event: RouterEvent


@dataclass(frozen=True, slots=True)
class _HandedOver:
    """Another call took this call's answering party (an attended transfer): end here."""

    to_call: str


@dataclass(frozen=True, slots=True)
class _TakeCall:
    """A phone takes this call: a pickup while it rings, or a retrieval from park."""

    request: SipRequest
    transaction: ServerTransaction
    person: str  # the extension taking it
    how: str  # "pickup" or "retrieve"


@dataclass(frozen=True, slots=True)
class _MediaLost:
    """A browser's media transport failed (ICE or DTLS, or its gateway worker died)."""

    reason: str


_Event = (
    LegEvent
    | _CallerCancelled
    | _InDialog
    | _QueueOffer
    | _ForRouter
    | _HandedOver
    | _TakeCall
    | _MediaLost
)


class Call:
    def __init__(
        self,
        host: CallHost,
        caller: SipUasLeg | OriginatorLeg,
        facts: CallFacts,
        start_target: Target,
        *,
        outbound: OutboundCall | None = None,
        relay: MediaRelay | None = None,
        caller_origin: SdpOriginator | None = None,
        first_steps: list[RouteStep] | None = None,
    ) -> None:
        self.host = host
        self.outbound = outbound  # a call out: the number, caller ID and time allowed
        self.caller = caller
        self.facts = facts
        self.start_target = start_target
        self.call_id = caller.call_id
        self.state = CallState.ROUTING
        self.legs: list[SipUacLeg] = []
        self.winner: SipUacLeg | None = None
        # A call the node places itself comes with the relay its first offer named.
        self.relay: MediaRelay | None = relay
        # The relay's counters at the end of the call (for the node's metrics).
        self.media_stats: RelayStats | None = None
        self.originated = isinstance(caller, OriginatorLeg)
        if isinstance(caller, OriginatorLeg):
            caller.on_alerting = self._ringback
        self.media: CallerMedia | None = None
        self.router: CallRouter | None = None
        self.caller_origin = caller_origin or SdpOriginator(host.media_address)
        # What happened before routing (a click-to-call's devices), first on the route.
        self._first_steps = first_steps or []
        self.callee_origin = SdpOriginator(host.media_address)
        self.events: asyncio.Queue[_Event] = asyncio.Queue()
        self._offer: SessionDescription | None = None
        self._negotiation: Negotiation | None = None
        self._fork_sdp = b""
        self._ringing: dict[str, list[SipUacLeg]] = {}  # extension -> its legs still offered
        self._answered: dict[str, SipUacLeg] = {}  # extension -> its first device to answer
        self._answers: dict[str, bytes] = {}  # leg Call-ID -> the SDP of its 200 OK
        self._caller_answered = False  # by the node (IVR, queue) or by a person
        self._queued: str | None = None  # the group whose queue the caller waits in
        self._callback_booked = False  # the caller's place became a queue callback
        self._queue_answered = False  # the wait ended by an answer (Connect follows)
        self._voicemail: VoicemailTaker | None = None
        self._recording: Recording | None = None  # of the connected conversation
        self._routing_started = 0.0  # loop time
        self._later_steps: list[RouteStep] = []  # after routing: transfers
        self._held_by_callee = False  # the answering party holds: the caller hears music
        self.parked_slot: str | None = None  # parked: the slot a phone dials to take it back
        self._parked_by: str | None = None  # the extension that parked it (rung on recall)
        self._recall_at: float | None = None  # loop time of the next park recall
        self._recalls = 0
        # Places counted against the tenant's outbound caps: the call itself when it is a
        # call out (admitted before it started), and each leg out it adds.
        self._admitted: list[str] = [self.call_id] if outbound is not None else []
        self._tasks: set[asyncio.Task[None]] = set()
        # The connected phase's rooms: each sees the call through a narrow Protocol.
        self.transfers = Transfers(self)
        self.monitoring = Monitoring(self)
        self.threeway = ThreeWay(self)

    @property
    def transaction(self) -> ServerTransaction | None:
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

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- entry points from the node -------------------------------------

    def media_lost(self, reason: str) -> None:
        """A browser leg's media failed (the WebRTC gateway says so): end the call."""
        self.events.put_nowait(_MediaLost(reason))

    def on_caller_cancel(self) -> None:
        self.events.put_nowait(_CallerCancelled())

    def on_in_dialog(self, side: Side, request: SipRequest, transaction: ServerTransaction) -> None:
        self.events.put_nowait(_InDialog(side, request, transaction))

    def on_callee_2xx_retransmission(self, response: SipResponse) -> None:
        """The callee did not get our ACK: send it again."""
        for leg in self.legs:
            dialog = leg.dialog
            ours = dialog is not None and leg.call_id == response.call_id
            if ours and dialog is not None and response.to.tag == dialog.remote_tag:
                leg.send_ack(self.host.layer, response.cseq.seq)

    # --- the call ------------------------------------------------------

    async def run(self) -> None:
        try:
            await self._run()
        except PortsExhaustedError as exc:
            self._log(logging.WARNING, "refused: %s", exc)
            self._reject(503, EndReason.NO_CAPACITY, "No Media Capacity", retry_after(5))
        except Exception:
            self._log(logging.ERROR, "call failed unexpectedly", exc_info=True)
            self.caller.reject(500)
            self.facts.end_reason = EndReason.FAILED
        finally:
            await self._finish()

    async def _run(self) -> None:
        self.host.journal_begin(self)
        try:
            offer = SessionDescription.parse(self.caller.request.body)
            negotiation = negotiate(offer)
        except SdpError as exc:  # 488 when no codec is common, 400 when malformed
            prefix = "" if isinstance(exc, NotAcceptableError) else "Bad SDP: "
            self._reject(exc.status_code, EndReason.FAILED, f"{prefix}{exc}"[:80])
            return
        self._offer, self._negotiation = offer, negotiation
        if self.relay is None:
            self.relay = await self.host.open_relay(self.call_id)
        self.relay.set_remote(Leg.A, *negotiation.endpoint)
        self._fork_sdp = self._sdp_for(Leg.B, offer, keep_codecs=negotiation.codec_names)
        loop = asyncio.get_running_loop()
        self._routing_started = loop.time()
        self.router = CallRouter(
            CallContext(
                call_id=self.call_id,
                tenant=self.facts.node.tenant,
                number=self.facts.number,
                caller=self.facts.caller,
                city=self.facts.node.city,
                label=self.facts.label,
                direction=self.facts.direction,
            ),
            self.host.config(),
            await self.host.agent_snapshot(),
            self.start_target,
            epoch_offset=time.time() - loop.time(),
            # Without an object store nothing could be kept: users count as having no
            # voicemail, and a voicemail step as unavailable.
            voicemail=self.host.recordings.enabled,
            crm_lookup_ms=self.host.crm_lookup_timeout_ms,
        )
        await self._execute(self.router.start(loop.time()))
        while self.state is CallState.ROUTING:
            deadline = self.router.next_deadline
            timeout = None if deadline is None else max(0.0, deadline - loop.time())
            try:
                event = await asyncio.wait_for(self.events.get(), timeout)
            except TimeoutError:
                await self._feed(TimerFired())
                continue
            await self._on_routing_event(event)
        if self.state is CallState.CONNECTED:
            await self._talk()

    async def _feed(self, event: RouterEvent) -> None:
        assert self.router is not None
        actions = self.router.on_event(event, asyncio.get_running_loop().time())
        if self.router.contact is not self.facts.contact:
            # Before the actions run: the events of the rings that follow (call.offered,
            # the screen pop) carry the contact, and a crash from now on keeps it.
            self.facts.contact = self.router.contact
            self.host.journal_update(self)
        await self._execute(actions)

    # --- carrying out the router's actions ------------------------------------

    async def _execute(self, actions: list[Action]) -> None:
        later: list[RouterEvent] = []  # what the router must hear once these are done
        for action in actions:
            await self._do(action, later)
        for event in later:
            if self.state is CallState.ROUTING and self.router and not self.router.finished:
                await self._feed(event)

    async def _do(self, action: Action, later: list[RouterEvent]) -> None:
        if isinstance(action, Ring):
            await self._ring(action, later)
        elif isinstance(action, StopRinging):
            for extension in action.extensions:
                for leg in self._ringing.pop(extension, []):
                    leg.cancel()
        elif isinstance(action, Connect):
            await self._connect(action.extension)
        elif isinstance(action, Answer):
            self._answer_caller()
        elif isinstance(action, Play):
            if self.media is not None:
                self._spawn(self.media.play(action.sound, loop=action.loop))
        elif isinstance(action, StopPlayback):
            if self.media is not None:
                self.media.stop_playback()
        elif isinstance(action, CollectDigits):
            if self.media is not None:
                self.media.collecting = True
        elif isinstance(action, RequestDecision):
            self._spawn(self._decide(action))
        elif isinstance(action, LookUpCaller):
            self._spawn(self._look_up(action))
        elif isinstance(action, RememberLastMember):
            self.host.remember_last_member(action.group, action.extension)
        elif isinstance(action, Hangup):
            await self._hang_up(action)
        elif isinstance(action, Done):
            self._done(action.result)
        elif isinstance(action, JoinQueue):
            await self._join_queue(action, later)
        elif isinstance(action, AskQueueStatus):
            self._spawn(self._queue_status(action.group))
        elif isinstance(action, BackToQueue):
            self._spawn(self.host.queues.back(self.call_id, action.group, action.extension))
            if self._queued == action.group:
                # At its place again, nobody ringing for it: the live board shows the wait.
                self._publish_queue(CallEventType.QUEUED, action.group)
        elif isinstance(action, LeaveQueue):
            self._queue_answered = action.reason == "answered"
            if not self._queue_answered:
                self._leave_queue(action.reason)
        elif isinstance(action, BookCallback):
            later.append(await self._book_callback(action))
        elif isinstance(action, RecordVoicemail):
            self._take_voicemail(action)
        elif isinstance(action, JoinConference):
            await self._join_conference(action)

    async def _ring(self, action: Ring, later: list[RouterEvent]) -> None:
        first = not self.facts.ringing
        # Every extension's devices first: call.offered names who is about to ring, and is
        # on the stream before the first INVITE leaves (the CRM's screen pop comes first).
        devices = {
            extension: await self.host.devices(extension)
            for extension in action.extensions
            if not extension.startswith("+")
        }
        offered = tuple(extension for extension, found in devices.items() if found)
        if offered:
            event = dataclasses.replace(self.facts.event(CallEventType.OFFERED), offered=offered)
            await self.host.publish_now(event)
        for extension in action.extensions:
            if extension.startswith("+"):  # a number outside, through the trunks
                leg = await self._fork_trunk(extension)
                if isinstance(leg, TrunkUacLeg):
                    self._ringing[extension] = [leg]
                else:
                    later.append(MemberFailed(extension, MemberFailure.UNAVAILABLE))
                continue
            if not devices[extension]:
                later.append(MemberFailed(extension, MemberFailure.UNAVAILABLE))
                continue
            self._ringing[extension] = [self._fork(device) for device in devices[extension]]
        self.facts.ringing = (*self.facts.ringing, *action.extensions)
        if first:
            self.host.publish(self, CallEventType.RINGING)

    def _fork(self, target: DeviceTarget, sdp: bytes | None = None) -> SipUacLeg:
        leg = device_leg(
            target,
            self.host.webrtc,
            layer=self.host.layer,
            sip_domain=self.host.config().sip_domain,
            node_address=self.host.sip_address,
            contact=self.host.contact_uri,
            caller=Caller(self.facts.caller, self.facts.caller_display, self.facts.label),
            sdp=sdp or self._fork_sdp,
        )
        self.legs.append(leg)
        self.host.register_leg(self, leg.call_id)
        leg.start(self.host.layer, self.events.put_nowait)
        return leg

    async def _fork_trunk(
        self, number: str, sdp: bytes | None = None, caller_id: str | None = None
    ) -> TrunkUacLeg | OutboundRefusal:
        """A leg to ``number`` through the tenant's trunks, or why it may not go.

        A call out was judged by the outbound policy before it started (its callee is
        not judged again); any other leg this call adds (a forward, a user's mobile, a
        transfer, a third party, also on a call out) is judged here, by the same rules
        and caps, so no setting or API request can dial what the tenant may not."""
        config = self.host.config()
        judged = self.outbound is not None and number == self.outbound.number
        if not judged:
            refusal = self.host.outbound.policy_refusal(number, config)
            if refusal is None:
                key = f"{self.call_id}>{number}"
                admission = await self.host.outbound.admit(key, config)
                if isinstance(admission, OutboundRefusal):
                    refusal = admission
                elif self.state is CallState.ENDED:
                    # The call ended while Redis answered (an API request racing the
                    # hang-up): its places were given back already, so give this one too.
                    self.host.release_outbound(key, 0.0)
                    return OutboundRefusal.NO_TRUNK
                else:
                    self._admitted.append(key)
            if refusal is not None:
                self._log(logging.INFO, "%s may not be called out: %s", number, refusal)
                self.note_step("refused", number, f"call out refused: {refusal}")
                self.host.count_refusal(refusal)
                return refusal
        identity = OutboundIdentity(caller_id) if caller_id else self._outbound_identity(number)
        if identity is None or not config.trunks:
            self._log(logging.WARNING, "cannot call %s out: no trunk or no number to show", number)
            return OutboundRefusal.NO_TRUNK if not config.trunks else OutboundRefusal.NO_CALLER_ID
        leg = TrunkUacLeg.to_number(
            number,
            tuple(config.trunks),
            node_address=self.host.sip_address,
            contact=self.host.contact_uri,
            identity=identity,
            sdp=sdp or self._fork_sdp,
            url_policy=self.host.url_policy,
        )
        self.legs.append(leg)
        self.host.register_leg(self, leg.call_id)
        leg.start(self.host.layer, self.events.put_nowait)
        return leg

    def _release_admitted(self) -> None:
        """Give back the places taken out; what talked adds its minutes (a call out, or
        the leg out that was answered)."""
        talking = self.winner.member if isinstance(self.winner, TrunkUacLeg) else None
        answered, ended = self.facts.answer_ms, self.facts.end_ms or now_ms()
        for key in self._admitted:
            talked_here = key == self.call_id or key.endswith(f">{talking}")
            talked = (ended - answered) / 1000 if answered and talked_here else 0.0
            self.host.release_outbound(key, talked)
        self._admitted.clear()

    def _outbound_identity(self, number: str) -> OutboundIdentity | None:
        if self.outbound is not None:
            return OutboundIdentity(self.outbound.caller_id.number, self.outbound.withheld)
        # A call forwarded out: its original caller where the carrier lets us show them,
        # else the tenant number they called (a forward of an internal call: local presence).
        config = self.host.config()
        caller = self.facts.caller
        if caller.startswith("+") and config.trunks and config.trunks[0].passes_caller_id:
            return OutboundIdentity(caller)
        if self.facts.number.startswith("+") and config.number(self.facts.number) is not None:
            return OutboundIdentity(self.facts.number)
        user = config.user(caller)
        chosen = self.host.outbound.caller_id(config, user, number)
        return OutboundIdentity(chosen.number) if chosen is not None else None

    def _answer_caller(self) -> None:
        """The node answers the caller itself (IVR, queue, voicemail) and serves their media."""
        if self._caller_answered:
            return
        assert self._offer is not None
        assert self._negotiation is not None
        self._serve_caller()
        body = self._sdp_for(Leg.A, self._offer, keep_codecs=self._negotiation.codec_names)
        self.caller.answer(self.host.contact_uri, body)
        self._caller_answered = True
        self.facts.sip_status = 200

    def _serve_caller(self) -> CallerMedia:
        """The node serves the caller's media (prompts, music, digits) from now on."""
        assert self._negotiation is not None
        assert self.relay is not None
        if self.media is not None:
            self.media.start()
            return self.media
        self.media = CallerMedia(
            self.relay,
            self._negotiation,
            self.host.scheduler,
            self.host.prompts,
            on_digit=lambda digit: self.events.put_nowait(_ForRouter(Digit(digit))),
            on_prompt_end=lambda: self.events.put_nowait(_ForRouter(PromptFinished())),
        )
        self.media.start()
        return self.media

    async def _join_conference(self, action: JoinConference) -> None:
        """The caller visits a conference room (room.py) until one side hangs up."""
        assert self.relay is not None
        assert self._offer is not None
        assert self._negotiation is not None
        sdp = self._sdp_for(Leg.A, self._offer, keep_codecs=self._negotiation.codec_names)
        line = RoomLine(self, self.host, self.relay, sdp, self._serve_caller, self._routing_started)
        room = self.host.config().conference_room(action.room) or action.room
        visit = RoomVisit(line, room, answered=self._caller_answered)
        self._set_state(CallState.CONFERENCE)
        loop = asyncio.get_running_loop()
        try:
            await visit.start()
            while not visit.ended:
                deadline = visit.deadline
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                try:
                    event = await asyncio.wait_for(self.events.get(), timeout)
                except TimeoutError:
                    visit.on_timer()
                    continue
                if isinstance(event, _InDialog) and event.side is Side.CALLER:
                    await visit.on_request(event.request, event.transaction)
                elif isinstance(event, _InDialog):  # a leg rung before: it is long gone
                    event.transaction.respond(make_response(event.request, 481))
                elif isinstance(event, _CallerCancelled):
                    visit.on_cancel()
                elif isinstance(event, _ForRouter) and isinstance(event.event, Digit):
                    visit.on_digit(event.event.digit)
                elif isinstance(event, _ForRouter) and isinstance(event.event, PromptFinished):
                    visit.on_prompt_finished()
        finally:
            await visit.close()
            self._later_steps += visit.route
            self._set_state(CallState.ENDED)

    def _take_voicemail(self, action: RecordVoicemail) -> None:
        assert self.media is not None
        config = self.host.config()
        owner = config.user(action.box) if action.box else None
        greeting: Prompt | Sound | SpokenPhrase = action.greeting
        if owner is not None and owner.settings.voicemail_greeting is not None:
            greeting = owner.settings.voicemail_greeting
        elif greeting is Sound.VOICEMAIL_GREETING:
            greeting = SpokenPhrase(config.language, speech.VOICEMAIL_GREETING)
        started = dt.datetime.now(dt.UTC)
        event = dataclasses.replace(
            self.facts.event(CallEventType.VOICEMAIL_NEW),
            box=action.box or "",
            box_user_id=(owner.id or "") if owner is not None else "",
        )
        meta = RecordingMeta(
            kind=RecordingKind.VOICEMAIL,
            tenant=self.facts.node.tenant,
            call_id=self.call_id,
            key=voicemail_key(self.facts.node.tenant, action.box or "", self.call_id, started),
            started_ms=int(started.timestamp() * 1000),
            codec=self.media.codec,
            channels=(Channel.CALLER,),
            extra={"event": event.to_json()},
        )
        self._voicemail = VoicemailTaker(
            self.media,
            self.host.recordings,
            meta,
            (greeting,),
            action.max_s,
            on_finished=lambda kept: self.events.put_nowait(_ForRouter(VoicemailFinished(kept))),
        )
        self.media.collecting = True
        self._spawn(self._voicemail.run())

    def _should_record(self, extension: str) -> bool:
        """The most specific setting wins: the people on the call, the number, the tenant."""
        if not self.host.recordings.enabled:
            return False
        config = self.host.config()
        people = (extension, self.facts.caller) if self._internal else (extension,)
        for person in people:
            user = config.user(person)
            if user is not None and user.settings.record is not None:
                return user.settings.record
        number = None if self._internal else config.number(self.facts.number)
        if number is not None and number.record is not None:
            return number.record
        # on-demand (an agent starting a recording mid-call) is not running yet
        return config.recording_policy is RecordingPolicy.ALL

    def _start_recording(self, extension: str) -> None:
        """Record the conversation: the caller on the left, whoever answered on the right."""
        assert self.relay is not None
        assert self._negotiation is not None
        started = dt.datetime.now(dt.UTC)
        key = recording_key(self.facts.node.tenant, self.call_id, started)
        self.facts.recording = key
        meta = RecordingMeta(
            kind=RecordingKind.CALL,
            tenant=self.facts.node.tenant,
            call_id=self.call_id,
            key=key,
            started_ms=int(started.timestamp() * 1000),
            codec=Codec.from_name(self._negotiation.codec.name),
            channels=(Channel.CALLER, Channel.ANSWERER),
            extra={"event": self.facts.event(CallEventType.RECORDING_READY).to_json()},
        )
        try:
            recording = self.host.recordings.begin(meta)
        except OSError as exc:
            # The call matters more than its recording: talk on, say so loudly.
            self._log(logging.ERROR, "recording not started (%s); the call goes on", exc)
            self.facts.recording = ""
            return
        self._recording = recording
        self.relay.tap(Leg.A, recording.writer(Channel.CALLER).feed)
        self.relay.tap(Leg.B, recording.writer(Channel.ANSWERER).feed)
        self._log(logging.INFO, "recording to %s", key)

    def _stop_recording(self) -> None:
        recording, self._recording = self._recording, None
        if recording is None:
            return
        if self.relay is not None:
            self.relay.tap(Leg.A, None)
            self.relay.tap(Leg.B, None)
        try:
            self.host.recordings.finish(recording)
        except OSError as exc:
            self._log(logging.ERROR, "recording not finished (%s)", exc)

    async def _join_queue(self, action: JoinQueue, later: list[RouterEvent]) -> None:
        try:
            position = await self.host.queues.join(
                self.call_id,
                action.group,
                on_offer=lambda extension: self.events.put_nowait(_QueueOffer(extension)),
                on_left=self._taken_out_of_queue,
                internal_caller=self.facts.caller if self._internal else None,
                max_length=action.max_length,
            )
        except (QueueFullError, redis.RedisError) as exc:
            later.append(QueueLeft(str(exc)))
            return
        self._queued = action.group
        self._log(logging.INFO, "queued in %s at position %d", action.group, position)
        self._publish_queue(CallEventType.QUEUED, action.group, position=position)

    def _taken_out_of_queue(self, reason: str) -> None:
        """The dispatcher ended the wait (the group is gone, the node stops): no
        ``LeaveQueue`` follows from the router, so the wait's end is told here."""
        group, self._queued = self._queued, None
        if group is not None:
            self._publish_queue(CallEventType.DEQUEUED, group, left=reason)
        self.events.put_nowait(_ForRouter(QueueLeft(reason)))

    def _publish_queue(
        self, kind: CallEventType, group: str, *, position: int = 0, left: str = ""
    ) -> None:
        """call.queued / call.dequeued: only a call that waits in a queue publishes them
        (one XADD each, off the call's path like every event but call.offered)."""
        event = self.facts.event(kind)
        self.host.publish_event(
            dataclasses.replace(event, queue=group, position=position, queue_left=left)
        )

    async def _book_callback(self, action: BookCallback) -> CallbackBooked:
        """The caller's place becomes a callback (node/callbacks.py); the call may end."""
        booked = await self.host.callbacks.book(
            self.facts, action.group, action.attempts, action.retry_s
        )
        if isinstance(booked, str):
            self._log(logging.WARNING, "callback not booked: %s", booked)
            return CallbackBooked(False, booked)
        if self._queued is not None:
            self._publish_queue(CallEventType.DEQUEUED, self._queued, left="callback")
        self._queued = None  # the place is the callback's: the call's end leaves it be
        self._callback_booked = True
        return CallbackBooked(True, f"callback {booked.id}, place {booked.position or '?'}")

    async def _queue_status(self, group: str) -> None:
        """The caller's place and expected wait, for the router's announcement."""
        try:
            position = await self.host.queues.position(self.call_id, group)
            wait = None
            if position is not None:
                wait = await self.host.queues.estimate_wait_s(group, position)
        except redis.RedisError as exc:
            # Said as unknown: the router skips this announcement and tries the next.
            self._log(logging.WARNING, "queue status of %s unavailable: %s", group, exc)
            position, wait = None, None
        self.events.put_nowait(_ForRouter(QueueStatus(position, wait)))

    @property
    def _internal(self) -> bool:
        return self.facts.direction is Direction.INTERNAL

    def _leave_queue(self, reason: str) -> None:
        group, self._queued = self._queued, None
        if group is not None:
            self._spawn(self.host.queues.leave(self.call_id, group))
            self._publish_queue(CallEventType.DEQUEUED, group, left=reason)

    async def _decide(self, action: RequestDecision) -> None:
        event = await self.host.decide(action.url, action.body, action.timeout_ms / 1000)
        self.events.put_nowait(_ForRouter(event))

    async def _look_up(self, action: LookUpCaller) -> None:
        event = await self.host.look_up_caller(self.call_id, action.phone)
        self.events.put_nowait(_ForRouter(event))

    async def _hang_up(self, action: Hangup) -> None:
        self.facts.end_reason = action.end_reason
        if self.facts.end_reason is EndReason.COMPLETED and self.facts.answer_ms is None:
            # Served by the node only (an IVR without a way on): nobody took the call.
            self.facts.end_reason = EndReason.UNAVAILABLE
        self._cancel_forks()
        if self.caller.is_final:
            self._stop_media()
            self.facts.hangup_by = HangupBy.SYSTEM
            self.facts.sip_status = self._carrier_answer() or self.facts.sip_status
            await send_bye(self.host.layer, self.caller.dialog, None)
            self._set_state(CallState.ENDED)
        else:
            status = action.status
            carrier = self._carrier_answer()
            if carrier is not None:  # a call out: the caller hears what the callee's side said
                status = carrier
            self._reject(status, self.facts.end_reason, action.detail[:80] or None)

    def person_of(self, member: str) -> str:
        """Who answered: a number outside that is a user's mobile or forward counts as
        that user (one rung on this call first); any other member is itself."""
        if not member.startswith("+"):
            return member
        owners = [
            user.extension
            for user in self.host.config().users
            if member in (user.mobile, user.settings.forward_all_to)
        ]
        rung = [owner for owner in owners if owner in self.facts.ringing]
        return (rung or owners or [member])[0]

    def _carrier_answer(self) -> int | None:
        """The final failure of a call out's trunk leg (404 no such number, 486 busy...)."""
        if self.outbound is None:
            return None
        for leg in self.legs:
            status = leg.final_status
            if isinstance(leg, TrunkUacLeg) and status is not None and 400 <= status < 700:
                return 480 if status in (401, 407, 487) else status
        return None

    def _done(self, result: RouteResult) -> None:
        if result is RouteResult.CALLER_LEFT:
            self._cancel_forks()
            self.facts.hangup_by = HangupBy.CALLER
            if not self.caller.is_final:
                self._reject(487, EndReason.CANCELLED)
            else:
                # Hanging up during the confirmation leaves the callback booked all the same.
                booked = self._callback_booked
                self.facts.end_reason = EndReason.CALLBACK if booked else EndReason.CANCELLED
                self._set_state(CallState.ENDED)
        elif result is RouteResult.HUNG_UP and self.state is CallState.ROUTING:
            self._set_state(CallState.ENDED)

    def _reject(
        self, status: int, reason: EndReason, phrase: str | None = None, retry: str = ""
    ) -> None:
        self.facts.sip_status = status
        self.facts.end_reason = reason
        self.caller.reject(status, phrase, retry)
        self._set_state(CallState.ENDED)

    def _cancel_forks(self, keep: SipUacLeg | None = None) -> None:
        for leg in self.legs:
            if leg is not keep:
                leg.cancel()
        self._ringing.clear()

    def _capture_route(self) -> None:
        """The route so far into the call's facts (the CDR, and the journal after a crash)."""
        if self.router is not None:
            steps = [*self._first_steps]
            steps += [RouteStep.from_json(entry.as_dict()) for entry in self.router.route]
            for leg in self.legs:
                if isinstance(leg, TrunkUacLeg):
                    steps += leg.route_steps(self._routing_started)
            steps += self._later_steps
            self.facts.route = bounded_route(steps)

    def _stop_media(self) -> None:
        if self.media is not None:
            self.media.stop()

    # --- what the legs, the caller and the clock report --------------------------

    async def _on_routing_event(self, event: _Event) -> None:
        if isinstance(event, Provisional):
            if self._early_media(event):
                return
            if event.response.status in (180, 183) and not event.leg.ringing:
                event.leg.ringing = True
                if self.caller.state.value == "new" and not self._caller_answered:
                    self.caller.ring()
        elif isinstance(event, Answered):
            await self._on_leg_answered(event.leg, event.response)
        elif isinstance(event, Failed):
            self._on_leg_failed(event.leg, event.status)
            await self._report_failures()
        elif isinstance(event, _CallerCancelled):
            if not self._caller_answered:
                await self._feed(CallerHungUp())
        elif isinstance(event, _QueueOffer):
            # The router judges the agent by its snapshot: the one from the call's start
            # would refuse everyone who was busy then.
            assert self.router is not None
            self.router.update_agents(await self.host.agent_snapshot())
            await self._feed(QueueOffer(event.extension))
        elif isinstance(event, _ForRouter):
            if isinstance(event.event, Digit) and self._voicemail is not None:
                self._voicemail.digit(event.event.digit)
            else:
                await self._feed(event.event)
        elif isinstance(event, _InDialog):
            await self._on_caller_request_while_routing(event)
        elif isinstance(event, _TakeCall):
            await self._take_call(event)
        # _HandedOver only comes to a connected call.

    def _early_media(self, event: Provisional) -> bool:
        """A carrier's 183 with SDP on a call out: the caller hears it (ringback, "the
        number is not in service") through the relay. True when it was taken so."""
        response, leg = event.response, event.leg
        if not (isinstance(leg, TrunkUacLeg) and response.status == 183 and response.body):
            return False
        if self.outbound is None:
            return False
        if not self.originated and (self._caller_answered or self.caller.is_final):
            return False
        assert self.relay is not None
        try:
            early = SessionDescription.parse(response.body)
            endpoint = media_endpoint(early)
            body = self._sdp_for(Leg.A, early)
        except SdpError as exc:
            self._log(logging.WARNING, "unusable early-media SDP from the carrier: %s", exc)
            return False
        self._stop_media()  # our own ringback gives way to the carrier's
        self.relay.set_remote(Leg.B, *endpoint)
        leg.ringing = True
        self.caller.progress(self.host.contact_uri, body)
        return True

    def _ringback(self) -> None:
        """The person who placed the call hears ringing while the callee's phone rings."""
        self._answer_caller()
        if self.media is not None:
            self._spawn(self.media.play(Sound.RINGBACK, loop=True))

    async def _on_leg_answered(self, leg: SipUacLeg, response: SipResponse) -> None:
        leg.final_status = response.status
        leg.dialog = Dialog.as_uac(leg.request, response)
        leg.send_ack(self.host.layer, response.cseq.seq)
        self._answers[leg.call_id] = response.body
        extension = leg.extension
        if leg not in self._ringing.get(extension, ()) or extension in self._answered:
            # Its ringing was stopped, or another device of the same person was first.
            await send_bye(self.host.layer, leg.dialog, None)
            return
        self._answered[extension] = leg
        await self._feed(MemberAnswered(extension))
        if self.winner is not leg and self.state is not CallState.ENDED:
            # The router did not connect it (it had moved on): hang it up.
            await send_bye(self.host.layer, leg.dialog, None)

    def _on_leg_failed(self, leg: SipUacLeg, status: int) -> None:
        leg.final_status = status

    async def _report_failures(self) -> None:
        for extension, legs in list(self._ringing.items()):
            if legs and all(leg.final_status is not None for leg in legs):
                if extension in self._answered:
                    continue
                del self._ringing[extension]
                statuses = [leg.final_status or 480 for leg in legs]
                await self._feed(MemberFailed(extension, member_failure(statuses)))

    async def _on_caller_request_while_routing(self, event: _InDialog) -> None:
        request, transaction = event.request, event.transaction
        dialog = self.caller.dialog if event.side is Side.CALLER else None
        if dialog is None or not dialog.accept_remote_request(request):
            transaction.respond(make_response(request, 500 if dialog else 481))
            return
        if request.method == "BYE":
            transaction.respond(make_response(request, 200))
            self.facts.end_ms = now_ms()
            kept = True
            if self._voicemail is not None:  # hanging up is how most messages end
                self._voicemail.end(VoicemailEnd.CALLER_LEFT)
                kept = self._voicemail.kept
            await self._feed(CallerHungUp(voicemail_kept=kept))
            if self.state is CallState.ROUTING:  # the router had finished already
                self._done(RouteResult.CALLER_LEFT)
        elif request.method == "INFO" and (answer := self._info_digit(request)) is not None:
            transaction.respond(make_response(request, *answer))
        elif request.method == "OPTIONS":
            transaction.respond(make_response(request, 200, extra=[("Allow", ALLOW_IN_CALL)]))
        elif request.method == "INVITE":
            transaction.respond(make_response(request, 488, "Not While Routing"))
        else:
            transaction.respond(make_response(request, 405, extra=[("Allow", ALLOW_IN_CALL)]))

    def _info_digit(self, request: SipRequest) -> tuple[int, str | None] | None:
        """The answer to a DTMF INFO (application/dtmf-relay or application/dtmf) while
        digits are wanted: 200 with the key taken, 400 when its body is not a key. None:
        not such an INFO (the caller gets 405 like any request the node does not take)."""
        if self.media is None or not self.media.collecting:
            return None
        content_type = request.headers.get("Content-Type") or ""
        if content_type.split(";", 1)[0].strip().lower() not in (DTMF_RELAY, DTMF_PLAIN):
            return None
        try:
            digit = parse_info_body(content_type, request.body)
        except DtmfError as exc:
            return 400, f"Bad DTMF: {exc}"[:80]
        self.media.digit(digit)
        return 200, None

    # --- connected --------------------------------------------------------------

    async def _connect(self, extension: str) -> None:
        leg = self._answered.get(extension)
        if leg is None or leg.dialog is None:
            return
        self.winner = leg
        self._cancel_forks(keep=leg)
        assert self.relay is not None
        try:
            answer = SessionDescription.parse(self._answers.get(leg.call_id, b""))
            endpoint = media_endpoint(answer)
            caller_answer = self._sdp_for(Leg.A, answer)
        except SdpError as exc:
            self._log(logging.WARNING, "callee answered with unusable SDP: %s", exc)
            await send_bye(self.host.layer, leg.dialog, None)
            if self.caller.is_final:
                self._stop_media()
                await send_bye(self.host.layer, self.caller.dialog, None)
                self.facts.end_reason = EndReason.FAILED
                self._set_state(CallState.ENDED)
            else:
                self._reject(488, EndReason.FAILED)
            return
        self._stop_media()
        self.relay.set_remote(Leg.B, *endpoint)
        group = None
        if self._queued is not None and self._queue_answered:
            group, self._queued = self._queued, None
            # Before call.answered: the board sees the wait end, then the talk begin.
            self._publish_queue(CallEventType.DEQUEUED, group, left="answered")
        self._now_connected(self.person_of(extension), caller_answer)
        if group is not None:
            self._spawn(self.host.queues.connected(self.call_id, group, extension))

    def _now_connected(self, person: str, caller_answer: bytes) -> None:
        """The caller talks to ``person`` from now on (media already points at them)."""
        self.facts.answer_ms = now_ms()
        self.facts.answered_by = person
        self.facts.sip_status = 200
        if not self._caller_answered:
            self.caller.answer(self.host.contact_uri, caller_answer)
            self._caller_answered = True
        if self._should_record(person):
            self._start_recording(person)
        self._set_state(CallState.CONNECTED)
        self.host.publish(self, CallEventType.ANSWERED)
        self._capture_route()
        self.host.journal_answer(self)
        self.host.agent_talking(person, self.call_id)

    # --- pickup and park (features.py) -------------------------------------------------

    def on_take(
        self, request: SipRequest, transaction: ServerTransaction, person: str, how: str
    ) -> None:
        self.events.put_nowait(_TakeCall(request, transaction, person, how))

    def people_on_it(self) -> set[str]:
        """The tenant's people on this call now (extensions), whose talking state the
        node keeps fresh: who answered, who has it now after a transfer, a third party,
        who placed it (click-to-call, a queue callback)."""
        people = {self.facts.answered_by}
        if self.winner is not None:
            people.add(self.person_of(self.winner.extension))
        if self.threeway.party is not None:
            people.add(self.person_of(self.threeway.party.extension))
        if isinstance(self.caller, OriginatorLeg):
            people.add(self.facts.caller)
        return {person for person in people if person and not person.startswith("+")}

    def talking_with(self, extension: str) -> bool:
        """``extension`` is on this call now (answered it, or placed it)."""
        if self.state is not CallState.CONNECTED:
            return False
        return extension in (self.facts.answered_by, self.facts.caller)

    def ringing_for(self, extension: str) -> bool:
        """The call rings ``extension``'s phones now (it may be picked up for them)."""
        return self.state is CallState.ROUTING and bool(self._ringing.get(extension))

    @property
    def ringing_extensions(self) -> list[str]:
        return [ext for ext, legs in self._ringing.items() if legs and not ext.startswith("+")]

    async def _take_call(self, take: _TakeCall) -> None:
        request, transaction = take.request, take.transaction
        if take.how in MonitorMode.__members__.values():
            await self.monitoring.take(request, transaction, take.person, MonitorMode(take.how))
            return
        parked = take.how == "retrieve" and self.parked_slot is not None
        ringing = take.how == "pickup" and self.state is CallState.ROUTING and self._ringing
        if not (parked or ringing):
            transaction.respond(make_response(request, 480, "Call Already Taken"))
            return
        assert self.relay is not None
        try:
            offer = SessionDescription.parse(request.body)
            endpoint = media_endpoint(offer)
            body = self._sdp_for(Leg.B, offer, keep_codecs=self._active_codecs())
            caller_answer = self._sdp_for(Leg.A, offer)
        except SdpError as exc:
            transaction.respond(make_response(request, 488, str(exc)[:80]))
            return
        leg = SipUacLeg.answering(request, transaction, take.person, self.host.contact_uri, body)
        self.legs.append(leg)
        self.host.register_leg(self, leg.call_id)
        self._stop_media()
        self.relay.set_remote(Leg.B, *endpoint)
        self.winner = leg
        if parked:
            self.transfers.stop_recall()
            self.unpark()
            self.note_step("retrieved", take.person, "taken back from park")
            self.host.agent_talking(take.person, self.call_id)
            self._log(logging.INFO, "retrieved from park by %s", take.person)
            return
        self._cancel_forks(keep=leg)
        if self._queued is not None:
            self._leave_queue("picked up")
        self._later_steps.append(
            RouteStep(
                after_s=max(0.0, asyncio.get_running_loop().time() - self._routing_started),
                subject="pickup",
                outcome="answered",
                member=take.person,
                detail="picked up while it rang " + ",".join(sorted(self.ringing_extensions)),
            )
        )
        self._now_connected(take.person, caller_answer)
        self._log(logging.INFO, "picked up by %s", take.person)

    def _active_codecs(self) -> tuple[str, ...]:
        assert self._negotiation is not None
        codec = self._negotiation.codec.name
        if self.winner is not None and (answer := self._answers.get(self.winner.call_id)):
            try:
                codec = negotiate(SessionDescription.parse(answer)).codec.name
            except SdpError as exc:  # the negotiation's choice is as good a guess
                self._log(logging.DEBUG, "the answering party's SDP names no codec: %s", exc)
        return (codec, TELEPHONE_EVENT)

    async def park(self, slot: str, by: str, *, let_go: bool) -> tuple[int, str] | None:
        """The caller waits with music on ``slot`` until a phone dials the slot's code;
        the answering party is let go."""
        taken = self.host.park(self, slot)
        if taken is None:
            return 486, "Park Slot In Use"
        self.parked_slot = taken
        old = self.winner
        # Whose phones a recall rings: the person who had the call (an extension).
        parker = self.person_of(old.extension) if old is not None else by
        self._parked_by = parker if parker.isdigit() else None
        self._recalls = 0
        self._schedule_recall()
        self.winner = None
        if old is not None:
            self.transfers.depart(old)
            self.host.agent_free(self.person_of(old.extension), self.call_id)
            if let_go:
                self._spawn(send_bye(self.host.layer, old.dialog, old.flow))
        self._spawn(self._serve_caller().play(Sound.MUSIC_ON_HOLD, loop=True))
        self.note_step("parked", taken, f"parked by {by}")
        self._log(logging.INFO, "parked on slot %s by %s", taken, by)
        return None

    def _schedule_recall(self) -> None:
        wait = self.host.config().feature_codes.park_recall_s
        self._recall_at = None
        if wait > 0 and self._parked_by is not None and self.parked_slot is not None:
            self._recall_at = asyncio.get_running_loop().time() + wait

    def unpark(self) -> None:
        self.parked_slot = None
        self._recall_at = None
        self.host.unpark(self)

    async def recall_unanswered(self) -> None:
        self._recalls += 1
        if self._recalls < MAX_PARK_RECALLS:
            self._schedule_recall()
            return
        self._recall_at = None
        self._log(logging.INFO, "parked call not taken back after %d recalls", self._recalls)
        await self.end_connected(HangupBy.SYSTEM, answerer_gone=True)

    async def _recall(self) -> None:
        """The park has lasted long enough: ring whoever parked the call."""
        self._recall_at = None
        if self.parked_slot is None or self._parked_by is None:
            return
        if not await self.transfers.recall(self._parked_by):
            await self.recall_unanswered()

    # --- asked by the control API (vpbx_common.commands) ----------------------------

    async def supervise(
        self, mode: MonitorMode, extension: str, devices: list[DeviceTarget], by: str
    ) -> tuple[int, str] | None:
        """Ring a supervisor's ``devices`` to join in ``mode``; the SIP status and reason
        why not, or None."""
        if not self.can_join():
            return 409, "Call Not Connected Or Busy"
        await self.monitoring.ring(mode, extension, devices, by)
        return None

    async def add_party(
        self, target: str, *, by: str, caller_id: str | None = None
    ) -> tuple[int, str] | None:
        """Ring ``target`` for a three-way conference; the SIP status and reason why not,
        or None."""
        if not self.can_join():
            return 409, "Call Not Connected Or Busy"
        return await self.threeway.start(target, by=by, caller_id=caller_id)

    async def consult(
        self, target: str, *, by: str, caller_id: str | None = None
    ) -> tuple[int, str] | None:
        """An attended transfer: the caller on hold, ``target`` rung for the answering
        party to talk to first (threeway.py); the SIP status and reason why not, or None."""
        if not self.can_join():
            return 409, "Call Not Connected Or Busy"
        return await self.threeway.start(target, by=by, caller_id=caller_id, consult=True)

    async def end_consultation(self, *, complete: bool) -> tuple[int, str] | None:
        """Put the caller through to the consulted party, or back to the answering one."""
        if complete:
            return await self.threeway.complete()
        return await self.threeway.cancel()

    # --- what the rooms see (transfer.py, monitor.py, threeway.py: their *Line) -------

    @property
    def connected(self) -> bool:
        return self.state is CallState.CONNECTED

    @property
    def joining(self) -> bool:
        return not (self.monitoring.idle and self.threeway.idle)

    def can_join(self) -> bool:
        """Someone may join (a supervisor, a third party): connected, with nothing else
        going on (a transfer, a hold, a mixer or a phone ringing to join)."""
        if self.state is not CallState.CONNECTED or self.winner is None:
            return False
        busy = self.transfers.pending is not None or self._held_by_callee
        return not busy and not self.joining

    def log(self, level: int, message: str, *args: object) -> None:
        self._log(level, message, *args)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._spawn(coroutine)

    def note_step(
        self, outcome: str, member: str, detail: str, *, subject: str = "transfer"
    ) -> None:
        after = max(0.0, asyncio.get_running_loop().time() - self._routing_started)
        self._later_steps.append(
            RouteStep(after_s=after, subject=subject, outcome=outcome, member=member, detail=detail)
        )

    def current_offer(self) -> bytes:
        """The offer to a transfer target: the codec the caller talks in now (the relay
        passes audio through untouched), and telephone-event."""
        assert self._offer is not None
        return self._sdp_for(Leg.B, self._offer, keep_codecs=self._active_codecs())

    def talking_codec(self) -> Codec:
        return Codec.from_name(self._active_codecs()[0])

    def fork(self, target: DeviceTarget, sdp: bytes) -> SipUacLeg:
        return self._fork(target, sdp)

    async def fork_trunk(
        self, number: str, sdp: bytes, caller_id: str | None = None
    ) -> TrunkUacLeg | OutboundRefusal:
        return await self._fork_trunk(number, sdp, caller_id)

    def hold_caller(self) -> None:
        self._spawn(self._serve_caller().play(Sound.MUSIC_ON_HOLD, loop=True))

    def stop_media(self) -> None:
        self._stop_media()

    def take_party(self, leg: SipUacLeg, answer: bytes, *, resumed: bool = False) -> None:
        self._answers[leg.call_id] = answer
        self.winner = leg
        if resumed:
            self._held_by_callee = False

    def adopt(self, leg: SipUacLeg) -> None:
        self.legs.append(leg)
        self.host.register_leg(self, leg.call_id)

    def route_here(self, leg_call_id: str) -> None:
        self.host.register_leg(self, leg_call_id)

    def give_away(self, party: SipUacLeg, to_call: str) -> None:
        if party in self.legs:
            self.legs.remove(party)
        if self.winner is party:
            self.winner = None
        self.events.put_nowait(_HandedOver(to_call))

    async def _talk(self) -> None:
        loop = asyncio.get_running_loop()
        limit = self.outbound.max_talk_s if self.outbound is not None else None
        talk_deadline = None if limit is None else loop.time() + limit
        while self.state is CallState.CONNECTED:
            transfer_deadline = self.transfers.deadline
            joining = (self.monitoring.deadline, self.threeway.deadline, self._recall_at)
            deadlines = [d for d in (talk_deadline, transfer_deadline, *joining) if d]
            timeout = max(0.0, min(deadlines) - loop.time()) if deadlines else None
            try:
                event = await asyncio.wait_for(self.events.get(), timeout)
            except TimeoutError:
                now = loop.time()
                if transfer_deadline is not None and now >= transfer_deadline:
                    await self.transfers.fail(480, "Temporarily Unavailable")
                    continue
                if self._recall_at is not None and now >= self._recall_at:
                    await self._recall()
                    continue
                if talk_deadline is None or now < talk_deadline:
                    await self.monitoring.on_timer(now)
                    await self.threeway.on_timer(now)
                    continue
                self._log(logging.INFO, "the tenant's outbound minutes for today are used up")
                await self.end_connected(HangupBy.SYSTEM)
                return
            if isinstance(event, _InDialog):
                await self._on_in_dialog(event)
            elif isinstance(event, _MediaLost):
                # Nobody can hear anybody: both sides get a BYE, the CDR says the system.
                self._log(logging.WARNING, "a browser's media failed: %s", event.reason)
                await self.end_connected(HangupBy.SYSTEM)
                return
            elif isinstance(event, _TakeCall):
                await self._take_call(event)
            elif isinstance(event, _HandedOver):
                self.note_step("handed-over", "", f"the answering party went to {event.to_call}")
                await self.end_connected(HangupBy.CALLEE)
            elif isinstance(event, Provisional | Answered | Failed) and self.transfers.owns(
                event.leg
            ):
                await self.transfers.on_leg(event)
            elif isinstance(event, Provisional | Answered | Failed) and self.monitoring.owns_leg(
                event.leg
            ):
                await self.monitoring.on_leg(event)
            elif isinstance(event, Provisional | Answered | Failed) and self.threeway.owns_leg(
                event.leg
            ):
                await self.threeway.on_leg(event)
            elif isinstance(event, Answered) and event.leg is not self.winner:
                # A device answered after another was connected: acknowledge and hang up.
                event.leg.final_status = event.response.status
                event.leg.dialog = Dialog.as_uac(event.leg.request, event.response)
                event.leg.send_ack(self.host.layer, event.response.cseq.seq)
                await send_bye(self.host.layer, event.leg.dialog, None)
            # Anything else (a late CANCEL, failures of stopped forks) no longer matters.

    async def _on_in_dialog(self, event: _InDialog) -> None:
        request, transaction = event.request, event.transaction
        if self.monitoring.owns(request):
            await self.monitoring.on_request(request, transaction)
            return
        if self.threeway.owns(request):
            await self.threeway.on_request(request, transaction)
            return
        departed = self.transfers.departed_leg(request.call_id)
        party = departed or self.winner
        if event.side is Side.CALLER:
            dialog = self.caller.dialog
        else:
            dialog = party.dialog if party is not None else None
        if dialog is None or not dialog.accept_remote_request(request):
            transaction.respond(make_response(request, 500 if dialog else 481))
            return
        if departed is not None:  # a party transferred away: only its goodbye matters
            status = 200 if request.method == "BYE" else 481
            transaction.respond(make_response(request, status))
            return
        transferring = self.transfers.pending is not None
        if request.method == "BYE" and transferring and event.side is Side.CALLEE:
            # The transferor hangs up while the target rings (a blind transfer does).
            transaction.respond(make_response(request, 200))
            self.transfers.transferor_left()
        elif (
            request.method == "BYE"
            and self.threeway.consulting_rings
            and (event.side is Side.CALLEE)
        ):
            # The consulting party hangs up while the target rings: put it through.
            transaction.respond(make_response(request, 200))
            self.threeway.transferor_left()
        elif request.method == "BYE" and self.threeway.mixing:
            # One of three hangs up: the other two go on (threeway.py).
            transaction.respond(make_response(request, 200))
            await self.threeway.party_left(event.side)
        elif request.method == "BYE":
            transaction.respond(make_response(request, 200))
            self.transfers.abandon()
            await self.end_connected(
                HangupBy.CALLER if event.side is Side.CALLER else HangupBy.CALLEE
            )
        elif request.method == "REFER":
            await self.transfers.on_refer(event.side, request, transaction)
        elif request.method == "INVITE" and (transferring or not self.threeway.idle):
            transaction.respond(make_response(request, 491))
        elif request.method == "INVITE" and event.side is Side.CALLEE and request.body:
            await self._callee_reinvite(request, transaction)
        elif request.method == "INVITE":
            await self._relay_reinvite(event.side, request, transaction)
        elif request.method == "OPTIONS":
            transaction.respond(make_response(request, 200, extra=[("Allow", ALLOW_IN_CALL)]))
        else:
            # REFER, INFO, UPDATE, MESSAGE...: a 200 would tell the phone that a transfer
            # or a DTMF INFO was acted on when nothing happened (RFC 3261 8.2.1).
            transaction.respond(make_response(request, 405, extra=[("Allow", ALLOW_IN_CALL)]))

    async def end_connected(self, hangup_by: HangupBy, *, answerer_gone: bool = False) -> None:
        """The conversation ends: one side hung up (the other gets a BYE), or the node did.
        ``answerer_gone``: the answering party hung up already (a transferor)."""
        self.facts.end_ms = now_ms()
        self.facts.hangup_by = hangup_by
        self.facts.end_reason = EndReason.COMPLETED
        self._set_state(CallState.ENDED)
        flow = self.winner.flow if self.winner else None
        gone = answerer_gone or self.transfers.transferor_gone
        if hangup_by is not HangupBy.CALLEE and self.winner is not None and not gone:
            await send_bye(self.host.layer, self.winner.dialog, flow)
        if hangup_by is not HangupBy.CALLER:
            await send_bye(self.host.layer, self.caller.dialog, flow)

    async def _callee_reinvite(self, request: SipRequest, transaction: ServerTransaction) -> None:
        """The answering party holds or resumes: the node answers itself and plays the
        caller music on hold, instead of passing the silence on. Other re-INVITEs (a
        codec change) go to the caller as before."""
        try:
            offer = SessionDescription.parse(request.body)
            index = offer.audio_index()
            hold = index is not None and offer.is_on_hold(offer.media[index])
        except SdpError as exc:
            transaction.respond(make_response(request, 488, str(exc)[:80]))
            return
        if not hold and not self._held_by_callee:
            await self._relay_reinvite(Side.CALLEE, request, transaction)
            return
        assert self.relay is not None
        try:
            if not hold:
                self.relay.set_remote(Leg.B, *media_endpoint(offer))
            local = SessionDescription.parse(self._sdp_for(Leg.B, offer))
        except SdpError as exc:
            transaction.respond(make_response(request, 488, str(exc)[:80]))
            return
        body = str(mirrored_directions(local)).encode()
        transaction.respond(
            make_response(
                request,
                200,
                extra=[("Contact", f"<{self.host.contact_uri}>")],
                body=body,
                content_type=SDP,
            )
        )
        if hold and not self._held_by_callee:
            self._held_by_callee = True
            self._spawn(self._serve_caller().play(Sound.MUSIC_ON_HOLD, loop=True))
            self._log(logging.INFO, "on hold by the answering party: music to the caller")
        elif not hold:
            self._held_by_callee = False
            self._stop_media()
            self._log(logging.INFO, "resumed by the answering party")

    async def reinvite(
        self, dialog: Dialog | None, flow: Flow | None, body: bytes
    ) -> SipResponse | None:
        """A re-INVITE with ``body`` on ``dialog`` (ACKed when answered); its final answer.

        A browser's dialog (a transfer's or a three-way call's party) gets the WebRTC
        gateway's offer, and its answer comes back as plain SDP; None when the gateway
        cannot translate either."""
        if dialog is None:
            return None
        gateway = self.host.webrtc
        browser = gateway is not None and gateway.has(dialog.call_id)
        try:
            if browser:
                assert gateway is not None
                body = await gateway.offer_to_browser(dialog.call_id, body, again=True)
            layer = self.host.layer
            hop = dialog.next_hop(flow)
            via = str(layer.via_for(TransportKind.UDP))
            invite = dialog.create_request("INVITE", via, body=body, content_type=SDP)
            final = await layer.send_request(invite, hop).final
            if final.is_success:
                via = str(layer.via_for(TransportKind.UDP))
                ack = dialog.create_request("ACK", via, seq=invite.cseq.seq)
                await layer.send_stateless(ack, hop)
                if browser and final.body:
                    assert gateway is not None
                    final = final.with_body(
                        await gateway.answer_from_browser(dialog.call_id, final.body)
                    )
        except (SdpError, GatewayError) as exc:
            self._log(logging.WARNING, "no WebRTC re-INVITE for %s: %s", dialog.call_id, exc)
            return None
        return final

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
        # A browser on the other side gets the gateway's WebRTC offer (legs/webrtc.py).
        browser = browser_session(self.winner if side is Side.CALLER else self.caller)
        body = b""
        if request.body:
            try:
                offer = SessionDescription.parse(request.body)
                self.relay.set_remote(here, *media_endpoint(offer))
                body = self._sdp_for(there, offer)
                if browser is not None:
                    body = await browser[0].offer_to_browser(browser[1], body, again=True)
            except SdpError as exc:
                transaction.respond(make_response(request, 488, str(exc)[:80]))
                return
            except GatewayError:
                transaction.respond(make_response(request, 503))
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
                    answer_sdp = final.body
                    if browser is not None:
                        answer_sdp = await browser[0].answer_from_browser(browser[1], final.body)
                    answer = SessionDescription.parse(answer_sdp)
                    self.relay.set_remote(there, *media_endpoint(answer))
                    answer_body = self._sdp_for(here, answer)
                except (SdpError, GatewayError) as exc:
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
        await self.monitoring.stop(hang_up=True)
        await self.threeway.stop()
        self._release_admitted()
        self._cancel_forks()
        for leg in self.legs:
            leg.stop()
        if self._voicemail is not None:
            self._voicemail.end(VoicemailEnd.CALLER_LEFT)
            if self._voicemail.kept:  # also when the caller hung up to end the message
                self.facts.end_reason = EndReason.VOICEMAIL
        self._stop_recording()
        for task in list(self._tasks):
            task.cancel()
        if self._queued is not None:  # the caller hung up while waiting
            group, self._queued = self._queued, None
            self.host.forget_queued(self.call_id, group)
            self._publish_queue(CallEventType.DEQUEUED, group, left="caller hung up")
        self._stop_media()
        stats = None
        if self.relay is not None:
            stats = self.media_stats = self.relay.stats()
            await self.relay.stop()
        self.state = CallState.ENDED
        self._capture_route()
        self._log(
            logging.INFO,
            "ended reason=%s status=%s answered_by=%s route=[%s] media=%s",
            self.facts.end_reason,
            self.facts.sip_status,
            self.facts.answered_by or "-",
            "; ".join(str(step) for step in self.facts.route),
            stats,
        )
        if self.facts.answered_by:
            self.host.agent_free(self.facts.answered_by, self.call_id)
        # Whoever talks at the end after a transfer or a three-way, when not the first.
        last = self.person_of(self.winner.extension) if self.winner is not None else None
        if last and last != self.facts.answered_by and not last.startswith("+"):
            self.host.agent_free(last, self.call_id)
        self.host.publish(self, CallEventType.ENDED)
        self.host.call_finished(self)
