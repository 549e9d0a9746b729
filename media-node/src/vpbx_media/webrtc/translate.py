"""SDP translation between a browser's WebRTC audio and the plain RTP the relay speaks.

Pure functions: no sockets, no awaits. The gateway's sessions call them with their own
ICE and DTLS parameters; unit tests call them with golden SDPs.

The one invariant the media path relies on: a payload type keeps its number on both
sides (PCMU 0, PCMA 8, telephone-event whatever the offerer chose), so a packet crosses
the gateway with its RTP header untouched and nothing is rewritten per packet.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..sdp import (
    SUPPORTED_AUDIO_CODECS,
    TELEPHONE_EVENT,
    Codec,
    Direction,
    MediaDescription,
    NotAcceptableError,
    SdpError,
    SessionDescription,
)

WEBRTC_PROTO = "UDP/TLS/RTP/SAVPF"
_SECURE_PROTOS = frozenset({"UDP/TLS/RTP/SAVPF", "UDP/TLS/RTP/SAVP", "RTP/SAVPF"})
_G711 = frozenset(name.lower() for name in SUPPORTED_AUDIO_CODECS)
_SETUP_VALUES = frozenset({"actpass", "active", "passive"})


def is_webrtc(sdp: bytes) -> bool:
    """Whether a body is a WebRTC description: ICE credentials and a DTLS fingerprint
    (WebRTC always has both; a plain phone offering SDES RTP/SAVP with an RTP/AVP
    fallback has neither, and keeps its plain call).

    A byte search, not a parse: the node asks this of every INVITE a phone sends, and a
    plain phone's SDP must cost nothing more than that.
    """
    return b"a=fingerprint:" in sdp and b"a=ice-ufrag:" in sdp


@dataclass(frozen=True, slots=True)
class IceDtls:
    """One side's transport parameters: ICE credentials, candidates, DTLS identity."""

    ufrag: str
    pwd: str
    fingerprint: str  # "<hash-func> <hex:pairs>", as in a=fingerprint
    setup: str  # actpass | active | passive
    candidates: tuple[str, ...] = ()  # a=candidate values


@dataclass(frozen=True, slots=True)
class BrowserMedia:
    """What a browser's offer or answer asks for on its audio stream."""

    ice: IceDtls
    mid: str | None
    codecs: tuple[Codec, ...]  # G.711 and telephone-event only, the browser's order
    direction: Direction
    media_index: int
    media_count: int  # every m= of the description: an answer mirrors them all
    rejected: tuple[MediaDescription, ...]  # the m= lines other than the chosen audio


def _value(sdp: SessionDescription, media: MediaDescription, name: str) -> str | None:
    """A media-level attribute, else the session-level one (RFC 8839 allows both)."""
    attribute = media.attribute(name) or sdp.attribute(name)
    if attribute is None or attribute.value is None:
        return None
    return attribute.value.strip()


def read_browser(body: bytes) -> BrowserMedia:
    """Parse a WebRTC offer or answer; `SdpError` (answered 488) names what is wrong."""
    sdp = SessionDescription.parse(body)
    index = next(
        (
            i
            for i, media in enumerate(sdp.media)
            if media.media == "audio" and media.port != 0 and media.proto in _SECURE_PROTOS
        ),
        None,
    )
    if index is None:
        raise NotAcceptableError("the WebRTC description has no active UDP/TLS/RTP/SAVPF audio")
    media = sdp.media[index]
    ufrag = _value(sdp, media, "ice-ufrag")
    pwd = _value(sdp, media, "ice-pwd")
    if not ufrag or not pwd:
        raise SdpError("the WebRTC audio stream has no a=ice-ufrag/a=ice-pwd")
    fingerprint = _value(sdp, media, "fingerprint")
    if not fingerprint or " " not in fingerprint:
        raise SdpError("the WebRTC audio stream has no usable a=fingerprint")
    setup = (_value(sdp, media, "setup") or "actpass").lower()
    if setup not in _SETUP_VALUES:
        raise SdpError(f"a=setup:{setup} is not actpass, active or passive")
    if media.attribute("rtcp-mux") is None:
        # The gateway has one ICE component per session; without rtcp-mux the browser
        # would want a second one for RTCP.
        raise NotAcceptableError("the WebRTC audio stream does not offer a=rtcp-mux")
    codecs = [codec for codec in media.codecs() if codec.name.lower() in _G711]
    if not codecs:
        offered = ", ".join(codec.name for codec in media.codecs()) or "nothing"
        raise NotAcceptableError(f"no PCMU/PCMA in the WebRTC audio stream (offered {offered})")
    events = [
        codec
        for codec in media.codecs()
        if codec.is_named(TELEPHONE_EVENT) and codec.clock_rate == 8000
    ]
    candidates = tuple(value.strip() for value in media.attribute_values("candidate"))
    mid_attr = media.attribute("mid")
    return BrowserMedia(
        ice=IceDtls(ufrag, pwd, fingerprint, setup, candidates),
        mid=mid_attr.value if mid_attr is not None and mid_attr.value else None,
        codecs=(*codecs, *events[:1]),
        direction=sdp.direction_of(media),
        media_index=index,
        media_count=len(sdp.media),
        rejected=tuple(m for i, m in enumerate(sdp.media) if i != index),
    )


