"""The pure routing engine: (call, tenant config, live agent state, events) -> actions.

One ``CallRouter`` per call. The executor (the node's call code) runs the
actions it returns, feeds back events, and wakes it at ``next_deadline``; the
router never touches a socket, a clock or Redis. See ``router`` for the
driving loop, ``actions``/``events`` for the vocabulary, ``hangup`` for the
status mapping.

One module per kind of work: ``ringing`` (groups, users, strategies),
``ivr``, ``queue``, ``decision`` (HTTP decisions), ``crm`` (CRM lookups), ``voicemail``,
``schedule``, ``plan`` (where the call is in a route plan). A conference
room is the executor's (``JoinConference``): the router only sends the call there.
"""

from __future__ import annotations

from .actions import (
    Action,
    Answer,
    AskQueueStatus,
    BackToQueue,
    BookCallback,
    CollectDigits,
    Connect,
    Done,
    Hangup,
    JoinConference,
    JoinQueue,
    LeaveQueue,
    LookUpCaller,
    Play,
    QueueAnnouncement,
    RecordVoicemail,
    RememberLastMember,
    RequestDecision,
    Ring,
    RouteResult,
    Sound,
    StopPlayback,
    StopRinging,
)
from .agents import AgentSnapshot, AgentState, Availability
from .context import CallContext
from .decision import (
    Decision,
    FallbackDecision,
    RingDecision,
    TargetDecision,
    decision_body,
    parse_decision,
)
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
    MemberFailure,
    PromptFinished,
    QueueLeft,
    QueueOffer,
    QueueStatus,
    TimerFired,
    VoicemailFinished,
)
from .hangup import hangup_status
from .router import MAX_HOPS, MAX_PLAN_JUMPS, CallRouter, RouterState
from .schedule import ScheduleVerdict, schedule_state
from .trace import Outcome, RouteEntry

__all__ = [
    "MAX_HOPS",
    "MAX_PLAN_JUMPS",
    "Action",
    "AgentSnapshot",
    "AgentState",
    "Answer",
    "AskQueueStatus",
    "Availability",
    "BackToQueue",
    "BookCallback",
    "CallContext",
    "CallRouter",
    "CallbackBooked",
    "CallerHungUp",
    "CollectDigits",
    "Connect",
    "CrmFailed",
    "CrmReply",
    "Decision",
    "DecisionFailed",
    "DecisionReply",
    "Digit",
    "Done",
    "Event",
    "FallbackDecision",
    "Hangup",
    "JoinConference",
    "JoinQueue",
    "LeaveQueue",
    "LookUpCaller",
    "MemberAnswered",
    "MemberFailed",
    "MemberFailure",
    "Outcome",
    "Play",
    "PromptFinished",
    "QueueAnnouncement",
    "QueueLeft",
    "QueueOffer",
    "QueueStatus",
    "RecordVoicemail",
    "RememberLastMember",
    "RequestDecision",
    "Ring",
    "RingDecision",
    "RouteEntry",
    "RouteResult",
    "RouterState",
    "ScheduleVerdict",
    "Sound",
    "StopPlayback",
    "StopRinging",
    "TargetDecision",
    "TimerFired",
    "VoicemailFinished",
    "decision_body",
    "hangup_status",
    "parse_decision",
    "schedule_state",
]
