"""Errors of the SIP layer. Parsing never raises anything but `SipParseError`."""

from __future__ import annotations


class SipError(Exception):
    """Base of every error raised by the SIP layer."""


class SipParseError(SipError, ValueError):
    """A message (or part of one) is not valid SIP.

    `status_code` is the response a server should send when it can answer at all
    (400 for malformed input, 505 for an unsupported SIP version, 513 for an
    oversized message).
    """

    def __init__(self, reason: str, status_code: int = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


# The name predates the lint rule and other modules import it.
class MessageTooLarge(SipParseError):  # noqa: N818
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"message of {size} bytes exceeds the {limit}-byte limit", 513)
        self.size = size
        self.limit = limit
