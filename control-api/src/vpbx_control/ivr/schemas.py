from __future__ import annotations

import datetime as dt
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from ..schema_base import StrictInput
from ..targets import Target

Name = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^\S(.*\S)?$")]
Digit = Literal["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "*", "#"]
Options = dict[Digit, Target]


class AudioPrompt(StrictInput):
    """One of the tenant's prompts: an upload to the library (POST /v1/prompts), or the
    menu's own recording (POST /v1/ivr-menus/{id}/prompt sets this for you)."""

    kind: Literal["audio"] = "audio"
    prompt_id: uuid.UUID = Field(description="an uploaded prompt of this tenant")


class TonePrompt(StrictInput):
    """A generated sine tone."""

    kind: Literal["tone"] = "tone"
    frequency_hz: int = Field(default=440, ge=100, le=3400, description="within the phone band")
    duration_ms: int = Field(default=500, ge=50, le=10_000)


Language = Annotated[
    str,
    Field(
        max_length=35,
        pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$",
        description=(
            "BCP 47 language tag; picks the espeak-ng voice (`ru-RU` -> ru, `en-US` -> en-us, "
            "other `en-*` -> en, others by tag or primary language). A language espeak-ng "
            "has no voice for is a 422 naming `body.prompt.language`"
        ),
        examples=["ru-RU", "en-US"],
    ),
]


def _something_to_say(value: str) -> str:
    if not value.strip():
        raise ValueError("must contain something to say, not only white space")
    return value


SpokenText = Annotated[
    str,
    Field(min_length=1, max_length=1000, examples=["Press 1 for sales."]),
    AfterValidator(_something_to_say),
]


class TtsPrompt(StrictInput):
    """Text to speech, rendered with espeak-ng when the menu is saved and stored like an
    uploaded recording (8 kHz mono 16-bit PCM WAV): the menu then plays that audio."""

    kind: Literal["tts"] = "tts"
    text: SpokenText
    language: Language = "ru-RU"


Prompt = Annotated[
    AudioPrompt | TonePrompt | TtsPrompt,
    Field(
        discriminator="kind",
        description=(
            "What the caller hears: an uploaded recording (`audio`), a generated tone "
            "(`tone`), or text to speech (`tts`), which the API renders with espeak-ng "
            "when the menu is saved and stores like an uploaded recording."
        ),
    ),
]


class SpokenPrompt(BaseModel):
    """A text-to-speech prompt as read back: the text, its language and the rendered audio."""

    kind: Literal["tts"] = "tts"
    text: str
    language: str = "ru-RU"
    prompt_id: uuid.UUID | None = Field(
        default=None,
        description=(
            "the rendered speech, stored like an uploaded prompt; download it at "
            "`GET /v1/ivr-menus/{id}/prompt`. Null only for a menu saved before the API "
            "rendered speech: it plays a tone until it is saved again"
        ),
    )


MenuPrompt = Annotated[
    AudioPrompt | TonePrompt | SpokenPrompt,
    Field(
        discriminator="kind",
        description=(
            "What the caller hears: an uploaded recording (`audio`), a generated tone "
            "(`tone`), or text rendered to speech (`tts`, with the rendered `prompt_id`)."
        ),
    ),
]

DEFAULT_PROMPT = TonePrompt()

_OPTIONS_EXAMPLE: dict[str, Any] = {
    "1": {"type": "group", "group_id": "3f0c8a52-2d0b-4a51-9d51-9c0b6b1f2a11"},
    "0": {"type": "user", "user_id": "5b7e2a1c-8f4d-4f4e-a0a2-52a1c3e4d5f6"},
}


class _MenuFields(StrictInput):
    @field_validator(
        "name", "prompt", "options", "timeout_s", "max_retries", mode="after", check_fields=False
    )
    @classmethod
    def _not_null(cls, value: object) -> object:
        # Update bodies: these may be left out, but not set to null.
        if value is None:
            raise ValueError("may not be null")
        return value


class IvrMenuCreate(_MenuFields):
    name: Name = Field(examples=["main menu"])
    prompt: Prompt = Field(
        default=DEFAULT_PROMPT,
        examples=[{"kind": "tts", "text": "Press 1 for sales, 0 for the operator."}],
    )
    options: Options = Field(
        default_factory=dict,
        description="digit (0-9, *, #) -> where the call goes",
        examples=[_OPTIONS_EXAMPLE],
    )
    timeout_s: int = Field(default=5, ge=1, le=60, description="wait for a digit this long")
    timeout_target: Target | None = Field(
        default=None, description="after the retries, when no digit came; null = hang up"
    )
    invalid_target: Target | None = Field(
        default=None, description="after the retries, when digits were wrong; null = hang up"
    )
    max_retries: int = Field(
        default=2, ge=0, le=5, description="replays of the prompt after a timeout or wrong digit"
    )


class IvrMenuUpdate(_MenuFields):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "options": {
                        "1": {"type": "group", "group_id": _OPTIONS_EXAMPLE["1"]["group_id"]}
                    },
                    "timeout_target": None,
                }
            ]
        },
    )

    name: Name | None = None
    prompt: Prompt | None = None
    options: Options | None = Field(default=None, description="replaces all options")
    timeout_s: int | None = Field(default=None, ge=1, le=60)
    timeout_target: Target | None = None
    invalid_target: Target | None = None
    max_retries: int | None = Field(default=None, ge=0, le=5)


class IvrMenuOut(BaseModel):
    id: uuid.UUID
    name: str
    prompt: MenuPrompt
    options: Options
    timeout_s: int
    timeout_target: Target | None
    invalid_target: Target | None
    max_retries: int
    revision: int
    created_at: dt.datetime
    updated_at: dt.datetime

    @field_validator("prompt", mode="before")
    @classmethod
    def _stored_prompt(cls, value: object) -> object:
        # A menu written outside the API (seeded) may have no prompt yet: it plays the default.
        return value or DEFAULT_PROMPT


class PromptOut(BaseModel):
    """An uploaded prompt, as stored: 8 kHz mono 16-bit PCM WAV."""

    id: uuid.UUID
    ivr_menu_id: uuid.UUID | None
    name: str = Field(description="the uploaded file's name")
    duration_ms: int
    sha256: str = Field(description="of the converted WAV")
    sample_rate: Literal[8000] = 8000
    channels: Literal[1] = 1
    created_at: dt.datetime
