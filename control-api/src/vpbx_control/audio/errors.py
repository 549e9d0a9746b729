from __future__ import annotations

from ..errors import ApiError, FieldProblem, InvalidInput, Unavailable


class ObjectStoreUnavailable(Unavailable):
    error_id = "object-store-unavailable"

    def __init__(self) -> None:
        super().__init__(
            "the audio store does not answer right now; retry later", headers={"Retry-After": "5"}
        )


class RangeNotSatisfiable(ApiError):
    status_code = 416
    error_id = "range-not-satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(
            f"the Range asks for bytes outside the audio's {size} bytes",
            details=[FieldProblem(field="header.Range", message=f"the audio has {size} bytes")],
            headers={"Content-Range": f"bytes */{size}", "Accept-Ranges": "bytes"},
        )


class AudioTooLongForWav(InvalidInput):
    error_id = "audio-too-long-for-wav"

    def __init__(self, limit: int) -> None:
        message = f"stored audio over {limit // (1024 * 1024)} MiB is served as Ogg/Opus only"
        super().__init__(
            f"query.format: {message}",
            details=[FieldProblem(field="query.format", message=message)],
        )


class AudioNotDecodable(ApiError):
    """The stored object is not Ogg/Opus we can decode (cut short or corrupt)."""

    status_code = 500
    error_id = "audio-not-decodable"

    def __init__(self) -> None:
        super().__init__("the stored audio could not be decoded; the Ogg file is still served")
