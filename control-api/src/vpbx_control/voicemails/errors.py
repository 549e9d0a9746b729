from __future__ import annotations

from ..errors import NotFound


class VoicemailNotFound(NotFound):
    """No such voice message in the caller's tenant, or one in a box the caller may not read."""

    error_id = "voicemail-not-found"

    def __init__(self) -> None:
        super().__init__("voicemail not found")


class VoicemailAudioMissing(NotFound):
    """The message is listed but the store has no audio under its key (removed by hand, or
    lost with the store)."""

    error_id = "voicemail-audio-missing"

    def __init__(self) -> None:
        super().__init__("the voice message's audio is no longer in the store")
