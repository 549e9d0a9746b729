"""The errors of imports: a file too large, a file that cannot be read, a rejected import."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import Field

from vpbx_control.errors import ApiError, Conflict, ErrorBody, FieldProblem, InvalidInput

from .schemas import RowProblem


class ImportTooLarge(ApiError):
    """More bytes or rows than one import takes: the file is refused before any row is read."""

    status_code = 413
    error_id = "import-too-large"

    def __init__(self, message: str) -> None:
        super().__init__(f"file: {message}", details=[FieldProblem(field="file", message=message)])


class UnreadableFile(InvalidInput):
    """Neither CSV nor an Excel workbook we can read (422 naming ``file``)."""

    error_id = "unreadable-file"

    def __init__(self, message: str) -> None:
        super().__init__(f"file: {message}", details=[FieldProblem(field="file", message=message)])


class ImportRejectedBody(ErrorBody):
    rows: int = Field(description="data rows in the file (the header and empty rows not counted)")
    valid: int = Field(description="rows without a problem")
    error_count: int = Field(description="all problems found, listed in `errors` or not")
    errors: list[RowProblem] = Field(description="the problems, by row (at most 1000)")


class ImportRejected(InvalidInput):
    """A file with any problem imports nothing: every problem is listed with its row."""

    error_id = "import-rejected"

    def __init__(
        self, rows: int, valid: int, errors: Sequence[RowProblem], error_count: int
    ) -> None:
        super().__init__(
            f"nothing was imported: {error_count} problem(s) in {rows - valid} of {rows} rows",
            details=[
                FieldProblem(field=f"rows[{error.row}].{error.field}", message=error.message)
                for error in errors
            ],
        )
        self.rows = rows
        self.valid = valid
        self.errors = list(errors)
        self.error_count = error_count

    def body(self) -> ImportRejectedBody:
        return ImportRejectedBody(
            error_id=self.error_id,
            message=self.message,
            details=self.details,
            rows=self.rows,
            valid=self.valid,
            error_count=self.error_count,
            errors=self.errors,
        )


class ImportRaced(Conflict):
    """Someone gave a contact one of the file's phones while the import ran."""

    error_id = "import-conflict"

    def __init__(self) -> None:
        super().__init__(
            "nothing was imported: a phone of the file was given to a contact meanwhile; "
            "preview the file again and retry"
        )
