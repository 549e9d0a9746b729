"""The CRM's errors: the control API's error base and body, so clients handle one shape."""

from __future__ import annotations

from vpbx_control.errors import (
    ApiError,
    Conflict,
    FieldProblem,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    ReferenceNotFound,
    Unavailable,
)

__all__ = [
    "ApiError",
    "CompanyNotFound",
    "Conflict",
    "ContactNotFound",
    "FieldProblem",
    "Forbidden",
    "IdentityUnavailable",
    "InvalidInput",
    "NotAuthenticated",
    "NotFound",
    "PhoneTaken",
    "ReferenceNotFound",
    "Unavailable",
]


class ContactNotFound(NotFound):
    error_id = "contact-not-found"

    def __init__(self) -> None:
        super().__init__("contact not found")


class CompanyNotFound(NotFound):
    error_id = "company-not-found"

    def __init__(self) -> None:
        super().__init__("company not found")


class PhoneTaken(Conflict):
    """A phone is unique within the tenant: it routes to one contact."""

    error_id = "phone-taken"

    def __init__(self, phone: str, field: str, contact_id: str) -> None:
        super().__init__(
            f"{phone} already belongs to contact {contact_id}",
            details=[FieldProblem(field=field, message=f"belongs to contact {contact_id}")],
        )


class IdentityUnavailable(Unavailable):
    error_id = "identity-unavailable"

    def __init__(self) -> None:
        super().__init__("the control API (the product's login) cannot be reached; retry")
