"""The node's own o= line per dialog (RFC 3264 5 and 8)."""

from __future__ import annotations

import random
from dataclasses import replace

from .model import (
    Origin,
    SessionDescription,
    address_type,
)


class SdpOriginator:
    """The node's own o= identity towards one peer (RFC 3264 5 and 8).

    Every SDP the node sends on a dialog carries the same session id; the version goes up
    by one whenever the body differs from the previous one sent, and stays put for an
    unchanged re-offer (a session refresh must not look like a media change).
    """

    def __init__(
        self, address: str, *, username: str = "vpbx", session_id: int | None = None
    ) -> None:
        self.address = address
        self.username = username
        # NTP-timestamp-sized random ids are what RFC 8866 suggests; they never collide
        # between calls in practice and reveal nothing about the node's clock.
        self.session_id = session_id if session_id is not None else random.getrandbits(62)
        self.session_version = self.session_id
        self._last_body: str | None = None

    def stamp(self, sdp: SessionDescription) -> SessionDescription:
        """`sdp` with the node's o= line, versioned against what was sent before."""
        # Compare bodies under a fixed origin so only media changes count as changes.
        body = str(replace(sdp, origin=self._origin(0)))
        if self._last_body is not None and body != self._last_body:
            self.session_version += 1
        self._last_body = body
        return replace(sdp, origin=self._origin(self.session_version))

    def _origin(self, version: int) -> Origin:
        return Origin(
            username=self.username,
            session_id=self.session_id,
            session_version=version,
            address=self.address,
            address_type=address_type(self.address),
        )
