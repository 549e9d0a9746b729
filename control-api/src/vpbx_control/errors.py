"""One error base for the control API and the handlers that turn errors into JSON.

Every error body has the same shape: ``{"error_id", "message", "details"}``.
``error_id`` is a stable kebab-case code clients can branch on; ``details``
names the offending fields where there are any.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException


class FieldProblem(BaseModel):
    field: str = Field(description="dotted path of the offending field, e.g. body.steps[2].target")
    message: str


class ErrorBody(BaseModel):
    error_id: str = Field(examples=["not-found"])
    message: str = Field(examples=["group not found"])
    details: list[FieldProblem] = Field(default_factory=list)


class ApiError(Exception):
    status_code: int = 400
    error_id: str = "bad-request"

    def __init__(
        self,
        message: str,
        *,
        details: Sequence[FieldProblem] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)
        self.headers = headers

    def body(self) -> ErrorBody:
        return ErrorBody(error_id=self.error_id, message=self.message, details=self.details)


class NotAuthenticated(ApiError):
    status_code = 401
    error_id = "not-authenticated"

    def __init__(self, message: str = "missing or invalid credentials") -> None:
        super().__init__(message, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(ApiError):
    status_code = 403
    error_id = "forbidden"


class NotFound(ApiError):
    status_code = 404
    error_id = "not-found"


class ReferenceNotFound(NotFound):
    """A body field names an object that does not exist in the caller's tenant."""

    error_id = "reference-not-found"

    def __init__(self, field: str, what: str) -> None:
        super().__init__(
            f"{what} referenced by {field} does not exist",
            details=[FieldProblem(field=field, message=f"{what} not found")],
        )


class Conflict(ApiError):
    status_code = 409
    error_id = "conflict"


class NameTaken(Conflict):
    """Another object of the same kind in the tenant already has the name."""

    what = "an object"  # with its article: "a group", "an IVR menu"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"{self.what} named {name!r} already exists",
            details=[FieldProblem(field="body.name", message="already used")],
        )


class UsedByNumber(Conflict):
    """A number's entry is the object: deleting or renaming it would cut the number off."""

    label = "object"

    def __init__(self, numbers: list[str], field: str = "id") -> None:
        listed = ", ".join(numbers)
        super().__init__(
            f"the {self.label} is the entry of {listed}; point the numbers elsewhere first",
            details=[FieldProblem(field=field, message=f"entry of {listed}")],
        )


class PlanLimitReached(ApiError):
    status_code = 409
    error_id = "plan-limit-reached"


class PreconditionFailed(ApiError):
    status_code = 412
    error_id = "precondition-failed"

    def __init__(self, message: str = "If-Match does not match the current ETag") -> None:
        super().__init__(message)


class InvalidInput(ApiError):
    """Semantic validation beyond the schema (cycles, bad audio, ...); names the field."""

    status_code = 422
    error_id = "validation-failed"

    @classmethod
    def at(cls, field: str, message: str) -> InvalidInput:
        return cls(f"{field}: {message}", details=[FieldProblem(field=field, message=message)])


class TooManyRequests(ApiError):
    status_code = 429
    error_id = "too-many-requests"

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message, headers={"Retry-After": str(max(1, retry_after_s))})


class Unavailable(ApiError):
    status_code = 503
    error_id = "unavailable"


def field_path(location: Sequence[int | str]) -> str:
    """``("body", "steps", 2, "target")`` -> ``body.steps[2].target``."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def _validation_details(errors: Sequence[Any]) -> list[FieldProblem]:
    return [
        FieldProblem(field=field_path(error.get("loc", ())), message=str(error.get("msg", "")))
        for error in errors
    ]


async def _api_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return JSONResponse(exc.body().model_dump(), status_code=exc.status_code, headers=exc.headers)


async def _request_validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = _validation_details(exc.errors())
    fields = ", ".join(detail.field for detail in details)
    body = ErrorBody(error_id="validation-failed", message=f"invalid {fields}", details=details)
    return JSONResponse(body.model_dump(), status_code=422)


_HTTP_ERROR_IDS = {
    404: "not-found",
    405: "method-not-allowed",
    401: "not-authenticated",
    413: "payload-too-large",
    415: "unsupported-media-type",
}


async def _http_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    body = ErrorBody(
        error_id=_HTTP_ERROR_IDS.get(exc.status_code, "http-error"), message=str(exc.detail)
    )
    return JSONResponse(body.model_dump(), status_code=exc.status_code, headers=exc.headers)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _request_validation)
    app.add_exception_handler(StarletteHTTPException, _http_error)


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses=`` entries documenting the error body for each status."""
    return {status: {"model": ErrorBody} for status in statuses}
