from __future__ import annotations

from ..errors import (
    FieldProblem,
    InvalidInput,
    NameTaken,
    NotFound,
    Unavailable,
    UsedByNumber,
)


class IvrMenuNameTaken(NameTaken):
    error_id = "ivr-menu-name-taken"
    what = "an IVR menu"


class NoAudioPrompt(NotFound):
    error_id = "prompt-not-found"

    def __init__(self) -> None:
        super().__init__("this IVR menu has no recorded or spoken prompt (it plays a tone)")


class _TtsFieldProblem(InvalidInput):
    """A tts prompt that cannot be spoken, naming the field at fault (422)."""

    field = "body.prompt"

    def __init__(self, message: str, prompt_at: str | None = None) -> None:
        # ``prompt_at``: where the prompt is in the body, when not at ``body.prompt``.
        if prompt_at is not None:
            self.field = prompt_at + self.field.removeprefix("body.prompt")
        problem = FieldProblem(field=self.field, message=message)
        super().__init__(f"{self.field}: {message}", details=[problem])


class TtsLanguageNotSupported(_TtsFieldProblem):
    """espeak-ng has no voice for the tts prompt's language."""

    error_id = "tts-language-not-supported"
    field = "body.prompt.language"


class TtsTextNotSpeakable(_TtsFieldProblem):
    """The text renders to silence, or to longer than a prompt may last."""

    error_id = "tts-text-not-speakable"
    field = "body.prompt.text"


class TtsUnavailable(Unavailable):
    """No text-to-speech engine (espeak-ng) on this server: tts prompts cannot be saved."""

    error_id = "tts-unavailable"

    def __init__(self, message: str, prompt_at: str = "body.prompt") -> None:
        super().__init__(
            f"{message}; upload a recording instead",
            details=[FieldProblem(field=prompt_at, message=message)],
        )


class TtsFailed(Unavailable):
    """espeak-ng ran but produced no speech (error, timeout); nothing was stored."""

    error_id = "tts-failed"

    def __init__(self, message: str, prompt_at: str = "body.prompt") -> None:
        super().__init__(
            f"{message}; nothing was saved, try again",
            details=[FieldProblem(field=prompt_at, message=message)],
        )


class IvrMenuIsNumberEntry(UsedByNumber):
    error_id = "ivr-menu-used-by-number"
    label = "IVR menu"
