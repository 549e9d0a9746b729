from __future__ import annotations

from ..errors import ApiError, Conflict, FieldProblem, InvalidInput


class InvalidAudio(InvalidInput):
    """The uploaded prompt is not audio the node can play (422 naming ``file``)."""

    error_id = "invalid-audio"

    def __init__(self, message: str) -> None:
        super().__init__(f"file: {message}", details=[FieldProblem(field="file", message=message)])


class PromptTooLarge(ApiError):
    status_code = 413
    error_id = "prompt-too-large"

    def __init__(self, limit_bytes: int) -> None:
        limit = f"{limit_bytes // (1024 * 1024)} MB"
        super().__init__(
            f"file: this upload may be at most {limit}",
            details=[FieldProblem(field="file", message=f"larger than {limit}")],
        )


class PromptInUse(Conflict):
    """Something still plays the prompt: deleting it would leave a hole in a call."""

    error_id = "prompt-in-use"

    def __init__(self, users: list[str]) -> None:
        super().__init__(
            f"the prompt is still played by {', '.join(users)}; change them first",
            details=[FieldProblem(field="id", message=f"played by {user}") for user in users],
        )
