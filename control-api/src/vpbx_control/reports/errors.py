"""Errors of /v1/reports, on the control API's one error base (errors.ApiError). A CDR
store that does not answer is calls.errors' 503 (as for /v1/calls)."""

from __future__ import annotations

from ..errors import FieldProblem, InvalidInput


class BadPeriod(InvalidInput):
    """The report's period is inverted, too long, out of range or in an unknown zone."""

    error_id = "bad-report-period"

    def __init__(self, field: str, message: str) -> None:
        super().__init__(
            f"{field}: {message}", details=[FieldProblem(field=field, message=message)]
        )
