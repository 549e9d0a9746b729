"""The users resource's errors; each names the offending field."""

from __future__ import annotations

from ..errors import Conflict, FieldProblem, Forbidden, InvalidInput, NotFound, PlanLimitReached


class EmailTaken(Conflict):
    error_id = "email-taken"

    def __init__(self) -> None:
        super().__init__(
            "this e-mail address already belongs to a user",
            details=[FieldProblem(field="body.email", message="already used")],
        )


class ExtensionTaken(Conflict):
    """The extension is a user's or a conference room's already (one plan of extensions)."""

    error_id = "extension-taken"

    def __init__(self, extension: str, owner: str = "another user") -> None:
        super().__init__(
            f"extension {extension} already belongs to {owner}",
            details=[FieldProblem(field="body.extension", message=f"used by {owner}")],
        )


class ExtensionHasDevices(Conflict):
    error_id = "extension-has-devices"

    def __init__(self) -> None:
        super().__init__(
            "the user still has SIP devices; delete them before removing the extension",
            details=[FieldProblem(field="body.extension", message="the user has devices")],
        )


class SeatLimitReached(PlanLimitReached):
    def __init__(self, seats: int) -> None:
        super().__init__(
            f"the plan includes {seats} seats (users with an extension) and all are used; "
            "remove an extension or upgrade the plan",
            details=[FieldProblem(field="body.extension", message=f"seat limit {seats} reached")],
        )


class LastTenantAdmin(Conflict):
    error_id = "last-tenant-admin"

    def __init__(self, field: str) -> None:
        super().__init__(
            "the tenant would have no tenant admin left; make someone else admin first",
            details=[FieldProblem(field=field, message="last tenant admin")],
        )


class NotAUser(NotFound):
    error_id = "not-a-user"

    def __init__(self) -> None:
        super().__init__("this credential is not a user (an API key has no profile)")


class WrongCurrentPassword(Forbidden):
    error_id = "wrong-current-password"

    def __init__(self) -> None:
        super().__init__(
            "the current password is wrong",
            details=[FieldProblem(field="body.current_password", message="wrong password")],
        )


class UserHasNoExtension(InvalidInput):
    def __init__(self) -> None:
        message = "the user has no extension; SIP devices register under one"
        super().__init__(
            f"path.user_id: {message}",
            details=[FieldProblem(field="path.user_id", message=message)],
        )


class DeviceUsernameTaken(Conflict):
    error_id = "device-username-taken"

    def __init__(self, username: str) -> None:
        super().__init__(
            f"a SIP device with user name {username!r} already exists",
            details=[FieldProblem(field="body.username", message="already used")],
        )
