"""A caller's visit to a conference room: from the router's ``JoinConference`` to goodbye.

The router only sends the call to a room; a ``RoomVisit`` does the rest, driven by
the call's task (``Call._join_conference`` feeds it what the caller does and wakes
it at ``deadline``):

1. a place in the room (``ConferenceRooms.admit``). None free: the caller hears
   that the room is full (as early media, 183, when nobody answered them yet)
   and gets 486 (a BYE when an IVR answered them before);
2. the room's PIN, if it has one: the node answers, asks for it and collects keys
   (RFC 4733 events, in-band tones or SIP INFO); ``#`` ends the PIN, ``*`` starts
   it over, a pause of ``PIN_TIMEOUT_S`` counts as an attempt. Three wrong
   attempts and the node hangs up;
3. a short join tone, then the caller is a ``Party`` of the room's mixer on the
   call's relay leg A (their RTP into the mix, the mix back to them), until they
   hang up. Leaving gives the place back; the last one out closes the room.

What happened goes into the call's facts: answered when the caller entered the
room, route steps ``conference:<room>`` (``joined``; ``left`` with the time in the
room; ``full``; ``refused``).
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from vpbx_common import speech
from vpbx_common.cdr import EndReason, HangupBy, RouteStep, now_ms
from vpbx_common.events import CallEventType
from vpbx_common.nodeconfig import ConferenceRoomEntry

from ...media.dtmf import DTMF_PLAIN, DTMF_RELAY, DtmfError, parse_info_body
from ...media.mixer import Party
from ...rtp.relay import Leg, MediaRelay
from ...sdp import SdpError, SessionDescription, media_endpoint
from ...sip.message import SipRequest, make_response
from ...sip.transaction import ServerTransaction
from ..conference import Seat
from ..legs.sip import ALLOW_IN_CALL, SDP, send_bye
from ..routing.actions import Sound, SpokenPhrase
from ..routing.trace import Outcome
from .facts import CallFacts
from .host import CallHost
from .media import CallerMedia

if TYPE_CHECKING:
    from .call import Call

logger = logging.getLogger(__name__)

PIN_ATTEMPTS = 3
MAX_PIN_DIGITS = 8
# After the prompt (or the last key) this long without "#": the keys so far are the PIN.
PIN_TIMEOUT_S = 8.0
# A prompt whose end is never reported (a lost event) must not hold the caller for ever.
PROMPT_GUARD_S = 60.0


class PinVerdict(enum.Enum):
    RIGHT = "right"
    WRONG = "wrong"  # another attempt is left
    REFUSED = "refused"  # the last attempt was wrong


class PinEntry:
    """The keys a caller presses for a room's PIN (pure: keys in, verdicts out)."""

    def __init__(self, pin: str, attempts: int = PIN_ATTEMPTS) -> None:
        self._pin = pin
        self._keyed = ""
        self.attempts_left = attempts
        self.wrong = 0

    @property
    def keyed(self) -> int:
        """Keys of the current attempt so far."""
        return len(self._keyed)

    def key(self, digit: str) -> PinVerdict | None:
        """One key: a digit is kept, ``#`` submits, ``*`` starts over; a verdict once the
        PIN is complete (``#``, or as many digits as a PIN may have)."""
        if digit == "#":
            return self.submit()
        if digit == "*":
            self._keyed = ""
            return None
        if digit.isdigit():
            self._keyed += digit
            if len(self._keyed) >= MAX_PIN_DIGITS:
                return self.submit()
        return None

    def submit(self) -> PinVerdict:
        """The keys so far are the attempt (none at all is a wrong one too)."""
        keyed, self._keyed = self._keyed, ""
        if keyed == self._pin:
            return PinVerdict.RIGHT
        self.wrong += 1
        self.attempts_left -= 1
        return PinVerdict.WRONG if self.attempts_left > 0 else PinVerdict.REFUSED


@dataclass(frozen=True, slots=True)
class RoomLine:
    """What the visit works with, from the call it belongs to."""

    call: Call
    host: CallHost
    relay: MediaRelay
    answer_sdp: bytes  # our SDP for the caller: the relay's leg A, the negotiated codecs
    serve: Callable[[], CallerMedia]  # the node serves the caller's media (prompts, keys)
    origin: float  # the loop time route steps count from (routing's start)


