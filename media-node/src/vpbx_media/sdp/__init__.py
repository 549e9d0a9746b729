"""SDP for the media node: the wire model (``model``), offer/answer (``negotiate``), the
node's o= identity per dialog (``origin``) and the rewrite that anchors media in the
node's relay (``rewrite``).
"""

from __future__ import annotations

from .model import (
    MAX_SDP_SIZE,
    RELAYABLE_PROTOS,
    SUPPORTED_AUDIO_CODECS,
    TELEPHONE_EVENT,
    Attribute,
    Codec,
    Connection,
    Direction,
    MediaDescription,
    NotAcceptableError,
    Origin,
    RtpMap,
    SdpError,
    SdpLine,
    SessionDescription,
    Timing,
)
from .negotiate import MediaEndpoint, Negotiation, media_endpoint, negotiate
from .origin import SdpOriginator
from .rewrite import mirrored_directions, rewrite_for_relay

__all__ = [
    "MAX_SDP_SIZE",
    "RELAYABLE_PROTOS",
    "SUPPORTED_AUDIO_CODECS",
    "TELEPHONE_EVENT",
    "Attribute",
    "Codec",
    "Connection",
    "Direction",
    "MediaDescription",
    "MediaEndpoint",
    "Negotiation",
    "NotAcceptableError",
    "Origin",
    "RtpMap",
    "SdpError",
    "SdpLine",
    "SdpOriginator",
    "SessionDescription",
    "Timing",
    "media_endpoint",
    "mirrored_directions",
    "negotiate",
    "rewrite_for_relay",
]
