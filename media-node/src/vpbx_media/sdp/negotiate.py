"""Offer/answer (RFC 3264): which codec and endpoint a leg's SDP asks for."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from .model import (
    RELAYABLE_PROTOS,
    SUPPORTED_AUDIO_CODECS,
    TELEPHONE_EVENT,
    Codec,
    Direction,
    MediaDescription,
    NotAcceptableError,
    SdpError,
    SessionDescription,
)


class MediaEndpoint(NamedTuple):
    """Where a peer asked to receive a stream's RTP and RTCP."""

    ip: str
    rtp_port: int
    rtcp_port: int


@dataclass(frozen=True, slots=True)
class Negotiation:
    """The outcome of reading an offer: what the relay carries for the chosen stream."""

    media_index: int
    codec: Codec
    telephone_event: Codec | None
    direction: Direction
    ptime: int | None
    endpoint: MediaEndpoint
    on_hold: bool

    @property
    def codec_names(self) -> tuple[str, ...]:
        """The encodings to keep when rewriting SDP for the other leg."""
        if self.telephone_event is None:
            return (self.codec.name,)
        return (self.codec.name, self.telephone_event.name)


def negotiate(
    offer: SessionDescription, *, audio_codecs: Iterable[str] = SUPPORTED_AUDIO_CODECS
) -> Negotiation:
    """Pick the first offered audio codec we support and the matching telephone-event.

    The offerer's order is its preference (RFC 3264 6.1), so the first supported
    format wins. telephone-event is only taken at the chosen codec's clock rate, since
    DTMF events are timed in the audio stream's RTP clock (RFC 4733 2.1).
    Raises `NotAcceptableError` (answer 488) when no stream has a codec in common.
    """
    wanted = [name.lower() for name in audio_codecs]
    offered_audio = [
        (index, media)
        for index, media in enumerate(offer.media)
        if media.media == "audio" and media.port != 0
    ]
    if not offered_audio:
        raise NotAcceptableError("the offer has no active audio stream")
    seen: list[str] = []
    for index, media in offered_audio:
        if media.proto not in RELAYABLE_PROTOS:
            seen.append(f"{media.proto} (not plain RTP)")
            continue
        codecs = media.codecs()
        chosen = next((codec for codec in codecs if codec.name.lower() in wanted), None)
        if chosen is None:
            seen.extend(codec.name for codec in codecs)
            continue
        event = next(
            (
                codec
                for codec in codecs
                if codec.is_named(TELEPHONE_EVENT) and codec.clock_rate == chosen.clock_rate
            ),
            None,
        )
        return Negotiation(
            media_index=index,
            codec=chosen,
            telephone_event=event,
            direction=offer.direction_of(media),
            ptime=media.ptime,
            endpoint=_endpoint(offer, media),
            on_hold=offer.is_on_hold(media),
        )
    offered = ", ".join(seen) or "nothing"
    raise NotAcceptableError(
        f"no common audio codec: offered {offered}; supported {', '.join(audio_codecs)}"
    )


def _endpoint(sdp: SessionDescription, media: MediaDescription) -> MediaEndpoint:
    connection = sdp.connection_for(media)
    if connection is None:
        raise SdpError(f"{media.media} stream has no c= line")
    rtcp = media.rtcp
    # Without a=rtcp, RTCP goes to the next higher port (RFC 3550 11); with rtcp-mux it
    # could share the RTP port, but the relay never accepts mux, so the peer will not mux.
    # An address in a=rtcp differing from c= is ignored: the relay latches RTCP anyway.
    rtcp_port = rtcp[0] if rtcp is not None else media.port + 1
    return MediaEndpoint(ip=connection.host, rtp_port=media.port, rtcp_port=rtcp_port)


def media_endpoint(sdp: SessionDescription, media_index: int | None = None) -> MediaEndpoint:
    """The address the SDP's sender wants RTP/RTCP for its audio stream sent to."""
    index = sdp.audio_index() if media_index is None else media_index
    if index is None or not 0 <= index < len(sdp.media):
        raise SdpError("the SDP has no active RTP audio stream")
    return _endpoint(sdp, sdp.media[index])
