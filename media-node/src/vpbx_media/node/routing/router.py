"""The routing engine of one call: (call, tenant config, live agent state, events) -> actions.

Pure: no sockets, no awaits, no clock. Time comes in as ``now`` (seconds on the
executor's monotonic clock) with every call; wall time (schedules, wrap-up,
the decision body) is ``now + epoch_offset``.

How the executor drives it::

    router = CallRouter(call, config, agents, entry_target, epoch_offset=time.time() - loop.time())
    actions = router.start(loop.time())
    while not router.finished:
        run(actions)
        deadline = router.next_deadline            # None: wait for an event only
        event = await next_event(timeout=deadline - loop.time() if deadline else None)
        actions = router.on_event(event or TimerFired(), loop.time())
    run(actions)                                   # ends with Done

Timers are the router's own: ``next_deadline`` says when it next wants to be
woken, and any ``on_event`` call runs the timers due by ``now`` after the event
itself. An event the executor already holds is handled before a timer that
came due while it waited: a person who picked up wins over a ring timeout
nobody acted on yet.

Every answer's actions are run in order. The router's last action is ``Done``;
``route`` is the call's route for the CDR.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from vpbx_common.cdr import EndReason
from vpbx_common.crm import CrmContact
from vpbx_common.nodeconfig import (
    ConferenceTarget,
    ExternalTarget,
    GroupEntry,
    GroupTarget,
    HangupReason,
    HangupTarget,
    IvrMenuEntry,
    IvrTarget,
    NodeConfig,
    RoutePlanEntry,
    RoutePlanTarget,
    Target,
    UnroutedTarget,
    UserEntry,
    UserTarget,
    VoicemailTarget,
    describe,
)
from vpbx_common.nodeconfig.steps import (
    ConferenceStep,
    CrmLookupStep,
    ForwardStep,
    GroupStep,
    HangupStep,
    HttpDecisionStep,
    IvrStep,
    QueueStep,
    RoutePlanStep,
    ScheduleStep,
    UserStep,
    VoicemailStep,
)

from .actions import Action, Answer, Connect, Done, Hangup, JoinConference, RouteResult, Sound
from .agents import AgentSnapshot
from .context import CallContext
from .crm import (
    CategoryTarget,
    CrmLookupSession,
    LookupState,
    ManagerChain,
    NextStep,
    caller_to_look_up,
    describe_route,
    route_by_contact,
    step_to,
)
from .decision import (
    DecisionSession,
    DecisionState,
    FallbackDecision,
    RingDecision,
    TargetDecision,
)
from .env import RouterEnv
from .events import (
    CallbackBooked,
    CallerHungUp,
    CrmFailed,
    CrmReply,
    DecisionFailed,
    DecisionReply,
    Digit,
    Event,
    MemberAnswered,
    MemberFailed,
    PromptFinished,
    QueueLeft,
    QueueOffer,
    QueueStatus,
    TimerFired,
    VoicemailFinished,
)
from .greeting import GreetingSession, GreetingState
from .hangup import hangup_for
from .ivr import IvrSession, IvrState
from .plan import PlanCursor
from .queue import QueueSession, QueueState
from .ringing import (
    DEFAULT_ESCALATION_S,
    RingMode,
    RingResult,
    RingSession,
    RingSpec,
    RingState,
    group_spec,
)
from .schedule import schedule_state
from .trace import Outcome, Output, RouteEntry
from .voicemail import VoicemailSession, VoicemailState

DEFAULT_USER_RING_S = 30  # a user rings this long unless a step says otherwise
# Target changes per call (IVR choices, overflows, decisions, plan jumps): a
# configuration loop (a group overflowing to itself, an IVR timing out into
# itself) ends instead of running for ever.
MAX_HOPS = 50
# Route plans entered per call (plan A going on in plan B going on in plan A...).
MAX_PLAN_JUMPS = 8
# Timers run per answer before the router gives up on itself: each timer moves its
# session on, so reaching this is a bug, not a busy call.
_MAX_TIMER_ROUNDS = 10_000

# A number outside rings this long at most (the carrier or the caller usually ends it first).
EXTERNAL_RING_S = 120
# A forward step rings the number this long before the plan goes on.
FORWARD_RING_S = 30
# A user's mobile rings at least this long once its turn came (follow-me).
MOBILE_RING_S = 25
# Route details of a crm-lookup step that could not ask the CRM.
CRM_NOT_CONFIGURED = "CRM not configured"


class RouterState(enum.Enum):
    IDLE = "idle"  # not started
    GREETING = "greeting"  # the number's greeting plays before routing
    RINGING = "ringing"  # people ring (a group, a user, a decision's list)
    IVR = "ivr"
    QUEUED = "queued"
    DECIDING = "deciding"  # waiting for the tenant's HTTP decision
    LOOKING_UP = "looking-up"  # waiting for the CRM's answer about the caller
    VOICEMAIL = "voicemail"
    CONNECTED = "connected"  # done: bridged to a person
    CONFERENCE = "conference"  # done: handed to a conference room
    ENDED = "ended"  # done: hung up, or the caller left


_FINISHED = (RouterState.CONNECTED, RouterState.CONFERENCE, RouterState.ENDED)


# What follows a ringing that nobody answered.
@dataclass(frozen=True, slots=True)
class _ToOverflow:
    """A group target: its overflow; none: 480."""

    group: GroupEntry


@dataclass(frozen=True, slots=True)
class _ToNextStep:
    """A group or user step: the plan's next step; none left: the group's overflow, or 480."""

    group: GroupEntry | None


@dataclass(frozen=True, slots=True)
class _ToUserFallback:
    """A user target: their voicemail when they have it, else a status saying why."""

    user: UserEntry


@dataclass(frozen=True, slots=True)
class _ToTarget:
    """A decision's ringing: the step's fallback."""

    target: Target
    why: str


@dataclass(frozen=True, slots=True)
class _ToStage:
    """A CRM escalation stage: the next one (the manager's groups, everyone)."""

    stages: tuple[RingSpec, ...]


_AfterRinging = _ToOverflow | _ToNextStep | _ToUserFallback | _ToTarget | _ToStage


# Where the router goes next (run by ``_drive``, so long chains never nest calls).
@dataclass(frozen=True, slots=True)
class _GoTo:
    target: Target
    via: str


@dataclass(frozen=True, slots=True)
class _ContinuePlan:
    pass


_Next = _GoTo | _ContinuePlan

_Session = (
    RingSession
    | IvrSession
    | QueueSession
    | DecisionSession
    | CrmLookupSession
    | VoicemailSession
    | GreetingSession
)

_RING_END_REASON = {
    RingResult.NO_ANSWER: EndReason.NO_ANSWER,
    RingResult.BUSY: EndReason.BUSY,
    RingResult.DECLINED: EndReason.REJECTED,
    RingResult.UNAVAILABLE: EndReason.UNAVAILABLE,
    RingResult.ANSWERED: EndReason.COMPLETED,
}
# A call to one person tells the caller why they did not get them.
_USER_STATUS = {RingResult.BUSY: 486, RingResult.DECLINED: 603}


class CallRouter:
    def __init__(
        self,
        call: CallContext,
        config: NodeConfig,
        agents: AgentSnapshot,
        start_target: Target,
        *,
        epoch_offset: float = 0.0,
        voicemail: bool = True,
        crm_lookup_ms: int | None = None,
    ) -> None:
        """``voicemail``: whether the executor can take voice messages; without it users
        are treated as having no voicemail and voicemail targets as unavailable.
        ``crm_lookup_ms``: how long a crm-lookup step waits for the CRM's answer; None:
        the executor has no CRM to ask (the step goes on with the next one)."""
        self._out = Output(0.0)
        self._voicemail_runs = voicemail
        self._crm_lookup_ms = crm_lookup_ms
        # The caller as the CRM last described them on this call (None: not found yet).
        self.contact: CrmContact | None = None
        self._env = RouterEnv(call, config, agents, epoch_offset, self._out)
        self._start_target = start_target
        self.state = RouterState.IDLE
        self.result: RouteResult | None = None
        self.connected_to: str | None = None  # the extension bridged, once connected
        self.hangup: Hangup | None = None  # how the router ended the call, if it did
        self._session: _Session | None = None
        self._after_ringing: _AfterRinging | None = None
        self._next: _Next | None = None
        self._cursor: PlanCursor | None = None
        self._answered = False
        self._hops = 0
        self._plan_jumps = 0

    # --- the executor's side -------------------------------------------------

    @property
    def finished(self) -> bool:
        return self.state in _FINISHED

    @property
    def next_deadline(self) -> float | None:
        """When to send ``TimerFired`` (None: nothing to wait for but events)."""
        if self.finished or self._session is None:
            return None
        return self._session.deadline

    @property
    def route(self) -> tuple[RouteEntry, ...]:
        return tuple(self._out.route)

    @property
    def answered(self) -> bool:
        """Whether the caller was answered (by an IVR, a queue, voicemail or a person)."""
        return self._answered or self.state is RouterState.CONNECTED

    def update_agents(self, agents: AgentSnapshot) -> None:
        """A fresher snapshot: used from the next decision on."""
        self._env.agents = agents

    def start(self, now: float) -> list[Action]:
        if self.state is not RouterState.IDLE:
            raise RuntimeError("router already started")
        self._out.origin = now
        number = self._env.config.number(self._env.call.number)
        if number is not None and number.greeting is not None:
            self._answer()
            greeting = GreetingSession(number.greeting, "greeting", self._env)
            self._session = greeting
            self._set_state(RouterState.GREETING)
            greeting.start(now)
        else:
            self._next = _GoTo(self._start_target, "entry")
        self._drive(now)
        return self._out.drain()

    def on_event(self, event: Event, now: float) -> list[Action]:
        if self.state is RouterState.IDLE:
            raise RuntimeError("router not started")
        if self.finished:
            return []
        self._handle(event, now)
        self._drive(now)
        self._fire_due(now)
        return self._out.drain()

    # --- events and timers ---------------------------------------------------

    def _handle(self, event: Event, now: float) -> None:
        session = self._session
        match event:
            case CallerHungUp(voicemail_kept=kept):
                self._caller_left(now, kept)
                return
            case MemberAnswered(extension=extension):
                won = False
                if isinstance(session, RingSession | QueueSession):
                    won = session.on_answered(extension, now)
                if not won:
                    # The executor ends that leg: only Connect bridges.
                    self._out.note(
                        now, "answer", Outcome.NO_ANSWER, extension, "answered after its ringing"
                    )
            case MemberFailed(extension=extension, status=status):
                if isinstance(session, RingSession | QueueSession):
                    session.on_failed(extension, status, now)
            case Digit(digit=digit):
                if isinstance(session, IvrSession | QueueSession):
                    session.on_digit(digit, now)
            case PromptFinished():
                if isinstance(session, IvrSession | QueueSession | GreetingSession):
                    session.on_prompt_finished(now)
            case DecisionReply(status=status, body=body):
                if isinstance(session, DecisionSession):
                    session.on_reply(status, body, now)
            case DecisionFailed(reason=reason):
                if isinstance(session, DecisionSession):
                    session.on_failed(reason, now)
            case CrmReply(contact=contact):
                if isinstance(session, CrmLookupSession):
                    session.on_reply(contact, now)
            case CrmFailed(reason=reason):
                if isinstance(session, CrmLookupSession):
                    session.on_failed(reason, now)
            case QueueOffer(extension=extension):
                if isinstance(session, QueueSession):
                    session.on_offer(extension, now)
            case QueueLeft(reason=reason):
                if isinstance(session, QueueSession):
                    session.on_left(reason, now)
            case QueueStatus(position=position, expected_wait_s=expected_wait_s):
                if isinstance(session, QueueSession):
                    session.on_status(position, expected_wait_s, now)
            case CallbackBooked(booked=booked, detail=detail):
                if isinstance(session, QueueSession):
                    session.on_callback_booked(booked, detail, now)
            case VoicemailFinished(kept=kept):
                if isinstance(session, VoicemailSession):
                    session.on_finished(now, kept)
            case TimerFired():
                pass
        if session is not None:
            self._settle(session, now)

    def _fire_due(self, now: float) -> None:
        for _ in range(_MAX_TIMER_ROUNDS):
            session = self._session
            if session is None or self.finished:
                return
            deadline = session.deadline
            if deadline is None or deadline > now:
                return
            session.on_timer(now)
            self._settle(session, now)
            self._drive(now)
        raise RuntimeError("routing timers make no progress")

    def _settle(self, session: _Session, now: float) -> None:
        """Act on a session that has come to an end (connected, or where to go next)."""
        if session is not self._session:
            return
        match session:
            case RingSession():
                if session.state is RingState.ANSWERED and session.answered_by is not None:
                    self._connect(session.answered_by, now)
                elif session.state is RingState.ENDED:
                    self._session = None
                    self._after_ring(session, now)
            case QueueSession():
                if session.state is QueueState.CONNECTED and session.answered_by is not None:
                    self._connect(session.answered_by, now)
                elif session.state is QueueState.LEFT:
                    self._session = None
                    self._next = _ContinuePlan()
                elif session.state is QueueState.CALLBACK:
                    hangup = Hangup(200, EndReason.CALLBACK, "callback booked", True)
                    self._finish_with(hangup, now, session.subject)
            case IvrSession():
                if session.state is IvrState.ENDED and session.choice is not None:
                    self._session = None
                    choice = session.choice
                    if choice.target is None:
                        hangup = hangup_for(HangupReason.NORMAL, choice.why, answered=True)
                        self._finish_with(hangup, now)
                    else:
                        self._next = _GoTo(choice.target, f"{session.subject}: {choice.why}")
            case DecisionSession():
                if session.state is DecisionState.DECIDED:
                    self._session = None
                    self._after_decision(session, now)
            case CrmLookupSession():
                if session.done:
                    self._session = None
                    self._after_lookup(session, now)
            case VoicemailSession():
                if session.state is VoicemailState.ENDED:
                    self._session = None
                    # A message left is the call's outcome for the CDR: voicemail, not completed.
                    if session.kept:
                        hangup = Hangup(200, EndReason.VOICEMAIL, "voicemail recorded", True)
                    else:
                        hangup = Hangup(200, EndReason.UNAVAILABLE, "no voice message", True)
                    self._finish_with(hangup, now)
            case GreetingSession():
                if session.state is GreetingState.ENDED:
                    self._session = None
                    self._next = _GoTo(self._start_target, "entry after the greeting")

    def _drive(self, now: float) -> None:
        """Run the queued moves; each either waits (a session), ends, or queues the next."""
        while self._next is not None and not self.finished:
            move, self._next = self._next, None
            match move:
                case _GoTo(target=target, via=via):
                    self._go(target, via, now)
                case _ContinuePlan():
                    self._run_steps(now)

    # --- targets ---------------------------------------------------------------

    def _go(self, target: Target, via: str, now: float) -> None:
        subject = describe(target)
        self._hops += 1
        if self._hops > MAX_HOPS:
            self._unavailable(now, subject, f"routing loop: more than {MAX_HOPS} hops")
            return
        self._out.note(now, subject, Outcome.ENTERED, detail=via)
        config = self._env.config
        if not isinstance(target, RoutePlanTarget):
            self._cursor = None  # a target is where the call goes: the plan is left behind
        match target:
            case UserTarget(extension=extension):
                user = config.user(extension)
                if user is None:
                    self._unavailable(now, subject, "no such extension")
                else:
                    spec = _user_spec(user, DEFAULT_USER_RING_S, subject)
                    self._ring(spec, _ToUserFallback(user), now)
            case GroupTarget(name=name):
                group = config.group(name)
                if group is None:
                    self._unavailable(now, subject, "no such group")
                else:
                    self._ring(group_spec(group, self._env), _ToOverflow(group), now)
            case IvrTarget(name=name):
                menu = config.ivr_menu(name)
                if menu is None:
                    self._unavailable(now, subject, "no such IVR menu")
                else:
                    self._ivr(menu, subject, now)
            case RoutePlanTarget(name=name):
                plan = config.route_plan(name)
                if plan is None:
                    self._unavailable(now, subject, "no such route plan")
                else:
                    self._enter_plan(plan, now)
            case VoicemailTarget(extension=extension):
                self._voicemail(extension, subject, now)
            case ConferenceTarget(room=room):
                self._conference(room, subject, now)
            case ExternalTarget(number=number):
                spec = _external_spec(number, EXTERNAL_RING_S, subject)
                self._ring(spec, None, now)
            case HangupTarget(reason=reason):
                self._finish_with(
                    hangup_for(reason, subject, answered=self._answered), now, subject
                )
            case UnroutedTarget(missing=missing):
                why = f"{missing} no longer exists" if missing else "no route set"
                self._unavailable(now, subject, why)

    def _ring(self, spec: RingSpec, after: _AfterRinging | None, now: float) -> None:
        session = RingSession(spec, self._env)
        self._session = session
        self._after_ringing = after
        self._set_state(RouterState.RINGING)
        session.start(now)
        if self._answered and session.state is RingState.RINGING:
            # The caller was answered (IVR, queue): SIP ringback no longer reaches them.
            self._env.play(Sound.RINGBACK, loop=True)
        self._settle(session, now)

    def _after_ring(self, session: RingSession, now: float) -> None:
        result = session.result or RingResult.UNAVAILABLE
        subject = session.spec.subject
        match self._after_ringing:
            case _ToOverflow(group=group):
                if group.overflow is None:
                    self._end_unanswered(now, subject, result, "no overflow")
                else:
                    self._next = _GoTo(group.overflow, f"overflow of group:{group.name} ({result})")
            case _ToNextStep(group=group):
                if self._cursor is not None and self._cursor.has_more():
                    self._out.note(
                        now, subject, Outcome.FELL_THROUGH, detail=f"{result}: next step"
                    )
                    self._next = _ContinuePlan()
                elif group is not None and group.overflow is not None:
                    via = f"overflow of group:{group.name} ({result}, last step)"
                    self._next = _GoTo(group.overflow, via)
                else:
                    self._end_unanswered(now, subject, result, "end of route plan")
            case _ToUserFallback(user=user):
                if user.settings.voicemail and self._voicemail_runs:
                    box = VoicemailTarget(extension=user.extension, user_id=user.id)
                    self._next = _GoTo(box, f"user:{user.extension} {result}")
                else:
                    status = _USER_STATUS.get(result, 480)
                    why = f"{subject} {result}, no voicemail"
                    hangup = Hangup(status, _RING_END_REASON[result], why, self._answered)
                    self._finish_with(hangup, now)
            case _ToTarget(target=target, why=why):
                self._next = _GoTo(target, f"{why} ({result})")
            case _ToStage(stages=stages):
                self._out.note(now, subject, Outcome.FELL_THROUGH, detail=f"{result}: next stage")
                self._ring_stages(stages, now)
            case None:
                self._end_unanswered(now, subject, result, "nowhere to go")

    def _after_decision(self, session: DecisionSession, now: float) -> None:
        match session.decision:
            case RingDecision(extensions=extensions, sequential=sequential, ring_timeout_s=ring_s):
                spec = RingSpec(
                    subject=f"{session.subject} ring",
                    members=extensions,
                    mode=RingMode.ONE_AT_A_TIME if sequential else RingMode.ALL,
                    ring_s=float(ring_s),
                )
                after = _ToTarget(session.fallback, f"{session.subject}: fallback")
                self._ring(spec, after, now)
            case TargetDecision(target=target, why=why):
                self._next = _GoTo(target, f"{session.subject}: {why}")
            case FallbackDecision(why=why):
                self._next = _GoTo(session.fallback, f"{session.subject}: fallback ({why})")
            case None:
                self._next = _GoTo(session.fallback, f"{session.subject}: fallback")

    # --- CRM lookups -------------------------------------------------------------------

    def _look_up(self, step: CrmLookupStep, subject: str, now: float) -> bool:
        """Ask the CRM about the caller; False (and the route says why) when it cannot."""
        phone, why = caller_to_look_up(self._env.call)
        if phone is None or self._crm_lookup_ms is None:
            self._out.note(now, subject, Outcome.FELL_THROUGH, detail=why or CRM_NOT_CONFIGURED)
            return False
        self._out.note(now, subject, Outcome.ENTERED)
        session = CrmLookupSession(step, phone, self._crm_lookup_ms, subject, self._env)
        self._session = session
        self._set_state(RouterState.LOOKING_UP)
        session.start(now)
        return True

    def _after_lookup(self, session: CrmLookupSession, now: float) -> None:
        subject = session.subject
        if session.state is LookupState.FAILED:
            detail = f"CRM unavailable: {session.failure}"
            self._out.note(now, subject, Outcome.FELL_THROUGH, detail=detail)
            self._env.log(logging.INFO, "%s: %s", subject, detail)
            self._next = _ContinuePlan()
            return
        contact = session.contact
        if contact is None:
            self._out.note(now, subject, Outcome.FELL_THROUGH, detail="unknown caller")
            self._next = _ContinuePlan()
            return
        self.contact = contact
        route = route_by_contact(session.step, contact, self._env.config)
        match route:
            case NextStep(why=why):
                self._out.note(now, subject, Outcome.FELL_THROUGH, detail=why)
                self._next = _ContinuePlan()
            case CategoryTarget(target=target):
                self._out.note(now, subject, Outcome.DECIDED, detail=describe_route(route))
                if self._cursor is not None:
                    # As if the plan had a step going there: the plan goes on after it.
                    self._cursor.push([step_to(target)], f"{subject} {contact.category}")
                    self._next = _ContinuePlan()
                else:
                    self._next = _GoTo(target, f"{subject}: category {contact.category}")
            case ManagerChain():
                self._out.note(now, subject, Outcome.DECIDED, detail=describe_route(route))
                stages = _escalation(route, session.step)
                if stages:
                    self._ring_stages(stages, now)
                else:
                    why = "every escalation stage has 0 s: next step"
                    self._out.note(now, subject, Outcome.FELL_THROUGH, detail=why)
                    self._next = _ContinuePlan()

    def _ring_stages(self, stages: tuple[RingSpec, ...], now: float) -> None:
        """Ring the first stage; the others follow when nobody answers, then the plan."""
        first, rest = stages[0], stages[1:]
        self._ring(first, _ToStage(rest) if rest else _ToNextStep(None), now)

    def _ivr(self, menu: IvrMenuEntry, subject: str, now: float) -> None:
        self._answer()
        session = IvrSession(menu, subject, self._env)
        self._session = session
        self._set_state(RouterState.IVR)
        session.start(now)

    def _voicemail(self, box: str | None, subject: str, now: float) -> None:
        if not self._voicemail_runs:
            self._unavailable(now, subject, "voicemail is not running on this node yet")
            return
        if box is not None and self._env.config.user(box) is None:
            self._unavailable(now, subject, "no such voice mailbox")
            return
        self._answer()
        session = VoicemailSession(box, subject, self._env)
        self._session = session
        self._set_state(RouterState.VOICEMAIL)
        session.start(now)

    def _conference(self, room: str, subject: str, now: float) -> None:
        """Hand the call to a conference room: the executor takes it from here."""
        if self._env.config.conference_room(room) is None:
            self._unavailable(now, subject, "no such conference room")
            return
        self._session = None
        self._env.stop_playback()
        self._out.act(JoinConference(room))
        self._done(RouteResult.CONFERENCE, RouterState.CONFERENCE)

    # --- route plans -------------------------------------------------------------

    def _enter_plan(self, plan: RoutePlanEntry, now: float) -> None:
        self._plan_jumps += 1
        if self._plan_jumps > MAX_PLAN_JUMPS:
            why = f"route-plan loop: more than {MAX_PLAN_JUMPS} plans entered"
            self._unavailable(now, f"plan:{plan.name}", why)
            return
        self._cursor = PlanCursor(plan)
        self._next = _ContinuePlan()

    def _run_steps(self, now: float) -> None:
        """Run steps until one waits (a session), ends the call or leaves the plan."""
        config = self._env.config
        while not self.finished:
            cursor = self._cursor
            if cursor is None:  # not in a plan: nothing follows
                self._unavailable(now, "plan", "no route plan to go on with")
                return
            item = cursor.next()
            if item is None:
                self._unavailable(now, f"plan:{cursor.plan.name}", "end of route plan")
                return
            subject, step = item
            match step:
                case ScheduleStep():
                    self._schedule(step, subject, now)
                case CrmLookupStep():
                    if self._look_up(step, subject, now):
                        return
                case ForwardStep(number=number):
                    self._out.note(now, subject, Outcome.ENTERED, detail=f"forward to {number}")
                    spec = _external_spec(number, FORWARD_RING_S, subject)
                    self._ring(spec, _ToNextStep(None), now)
                    return
                case HttpDecisionStep():
                    self._out.note(now, subject, Outcome.ENTERED)
                    decision = DecisionSession(
                        step.url, step.timeout_ms, step.fallback, subject, self._env
                    )
                    self._session = decision
                    self._set_state(RouterState.DECIDING)
                    decision.start(now)
                    return
                case IvrStep(target=IvrTarget(name=name)) if menu := config.ivr_menu(name):
                    self._out.note(now, subject, Outcome.ENTERED, detail=f"ivr:{name}")
                    self._cursor = None  # an IVR sends the call on; the plan does not go on
                    self._ivr(menu, subject, now)
                    return
                case GroupStep(target=GroupTarget(name=name)) if group := config.group(name):
                    self._out.note(now, subject, Outcome.ENTERED, detail=f"group:{name}")
                    spec = group_spec(group, self._env, step.ring_timeout_s, subject)
                    self._ring(spec, _ToNextStep(group), now)
                    return
                case QueueStep(target=GroupTarget(name=name)) if group := config.group(name):
                    self._out.note(now, subject, Outcome.ENTERED, detail=f"queue of group:{name}")
                    self._answer()
                    queue = QueueSession(group, step, subject, self._env)
                    self._session = queue
                    self._set_state(RouterState.QUEUED)
                    queue.start(now)
                    return
                case UserStep(target=UserTarget(extension=extension)) if user := config.user(
                    extension
                ):
                    self._out.note(now, subject, Outcome.ENTERED, detail=f"user:{extension}")
                    ring_s = step.ring_timeout_s or DEFAULT_USER_RING_S
                    self._ring(_user_spec(user, ring_s, subject), _ToNextStep(None), now)
                    return
                case VoicemailStep(target=VoicemailTarget(extension=box)):
                    self._out.note(now, subject, Outcome.ENTERED, detail=f"voicemail:{box or ''}")
                    self._cursor = None
                    self._voicemail(box, subject, now)
                    return
                case RoutePlanStep(target=RoutePlanTarget(name=name)) if plan := config.route_plan(
                    name
                ):
                    self._out.note(now, subject, Outcome.ENTERED, detail=f"plan:{name}")
                    self._enter_plan(plan, now)
                    return
                case ConferenceStep(target=ConferenceTarget(room=room)) if config.conference_room(
                    room
                ):
                    self._out.note(now, subject, Outcome.ENTERED, detail=f"conference:{room}")
                    self._cursor = None
                    self._conference(room, f"conference:{room}", now)
                    return
                case HangupStep(reason=reason):
                    hangup = hangup_for(reason, f"hangup:{reason}", answered=self._answered)
                    self._finish_with(hangup, now, subject)
                    return
                case _:
                    # A step whose object was deleted (or never compiled): skipped.
                    self._out.note(now, subject, Outcome.FELL_THROUGH, detail=_missing(step))

    def _schedule(self, step: ScheduleStep, subject: str, now: float) -> None:
        schedule = self._env.config.schedule(step.schedule) if step.schedule else None
        if schedule is None:
            is_open, why = True, "schedule no longer exists: open branch"
        else:
            verdict = schedule_state(schedule, self._env.wall(now))
            is_open, why = verdict.open, verdict.why
        branch, steps = ("open", step.open) if is_open else ("closed", step.closed)
        if not steps:
            why += "; empty branch: next step"
        self._out.note(now, subject, Outcome.BRANCHED, detail=f"{branch}: {why}")
        if steps and self._cursor is not None:
            self._cursor.push(steps, f"{subject} {branch}")

    # --- ends ------------------------------------------------------------------------

    def _answer(self) -> None:
        if not self._answered:
            self._out.act(Answer())
            self._answered = True

    def _connect(self, extension: str, now: float) -> None:
        self._session = None
        self._env.stop_playback()
        self._out.act(Connect(extension))
        self.connected_to = extension
        self._done(RouteResult.CONNECTED, RouterState.CONNECTED)

    def _unavailable(self, now: float, subject: str, why: str) -> None:
        """Nowhere (more) to go: 480."""
        self._out.note(now, subject, Outcome.FELL_THROUGH, detail=why)
        self._finish_with(Hangup(480, EndReason.UNAVAILABLE, why, self._answered), now)

    def _end_unanswered(self, now: float, subject: str, result: RingResult, why: str) -> None:
        detail = f"{result}, {why}"
        self._out.note(now, subject, Outcome.FELL_THROUGH, detail=detail)
        # Everyone busy (or declining) is what the caller hears, as with one person.
        status = _USER_STATUS.get(result, 480)
        self._finish_with(Hangup(status, _RING_END_REASON[result], detail, self._answered), now)

    def _finish_with(self, hangup: Hangup, now: float, subject: str = "call") -> None:
        self._session = None
        self.hangup = hangup
        self._out.act(hangup)
        self._out.note(now, subject, Outcome.HUNG_UP, detail=f"{hangup.status} {hangup.detail}")
        self._done(RouteResult.HUNG_UP, RouterState.ENDED)

    def _caller_left(self, now: float, voicemail_kept: bool = True) -> None:
        session = self._session
        why = "caller hung up"
        match session:
            case RingSession() | QueueSession():
                session.stop(now, why)
            case VoicemailSession():
                session.on_finished(now, voicemail_kept)  # hanging up is how a message ends
            case IvrSession() | DecisionSession() | CrmLookupSession() | GreetingSession():
                session.stop()
            case None:
                pass
        self._session = None
        self._out.note(now, "call", Outcome.CALLER_LEFT, detail=f"while {self.state.value}")
        self._done(RouteResult.CALLER_LEFT, RouterState.ENDED)

    def _done(self, result: RouteResult, state: RouterState) -> None:
        self._next = None
        self.result = result
        self._out.act(Done(result))
        self._set_state(state)

    def _set_state(self, state: RouterState) -> None:
        if state is not self.state:
            self._env.log(logging.DEBUG, "routing %s -> %s", self.state.name, state.name)
            self.state = state


def _user_spec(user: UserEntry, ring_s: int, subject: str) -> RingSpec:
    """Ringing one person wherever they are (follow-me): their devices, and per their
    settings their mobile after ``forward_after_s`` or at once, or only the number they
    forward everything to. A mobile's turn starts at once when no device of theirs
    rings (not registered, away)."""
    settings = user.settings
    members: tuple[str, ...] = (user.extension,)
    mode, escalation_s = RingMode.ALL, DEFAULT_ESCALATION_S
    if settings.forward_all_to:
        members = (settings.forward_all_to,)
    elif settings.forward_to_mobile and user.mobile:
        members = (user.extension, user.mobile)
        if not settings.mobile_parallel:
            mode, escalation_s = RingMode.ESCALATING, float(settings.forward_after_s)
            # The mobile gets a fair ring of its own after the desk phone's head start.
            ring_s = max(ring_s, settings.forward_after_s + MOBILE_RING_S)
    return RingSpec(
        subject=subject,
        members=members,
        mode=mode,
        ring_s=float(ring_s),
        escalation_s=escalation_s,
        handed_out=False,  # a call to this person, not one handed out by a group
    )


def _escalation(chain: ManagerChain, step: CrmLookupStep) -> tuple[RingSpec, ...]:
    """The stages that ring, in order: the manager as any call to them would ring them
    (devices, follow-me); their groups and then everyone all at once, by the group rules
    (members on a call, in do-not-disturb or wrap-up are skipped). A stage of 0 s rings
    nobody, so it is left out; so are the groups of a manager who is in none."""
    stages: list[RingSpec] = []
    manager = chain.manager
    if step.manager_timeout_s > 0:
        subject = f"crm manager user:{manager.extension}"
        stages.append(_user_spec(manager, step.manager_timeout_s, subject))
    if step.group_timeout_s > 0 and chain.groups:
        subject = f"crm manager's groups {','.join(f'group:{g}' for g in chain.groups)}"
        stages.append(_all_spec(chain.group_members, step.group_timeout_s, subject))
    if step.everyone_timeout_s > 0:
        stages.append(_all_spec(chain.everyone, step.everyone_timeout_s, "crm everyone"))
    return tuple(stages)


def _all_spec(members: tuple[str, ...], ring_s: int, subject: str) -> RingSpec:
    return RingSpec(subject=subject, members=members, mode=RingMode.ALL, ring_s=float(ring_s))


def _external_spec(number: str, ring_s: int, subject: str) -> RingSpec:
    """Ringing a phone number outside through the tenant's trunks (the member is E.164)."""
    return RingSpec(subject=subject, members=(number,), mode=RingMode.ALL, ring_s=float(ring_s))


def _missing(step: object) -> str:
    target = getattr(step, "target", None)
    if isinstance(target, UnroutedTarget):
        return f"{target.missing} no longer exists" if target.missing else "refers to nothing"
    return f"{describe(target)} no longer exists" if target is not None else "cannot run"
