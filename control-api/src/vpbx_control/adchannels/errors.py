"""Errors of /v1/ad-channels, on the control API's one error base (errors.ApiError)."""

from __future__ import annotations

from ..errors import FieldProblem, InvalidInput, NotFound


class AdChannelNotFound(NotFound):
    """No number of the tenant carries the label and no spend is recorded for it (another
    tenant's channel included)."""

    error_id = "ad-channel-not-found"

    def __init__(self) -> None:
        super().__init__("ad channel not found")


class SpendNotFound(NotFound):
    error_id = "spend-not-found"

    def __init__(self, month: str) -> None:
        super().__init__(f"no spend recorded for {month}")


class CurrencyMismatch(InvalidInput):
    """All of a tenant's spend is in one currency: the channels report adds channels up."""

    error_id = "currency-mismatch"

    def __init__(self, given: str, recorded: str) -> None:
        message = f"the tenant's spend is recorded in {recorded}, not {given}"
        super().__init__(
            f"body.currency: {message}",
            details=[FieldProblem(field="body.currency", message=message)],
        )
