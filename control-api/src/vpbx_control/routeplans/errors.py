from __future__ import annotations

from ..errors import Conflict, FieldProblem, InvalidInput


class RoutePlanNameTaken(Conflict):
    error_id = "route-plan-name-taken"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"a route plan named {name!r} already exists",
            details=[FieldProblem(field="body.name", message="already used")],
        )


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


class RoutePlanIsNumberEntry(Conflict):
    error_id = "route-plan-used-by-number"

    def __init__(self, numbers: list[str]) -> None:
        listed = ", ".join(numbers)
        super().__init__(
            f"the route plan is the entry of {listed}; point the numbers elsewhere first",
            details=[FieldProblem(field="id", message=f"entry of {listed}")],
        )
