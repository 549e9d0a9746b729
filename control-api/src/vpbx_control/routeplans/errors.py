from __future__ import annotations

from ..errors import FieldProblem, InvalidInput, NameTaken, UsedByNumber


class RoutePlanNameTaken(NameTaken):
    error_id = "route-plan-name-taken"
    what = "a route plan"


class RouteCycle(InvalidInput):
    """A call could go round a loop of plans, groups and menus forever."""

    error_id = "route-cycle"

    def __init__(self, field: str, cycle: str) -> None:
        message = f"this reference closes a route cycle: {cycle}"
        super().__init__(
            f"{field} closes a route cycle: {cycle}",
            details=[FieldProblem(field=field, message=message)],
        )


class UnreachableStep(InvalidInput):
    error_id = "unreachable-step"

    def __init__(self, field: str, ending: str) -> None:
        message = f"never reached: the step before ({ending}) always ends the call"
        super().__init__(
            f"{field}: {message}", details=[FieldProblem(field=field, message=message)]
        )


class RoutePlanIsNumberEntry(UsedByNumber):
    error_id = "route-plan-used-by-number"
    label = "route plan"