@dataclass(frozen=True, slots=True)
class PlainMedia:
    """The relay's side of a session: where it wants RTP, in which codecs, which way."""

    address: str
    port: int
    codecs: tuple[Codec, ...]
    direction: Direction


def read_plain(body: bytes) -> PlainMedia:
    sdp = SessionDescription.parse(body)
    index = sdp.audio_index()
    if index is None:
        raise NotAcceptableError("the plain description has no active RTP audio stream")
    media = sdp.media[index]
    connection = sdp.connection_for(media)
    if connection is None:
        raise SdpError("the plain audio stream has no c= line")
    codecs = tuple(
        codec
        for codec in media.codecs()
        if codec.name.lower() in _G711 or codec.is_named(TELEPHONE_EVENT)
    )
    if not any(codec.name.lower() in _G711 for codec in codecs):
        raise NotAcceptableError("the plain audio stream has no PCMU/PCMA")
    return PlainMedia(connection.host, media.port, codecs, sdp.direction_of(media))


def _codec_lines(codecs: tuple[Codec, ...]) -> list[str]:
    lines: list[str] = []
    for codec in codecs:
        lines.append(f"a=rtpmap:{codec.payload_type} {codec.name}/{codec.clock_rate}")
        if codec.fmtp:
            lines.append(f"a=fmtp:{codec.payload_type} {codec.fmtp}")
    return lines


def _origin(session_id: int, version: int, address: str) -> str:
    return f"o=- {session_id} {version} IN IP4 {address}"


def plain_sdp(
    *,
    address: str,
    port: int,
    codecs: tuple[Codec, ...],
    direction: Direction,
    session_id: int,
    version: int,
) -> bytes:
    """The description the node sees for the browser: a phone at the gateway's plain port."""
    formats = " ".join(str(codec.payload_type) for codec in codecs)
    lines = [
        "v=0",
        _origin(session_id, version, address),
        "s=-",
        f"c=IN IP4 {address}",
        "t=0 0",
        f"m=audio {port} RTP/AVP {formats}",
        *_codec_lines(codecs),
        "a=ptime:20",
        f"a={direction.value}",
    ]
    return ("\r\n".join(lines) + "\r\n").encode()


def webrtc_sdp(
    *,
    ice: IceDtls,
    address: str,
    port: int,
    codecs: tuple[Codec, ...],
    direction: Direction,
    session_id: int,
    version: int,
    mid: str,
    cname: str,
    answer_to: BrowserMedia | None = None,
) -> bytes:
    """The description the browser sees: one audio stream, BUNDLE of itself, rtcp-mux.

    No RTP header extensions are offered or accepted, so the browser sends plain RTP
    headers that the relay and phones read as they are.
    """
    formats = " ".join(str(codec.payload_type) for codec in codecs)
    audio = [
        f"m=audio {port} {WEBRTC_PROTO} {formats}",
        f"c=IN IP4 {address}",
        "a=rtcp:9 IN IP4 0.0.0.0",
        *(f"a=candidate:{candidate}" for candidate in ice.candidates),
        "a=end-of-candidates",
        f"a=ice-ufrag:{ice.ufrag}",
        f"a=ice-pwd:{ice.pwd}",
        f"a=fingerprint:{ice.fingerprint}",
        f"a=setup:{ice.setup}",
        f"a=mid:{mid}",
        f"a={direction.value}",
        "a=rtcp-mux",
        *_codec_lines(codecs),
        "a=ptime:20",
        # No a=ssrc: the gateway forwards the relay's SSRCs unchanged and does not know
        # them in advance; browsers take an unsignalled SSRC on a single audio stream.
        f"a=msid:{cname} {cname}-audio",
    ]
    media_sections: list[list[str]] = []
    if answer_to is None:
        media_sections.append(audio)
    else:
        rejected = iter(answer_to.rejected)
        for index in range(answer_to.media_count):
            if index == answer_to.media_index:
                media_sections.append(audio)
                continue
            other = next(rejected)
            section = [f"m={other.media} 0 {other.proto} {' '.join(other.formats)}"]
            other_mid = other.attribute("mid")
            if other_mid is not None and other_mid.value:
                section.append(f"a=mid:{other_mid.value}")
            media_sections.append(section)
    lines = [
        "v=0",
        _origin(session_id, version, address),
        "s=-",
        "t=0 0",
        f"a=group:BUNDLE {mid}",
        f"a=msid-semantic: WMS {cname}",
    ]
    for section in media_sections:
        lines.extend(section)
    return ("\r\n".join(lines) + "\r\n").encode()


def mirrored(direction: Direction) -> Direction:
    """The answerer's direction for an offer's (RFC 3264 6.1)."""
    if direction is Direction.SENDONLY:
        return Direction.RECVONLY
    if direction is Direction.RECVONLY:
        return Direction.SENDONLY
    return direction
