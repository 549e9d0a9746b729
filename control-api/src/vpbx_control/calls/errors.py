from __future__ import annotations

from ..errors import Conflict, FieldProblem, Forbidden, InvalidInput, NotFound, Unavailable


class CallNotFound(NotFound):
    """No such call in the caller's tenant, or one the caller may not see (an agent's view)."""

    error_id = "call-not-found"

    def __init__(self) -> None:
        super().__init__("call not found")


class RecordingNotFound(NotFound):
    """The call exists (and the caller may hear it) but was not recorded."""

    error_id = "recording-not-found"

    def __init__(self) -> None:
        super().__init__("the call was not recorded")


class RecordingNotReady(NotFound):
    """The call was recorded (its CDR names the object) but the audio is not stored yet:
    the node encodes and uploads it after the call ends (recording.ready says when)."""

    error_id = "recording-not-ready"

    def __init__(self) -> None:
        super().__init__(
            "the call was recorded but its audio is not stored yet; retry shortly "
            "(the recording.ready webhook says when it is)",
            headers={"Retry-After": "5"},
        )


class TimeRangeInverted(InvalidInput):
    error_id = "time-range-inverted"

    def __init__(self) -> None:
        message = "must be earlier than `to`"
        super().__init__(
            f"query.from: {message}", details=[FieldProblem(field="query.from", message=message)]
        )


class CdrStoreNotConfigured(Unavailable):
    error_id = "cdr-store-not-configured"

    def __init__(self) -> None:
        super().__init__(
            "no CDR store is configured for the control API "
            "(set VPBX_CLICKHOUSE_URL, or VPBX_CHDB_PATH to the media nodes' chdb dir)"
        )


class CdrStoreUnavailable(Unavailable):
    error_id = "cdr-store-unavailable"

    def __init__(self) -> None:
        super().__init__(
            "the CDR store does not answer right now; retry later", headers={"Retry-After": "5"}
        )


class OutboundRefused(Forbidden):
    """The node refused the call: the tenant's policy or caps (international, premium,
    concurrent calls, daily minutes, no trunk, no number to show)."""

    error_id = "outbound-refused"


class UserUnreachable(Conflict):
    """The user has no registered phone to ring first."""

    error_id = "user-unreachable"


class CallNotLive(NotFound):
    """No live call with that id in the tenant (or not one of the agent's)."""

    error_id = "call-not-live"


class TransferRefused(Conflict):
    """The node would not start the transfer; the message says why."""

    error_id = "transfer-refused"


class MonitorRefused(Conflict):
    """The node would not ring the supervisor: the call is not connected, or something
    else goes on (a transfer, a hold, another supervisor, a three-way conference)."""

    error_id = "monitor-refused"


class ConferenceRefused(Conflict):
    """The node would not add the party; the message says why (no such target, not
    reachable, refused by the outbound policy, the call not connected or busy)."""

    error_id = "conference-refused"
