from __future__ import annotations

from ..errors import (
    ApiError,
    FieldProblem,
    InvalidInput,
    NameTaken,
    NotFound,
    UsedByNumber,
)


class IvrMenuNameTaken(NameTaken):
    error_id = "ivr-menu-name-taken"
    what = "an IVR menu"


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
            f"file: prompts may be at most {limit}",
            details=[FieldProblem(field="file", message=f"larger than {limit}")],
        )


class NoAudioPrompt(NotFound):
    error_id = "prompt-not-found"

    def __init__(self) -> None:
        super().__init__("this IVR menu has no uploaded prompt (its prompt is a tone or TTS)")


class IvrMenuIsNumberEntry(UsedByNumber):
    error_id = "ivr-menu-used-by-number"
    label = "IVR menu"
