"""SDP rewritten so that a leg's media flows through the node's relay."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import replace

from .model import (
    DIRECTION_NAMES,
    SUPPORTED_AUDIO_CODECS,
    TELEPHONE_EVENT,
    Attribute,
    Connection,
    Direction,
    MediaDescription,
    NotAcceptableError,
    SessionDescription,
)
from .origin import SdpOriginator

# Attributes that describe transport features the relay does not offer (ICE, DTLS,
# SDES-SRTP, RTCP multiplexing). Passing them to the other leg would make that peer
# expect something the node will not do.
_RELAY_DROPPED_ATTRIBUTES = frozenset(
    {
        "candidate",
        "end-of-candidates",
        "remote-candidates",
        "ice-ufrag",
        "ice-pwd",
        "ice-options",
        "ice-lite",
        "ice-mismatch",
        "crypto",
        "fingerprint",
        "setup",
        "rtcp-mux",
        "rtcp-rsize",
    }
)


def _keep_attribute(attr: Attribute, kept_formats: Collection[str]) -> bool:
    if attr.name in _RELAY_DROPPED_ATTRIBUTES:
        return False
    fmt = attr.format
    return fmt is None or fmt == "*" or fmt in kept_formats


def rewrite_for_relay(
    sdp: SessionDescription,
    address: str,
    port: int,
    *,
    origin: SdpOriginator,
    keep_codecs: Iterable[str] = (*SUPPORTED_AUDIO_CODECS, TELEPHONE_EVENT),
    rtcp_port: int | None = None,
    media_index: int | None = None,
) -> SessionDescription:
    """The SDP the node sends to the other leg so that media flows through its relay.

    The chosen audio stream (`media_index`, default the first relayable one) gets the
    relay's address and port, loses codecs outside `keep_codecs` (names, any case) and the
    transport attributes the relay does not implement; its direction is kept, so hold
    passes through. A c=0.0.0.0 hold address stays 0.0.0.0. Every other stream is
    rejected with port 0, as RFC 3264 6 requires of streams the answerer will not carry.
    Raises `NotAcceptableError` when the stream has no codec left.
    """
    index = sdp.audio_index() if media_index is None else media_index
    if index is None or not 0 <= index < len(sdp.media):
        raise NotAcceptableError("the SDP has no active RTP audio stream to relay")
    keep = {name.lower() for name in keep_codecs}
    relay_connection = Connection.for_address(address)
    hold_connection = Connection(address="0.0.0.0")  # the RFC 2543 hold marker

    source = sdp.media[index]
    offered = [codec for codec in source.codecs() if codec.name.lower() in keep]
    audio = [codec for codec in offered if not codec.is_named(TELEPHONE_EVENT)]
    if not audio:
        raise NotAcceptableError(
            "none of the offered codecs "
            f"({', '.join(codec.name for codec in source.codecs()) or 'none known'}) "
            f"is in {', '.join(sorted(keep))}"
        )
    # DTMF events only make sense in the clock of an audio codec that stays (RFC 4733 2.1).
    audio_rates = {codec.clock_rate for codec in audio}
    kept_formats = [
        str(codec.payload_type)
        for codec in offered
        if not codec.is_named(TELEPHONE_EVENT) or codec.clock_rate in audio_rates
    ]
    connection = sdp.connection_for(source)
    on_hold_address = connection is not None and connection.is_hold_address
    attributes = [attr for attr in source.attributes if _keep_attribute(attr, kept_formats)]
    attributes = [attr for attr in attributes if attr.name != "rtcp"]
    if rtcp_port is not None and rtcp_port != port + 1:
        attributes.append(Attribute("rtcp", f"{rtcp_port} {relay_connection}"))
    relayed = replace(
        source,
        port=port,
        port_count=None,
        proto=source.proto,
        formats=tuple(kept_formats),
        connection=None,
        attributes=tuple(attributes),
    )
    media: list[MediaDescription] = []
    for position, description in enumerate(sdp.media):
        if position == index:
            media.append(relayed)
        else:
            media.append(
                replace(
                    description,
                    port=0,
                    port_count=None,
                    connection=None,
                    attributes=tuple(
                        attr for attr in description.attributes if attr.name in DIRECTION_NAMES
                    ),
                    extra_lines=(),
                )
            )
    rewritten = replace(
        sdp,
        connection=hold_connection if on_hold_address else relay_connection,
        attributes=tuple(
            attr for attr in sdp.attributes if attr.name not in _RELAY_DROPPED_ATTRIBUTES
        ),
        media=tuple(media),
        extra_lines=tuple(line for line in sdp.extra_lines if line.type != "c"),
    )
    return origin.stamp(rewritten)


_ANSWER_DIRECTION = {
    Direction.SENDRECV: Direction.SENDRECV,
    Direction.SENDONLY: Direction.RECVONLY,
    Direction.RECVONLY: Direction.SENDONLY,
    Direction.INACTIVE: Direction.INACTIVE,
}


def _mirror(attributes: tuple[Attribute, ...]) -> tuple[Attribute, ...]:
    return tuple(
        Attribute(_ANSWER_DIRECTION[Direction(attr.name)].value, None)
        if attr.value is None and attr.name in DIRECTION_NAMES
        else attr
        for attr in attributes
    )


def mirrored_directions(sdp: SessionDescription) -> SessionDescription:
    """``sdp`` with every direction as an answer to it states it (sendonly -> recvonly):
    for answering an offer the node takes itself (a hold it serves with music)."""
    media = tuple(replace(stream, attributes=_mirror(stream.attributes)) for stream in sdp.media)
    return replace(sdp, attributes=_mirror(sdp.attributes), media=media)
