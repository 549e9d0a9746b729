from __future__ import annotations

from ..errors import Conflict, FieldProblem, InvalidInput


class GroupNameTaken(Conflict):
    error_id = "group-name-taken"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"a group named {name!r} already exists",
            details=[FieldProblem(field="body.name", message="already used")],
        )


class MemberWithoutExtension(InvalidInput):
    """Only users with an extension can be rung by a group."""

    error_id = "member-without-extension"

    def __init__(self, field: str) -> None:
        message = "the user has no extension and cannot be rung"
        super().__init__(
            f"{field}: {message}", details=[FieldProblem(field=field, message=message)]
        )


class GroupIsNumberEntry(Conflict):
    """A number's entry names the group: renaming or deleting it would cut the number off."""

    error_id = "group-used-by-number"

    def __init__(self, numbers: list[str], field: str) -> None:
        listed = ", ".join(numbers)
        super().__init__(
            f"the group is the entry of {listed}; point the numbers elsewhere first",
            details=[FieldProblem(field=field, message=f"entry of {listed}")],
        )
