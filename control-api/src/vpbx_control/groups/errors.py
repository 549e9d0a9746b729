from __future__ import annotations

from ..errors import FieldProblem, InvalidInput, NameTaken, UsedByNumber


class GroupNameTaken(NameTaken):
    error_id = "group-name-taken"
    what = "a group"


class MemberWithoutExtension(InvalidInput):
    """Only users with an extension can be rung by a group."""

    error_id = "member-without-extension"

    def __init__(self, field: str) -> None:
        message = "the user has no extension and cannot be rung"
        super().__init__(
            f"{field}: {message}", details=[FieldProblem(field=field, message=message)]
        )


class GroupIsNumberEntry(UsedByNumber):
    error_id = "group-used-by-number"
    label = "group"
