from __future__ import annotations

from ..errors import Conflict, NotFound, Unavailable


class CallbackNotFound(NotFound):
    """No such callback in the caller's tenant (another tenant's is not found either)."""

    error_id = "callback-not-found"

    def __init__(self) -> None:
        super().__init__("callback not found")


class CallbackNotWaiting(Conflict):
    """Only a waiting callback can be cancelled: a ringing one is the agent's to end."""

    error_id = "callback-not-waiting"

    def __init__(self, status: str) -> None:
        super().__init__(f"the callback is {status}: only a waiting callback can be cancelled")


class CallbacksUnavailable(Unavailable):
    error_id = "callbacks-unavailable"

    def __init__(self, why: str) -> None:
        super().__init__(f"callbacks cannot be read now: {why}")
