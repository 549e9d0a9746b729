from __future__ import annotations

from ..errors import ApiError, Conflict, FieldProblem, InvalidInput, NotFound


class IvrMenuNameTaken(Conflict):
    error_id = "ivr-menu-name-taken"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"an IVR menu named {name!r} already exists",
            details=[FieldProblem(field="body.name", message="already used")],
        )


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


class IvrMenuIsNumberEntry(Conflict):
    error_id = "ivr-menu-used-by-number"

    def __init__(self, numbers: list[str]) -> None:
        listed = ", ".join(numbers)
        super().__init__(
            f"the IVR menu is the entry of {listed}; point the numbers elsewhere first",
            details=[FieldProblem(field="id", message=f"entry of {listed}")],
        )