class VisitState(enum.Enum):
    NEW = "new"
    REFUSING = "refusing"  # "the room is full" plays; then 486 (or BYE)
    ASKING = "asking"  # the PIN is asked for and keyed in
    REJECTING = "rejecting"  # "wrong PIN" plays after the last attempt; then BYE
    JOINING = "joining"  # the join tone plays
    IN_ROOM = "in-room"
    ENDED = "ended"


class RoomVisit:
    def __init__(self, line: RoomLine, room: ConferenceRoomEntry | str, *, answered: bool) -> None:
        """``room``: the room, or the extension of one the config no longer has."""
        self.line = line
        self.room = room if isinstance(room, ConferenceRoomEntry) else None
        self.extension = room.extension if isinstance(room, ConferenceRoomEntry) else room
        self.answered = answered  # the caller's INVITE was answered (by an IVR, or by us)
        self.state = VisitState.NEW
        self.route: list[RouteStep] = []
        self.seat: Seat | None = None
        self.party: Party | None = None
        self._media: CallerMedia | None = None
        self._pin = PinEntry(self.room.pin) if self.room and self.room.pin else None
        self._deadline: float | None = None
        self._playing: Sound | str | None = None  # what plays now (a Sound or a phrase)
        self._joined_at = 0.0
        self._bye_due = False  # the node ends an answered call: BYE on close()
        self._tasks: set[asyncio.Task[None]] = set()  # prompts being fetched and started
        self._loop = asyncio.get_running_loop()

    @property
    def subject(self) -> str:
        return f"conference:{self.extension}"

    @property
    def facts(self) -> CallFacts:
        return self.line.call.facts

    @property
    def ended(self) -> bool:
        return self.state is VisitState.ENDED

    @property
    def deadline(self) -> float | None:
        """When ``on_timer`` is due (loop time); None: only events move the visit on."""
        return self._deadline

    def _log(self, level: int, message: str, *args: object) -> None:
        logger.log(
            level,
            "call=%s tenant=%s conference %s: " + message,
            self.facts.call_id,
            self.facts.node.tenant,
            self.extension,
            *args,
        )

    def _set_state(self, state: VisitState) -> None:
        self._log(logging.INFO, "visit %s -> %s", self.state.value, state.value)
        self.state = state

    def _note(self, outcome: Outcome, detail: str = "") -> None:
        after = max(0.0, self._loop.time() - self.line.origin)
        self.route.append(RouteStep(after, self.subject, str(outcome), None, detail))

    # --- the visit -----------------------------------------------------------------

    async def start(self) -> None:
        if self.room is None:  # deleted since the router sent the call here
            self._note(Outcome.FELL_THROUGH, "no such conference room")
            self.facts.hangup_by = HangupBy.SYSTEM
            if self.answered:
                self.facts.end_reason = EndReason.UNAVAILABLE
                self._bye_due = True
                self._end()
            else:
                self._reject(480, EndReason.UNAVAILABLE)
            return
        seat = self.line.host.rooms.admit(self.room, self.facts.call_id)
        if seat is None:
            self._refuse_full(self.room)
            return
        self.seat = seat
        if self._pin is None:
            self._answer()
            self._play(Sound.CONFERENCE_JOIN, VisitState.JOINING)
            return
        self._answer()
        self._media_now().collecting = True
        self._ask()

    def on_digit(self, digit: str) -> None:
        if self.state is not VisitState.ASKING or self._pin is None:
            return
        media = self._media_now()
        if self._playing is not None:
            media.stop_playback()  # barge-in: the caller keys the PIN during the prompt
            self._playing = None
        verdict = self._pin.key(digit)
        if verdict is None:
            self._deadline = self._loop.time() + PIN_TIMEOUT_S
        else:
            self._judge(verdict)

    def on_prompt_finished(self) -> None:
        playing, self._playing = self._playing, None
        if playing is None:
            return
        match self.state:
            case VisitState.REFUSING:
                self._end_full()
            case VisitState.REJECTING:
                self._end_refused()
            case VisitState.JOINING:
                self._join()
            case VisitState.ASKING if playing == speech.CONFERENCE_WRONG_PIN:
                self._ask()
            case VisitState.ASKING:
                self._deadline = self._loop.time() + PIN_TIMEOUT_S
            case _:
                pass

    def on_timer(self) -> None:
        """The deadline passed: a PIN not finished in time, or a prompt whose end got lost."""
        if self._deadline is None or self._loop.time() < self._deadline:
            return
        self._deadline = None
        if self.state is VisitState.ASKING and self._playing is None and self._pin is not None:
            self._judge(self._pin.submit())
            return
        self._log(logging.WARNING, "the end of %s was not heard", self._playing)
        self.on_prompt_finished()

    def on_cancel(self) -> None:
        """The caller gave up before anybody answered (while hearing that it is full)."""
        if self.answered or self.state is VisitState.ENDED:
            return
        self.facts.hangup_by = HangupBy.CALLER
        self._reject(487, EndReason.CANCELLED)

    async def on_request(self, request: SipRequest, transaction: ServerTransaction) -> None:
        """A request of the caller inside their dialog."""
        dialog = self.line.call.caller.dialog
        if dialog is None or not dialog.accept_remote_request(request):
            transaction.respond(make_response(request, 500 if dialog else 481))
            return
        if request.method == "BYE":
            transaction.respond(make_response(request, 200))
            self._caller_left()
        elif request.method == "INFO" and (answer := self._info_digit(request)) is not None:
            transaction.respond(make_response(request, *answer))
        elif request.method == "INVITE":
            self._reinvite(request, transaction)
        elif request.method == "OPTIONS":
            transaction.respond(make_response(request, 200, extra=[("Allow", ALLOW_IN_CALL)]))
        else:
            transaction.respond(make_response(request, 405, extra=[("Allow", ALLOW_IN_CALL)]))

    async def close(self) -> None:
        """After the visit (or when the call's task is cancelled): out of the room, a BYE
        if the node ended an answered call."""
        for task in list(self._tasks):
            task.cancel()
        self._leave()
        if self._bye_due:
            self._bye_due = False
            await send_bye(self.line.host.layer, self.line.call.caller.dialog, None)

    # --- steps -----------------------------------------------------------------------

    def _media_now(self) -> CallerMedia:
        if self._media is None:
            self._media = self.line.serve()
        return self._media

    def _answer(self) -> None:
        if not self.answered:
            self.line.call.caller.answer(self.line.host.contact_uri, self.line.answer_sdp)
            self.answered = True
        self.facts.sip_status = 200
        self._media_now()

    def _play(self, sound: Sound | str, state: VisitState) -> None:
        """Play a platform sound, or one of the spoken phrases, and move to ``state``."""
        if self.state is not state:
            self._set_state(state)
        media = self._media_now()
        self._playing = sound
        language = self.line.host.config().language
        played = sound if isinstance(sound, Sound) else SpokenPhrase(language, sound)
        self._deadline = self._loop.time() + PROMPT_GUARD_S
        task = self._loop.create_task(media.play(played, loop=False))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _ask(self) -> None:
        self._play(speech.CONFERENCE_PIN, VisitState.ASKING)

    def _judge(self, verdict: PinVerdict) -> None:
        assert self._pin is not None
        self._deadline = None
        if verdict is PinVerdict.RIGHT:
            self._log(logging.INFO, "PIN right")
            self._media_now().collecting = False
            self._play(Sound.CONFERENCE_JOIN, VisitState.JOINING)
        elif verdict is PinVerdict.WRONG:
            self._log(logging.INFO, "wrong PIN, %d attempts left", self._pin.attempts_left)
            self._play(speech.CONFERENCE_WRONG_PIN, VisitState.ASKING)
        else:
            self._log(logging.INFO, "wrong PIN %d times: goodbye", self._pin.wrong)
            self._media_now().collecting = False
            self._play(speech.CONFERENCE_WRONG_PIN, VisitState.REJECTING)

    def _refuse_full(self, room: ConferenceRoomEntry) -> None:
        self._log(logging.INFO, "full (%d places)", room.max_participants)
        self._note(Outcome.FULL, f"all {room.max_participants} places taken")
        if not self.answered:
            # The caller hears why (early media), then gets 486.
            self.line.call.caller.progress(self.line.host.contact_uri, self.line.answer_sdp)
        self._play(speech.CONFERENCE_FULL, VisitState.REFUSING)

    def _end_full(self) -> None:
        facts = self.facts
        facts.hangup_by = HangupBy.SYSTEM
        if self.answered:
            facts.end_reason = EndReason.BUSY
            self._bye_due = True
            self._end()
        else:
            self._reject(486, EndReason.BUSY, "Conference Full")

    def _end_refused(self) -> None:
        assert self._pin is not None
        self._note(Outcome.REFUSED, f"{self._pin.wrong} wrong PINs")
        facts = self.facts
        facts.hangup_by = HangupBy.SYSTEM
        facts.end_reason = EndReason.REJECTED
        self._bye_due = True
        self._end()

    def _join(self) -> None:
        seat = self.seat
        assert seat is not None
        media = self._media_now()
        codec = media.codec
        media.stop()  # the relay stops handing the caller's RTP to the prompt machinery
        facts = self.facts
        party = Party(facts.call_id, codec, self.line.relay.sender(Leg.A))
        self.line.relay.serve(Leg.A, party.on_rtp)
        seat.join(party)
        self.party = party
        self._deadline = None
        self._joined_at = self._loop.time()
        facts.answer_ms = now_ms()
        facts.sip_status = 200
        facts.end_reason = EndReason.COMPLETED
        self._set_state(VisitState.IN_ROOM)
        self._note(Outcome.JOINED, f"{seat.participants} in the room")
        self.line.host.publish(self.line.call, CallEventType.ANSWERED)
        self.line.host.journal_answer(self.line.call)

    def _caller_left(self) -> None:
        facts = self.facts
        facts.hangup_by = HangupBy.CALLER
        facts.end_ms = now_ms()
        if self.state is not VisitState.IN_ROOM:
            facts.end_reason = EndReason.CANCELLED  # before they were in the room
        self._end()

    def _reject(self, status: int, reason: EndReason, phrase: str | None = None) -> None:
        facts = self.facts
        facts.sip_status = status
        facts.end_reason = reason
        self.line.call.caller.reject(status, phrase)
        self._end()

    def _end(self) -> None:
        self._leave()
        self._deadline = None
        if self.state is not VisitState.ENDED:
            self._set_state(VisitState.ENDED)

    def _leave(self) -> None:
        if self.party is not None:
            self.line.relay.serve(Leg.A, None)
            seconds = self._loop.time() - self._joined_at
            self._note(Outcome.LEFT, f"{seconds:.1f} s in the room")
            self._log(logging.INFO, "left after %.1f s", seconds)
            self.party = None
        if self.seat is not None:
            self.seat.leave()
            self.seat = None
        if self._media is not None:
            self._media.stop()

    # --- requests inside the dialog -----------------------------------------------------

    def _info_digit(self, request: SipRequest) -> tuple[int, str | None] | None:
        """A DTMF INFO while the PIN is keyed: 200 (the key taken) or 400; None: not one."""
        if self.state is not VisitState.ASKING:
            return None
        content_type = request.headers.get("Content-Type") or ""
        if content_type.split(";", 1)[0].strip().lower() not in (DTMF_RELAY, DTMF_PLAIN):
            return None
        try:
            digit = parse_info_body(content_type, request.body)
        except DtmfError as exc:
            return 400, f"Bad DTMF: {exc}"[:80]
        self.on_digit(digit)
        return 200, None

    def _reinvite(self, request: SipRequest, transaction: ServerTransaction) -> None:
        """A re-INVITE (a session refresh, hold, a new address): the relay follows the new
        address; the answer is our SDP as before (the room's codec does not change)."""
        if request.body:
            try:
                endpoint = media_endpoint(SessionDescription.parse(request.body))
            except SdpError as exc:
                transaction.respond(make_response(request, 488, str(exc)[:80]))
                return
            self.line.relay.set_remote(Leg.A, *endpoint)
        transaction.respond(
            make_response(
                request,
                200,
                extra=[("Contact", f"<{self.line.host.contact_uri}>")],
                body=self.line.answer_sdp,
                content_type=SDP,
            )
        )
