from __future__ import annotations

from ..errors import Conflict, FieldProblem, NotFound, Unavailable


class NumberNotFound(NotFound):
    error_id = "not-found"

    def __init__(self) -> None:
        super().__init__("number not found")


class NoNumberAvailable(Conflict):
    """The pool has no free number matching the request."""

    error_id = "no-number-available"

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message, details=[FieldProblem(field=field, message=message)])


class NumberAlreadyExists(Conflict):
    """A Number resource of that name exists already (made outside this API?)."""

    error_id = "number-exists"


class NumberStoreUnavailable(Unavailable):
    """The Kubernetes API (or the local manifest file) did not take the change."""

    error_id = "number-store-unavailable"
