"""The CRM's errors: the control API's error base and body, so clients handle one shape."""

from __future__ import annotations

from vpbx_control.errors import (
    ApiError,
    Conflict,
    FieldProblem,
    Forbidden,
    InvalidInput,
    NameTaken,
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
    "DealNotFound",
    "FieldProblem",
    "Forbidden",
    "IdentityUnavailable",
    "InvalidInput",
    "NotAuthenticated",
    "NotFound",
    "NoteNotFound",
    "PhoneTaken",
    "PipelineInUse",
    "PipelineNameTaken",
    "PipelineNotFound",
    "ReferenceNotFound",
    "StageInUse",
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


class PipelineNotFound(NotFound):
    error_id = "pipeline-not-found"

    def __init__(self) -> None:
        super().__init__("pipeline not found")


class DealNotFound(NotFound):
    error_id = "deal-not-found"

    def __init__(self) -> None:
        super().__init__("deal not found")


class NoteNotFound(NotFound):
    error_id = "note-not-found"

    def __init__(self) -> None:
        super().__init__("note not found")


class PipelineNameTaken(NameTaken):
    error_id = "pipeline-name-taken"
    what = "a pipeline"


class StageInUse(Conflict):
    """Deals sit in the stage: removing it (or changing its kind, which would win or lose
    them without a trace in their history) waits until they are moved."""

    error_id = "stage-in-use"

    def __init__(self, name: str, deals: int, change: str, field: str) -> None:
        super().__init__(
            f"stage {name!r} holds {deals} deal(s); move them before {change}",
            details=[FieldProblem(field=field, message=f"stage {name!r} holds {deals} deal(s)")],
        )


class PipelineInUse(Conflict):
    error_id = "pipeline-in-use"

    def __init__(self, deals: int) -> None:
        super().__init__(
            f"the pipeline holds {deals} deal(s); move or delete them first",
            details=[FieldProblem(field="pipeline_id", message=f"holds {deals} deal(s)")],
        )


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
