"""SDP parsing, offer/answer and relay rewriting against SDP real devices send."""

from __future__ import annotations

from pathlib import Path

import pytest

from vpbx_media.sdp import (
    Direction,
    MediaEndpoint,
    NotAcceptableError,
    SdpError,
    SdpOriginator,
    SessionDescription,
    media_endpoint,
    negotiate,
    rewrite_for_relay,
)

FIXTURES = Path(__file__).parent / "fixtures" / "sdp"
VALID = sorted(FIXTURES.glob("*.sdp"))
NODE_ADDRESS = "10.9.0.5"


def load(name: str) -> SessionDescription:
    return SessionDescription.parse((FIXTURES / name).read_bytes())


def relay_sdp(
    name: str,
    *,
    keep_codecs: tuple[str, ...] = ("PCMU", "PCMA", "telephone-event"),
    rtcp_port: int | None = None,
) -> SessionDescription:
    origin = SdpOriginator(NODE_ADDRESS, session_id=4242)
    return rewrite_for_relay(
        load(name),
        NODE_ADDRESS,
        20_000,
        origin=origin,
        keep_codecs=keep_codecs,
        rtcp_port=rtcp_port,
    )


@pytest.mark.parametrize("path", VALID, ids=lambda path: path.stem)
def test_golden_sdp_round_trips_byte_for_byte(path: Path) -> None:
    raw = path.read_bytes()
    parsed = SessionDescription.parse(raw)
    assert bytes(parsed) == raw
    assert SessionDescription.parse(str(parsed)) == parsed


@pytest.mark.parametrize("path", VALID, ids=lambda path: path.stem)
def test_bare_lf_and_trailing_blank_lines_parse_the_same(path: Path) -> None:
    raw = path.read_text()
    assert SessionDescription.parse(raw.replace("\r\n", "\n") + "\n\n") == (
        SessionDescription.parse(raw)
    )


def test_fields_of_a_desk_phone_offer() -> None:
    sdp = load("yealink.sdp")
    assert sdp.origin.session_id == 20034
    assert sdp.connection is not None
    assert sdp.connection.address == "10.0.1.45"
    audio = sdp.media[0]
    assert (audio.media, audio.port, audio.proto) == ("audio", 11800, "RTP/AVP")
    assert audio.formats == ("8", "0", "9", "18", "101")
    assert audio.ptime == 20
    assert audio.direction is Direction.SENDRECV
    assert audio.fmtp(18) == "annexb=no"
    assert [codec.name for codec in audio.codecs()] == [
        "PCMA",
        "PCMU",
        "G722",
        "G729",
        "telephone-event",
    ]


def test_unknown_and_extra_lines_are_kept_in_place() -> None:
    text = (
        "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\ni=sales line\r\nc=IN IP4 10.0.0.1\r\n"
        "b=CT:128\r\nt=0 0\r\nr=604800 3600 0 90000\r\nz=2882844526 -1h\r\n"
        "a=x-vendor:1\r\nm=audio 4000 RTP/AVP 0\r\ni=voice\r\nb=AS:64\r\nk=prompt\r\n"
        "y=unknown letter\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    parsed = SessionDescription.parse(text)
    assert str(parsed) == text
    assert parsed.timings[0].repeats == ("604800 3600 0 90000",)
    assert [line.type for line in parsed.media[0].extra_lines] == ["i", "b", "k", "y"]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("not_sdp.sdp", "line 1 is not <type>=<value>: 'INVITE sip:bob@example.com SIP/2.0'"),
        ("no_version.sdp", "SDP must start with a v= line"),
        ("no_origin.sdp", "SDP has no o= line"),
        (
            "short_origin.sdp",
            "line 2: o= line needs 6 space-separated fields, got '- 1 IN IP4 10.0.0.1'",
        ),
        ("no_timing.sdp", "SDP has no t= line"),
        ("port_out_of_range.sdp", "line 6: m= port 70000 is out of range (max 65535)"),
        (
            "media_without_formats.sdp",
            "line 6: m= line needs <media> <port> <proto> <fmt>..., got 'audio 4000 RTP/AVP'",
        ),
        ("no_connection.sdp", "m= line 1 (audio) has no c= line and the session has none either"),
        ("space_before_equals.sdp", "line 4 is not <type>=<value>: 'c = IN IP4 10.0.0.1'"),
        ("origin_in_media.sdp", "line 7: o= line is only allowed at session level"),
    ],
)
def test_malformed_sdp_is_rejected_with_a_clear_reason(name: str, message: str) -> None:
    with pytest.raises(SdpError) as caught:
        SessionDescription.parse((FIXTURES / "invalid" / name).read_bytes())
    assert str(caught.value) == message
    assert caught.value.status_code == 400


def test_empty_and_non_utf8_bodies_are_sdp_errors() -> None:
    with pytest.raises(SdpError, match="empty"):
        SessionDescription.parse(b"\r\n")
    with pytest.raises(SdpError, match="not UTF-8"):
        SessionDescription.parse(b"v=0\r\ns=\xff\r\n")


@pytest.mark.parametrize(
    ("name", "codec", "payload_type", "event_pt"),
    [
        ("baresip.sdp", "PCMU", 0, 101),  # opus and G722 come first but are not ours
        ("sipp.sdp", "PCMU", 0, None),
        ("yealink.sdp", "PCMA", 8, 101),  # the phone prefers PCMA: its order wins
        ("carrier_sbc.sdp", "PCMA", 8, 101),
        # Linphone offers telephone-event at 48k, 16k and 8k: only the 8k one fits G.711.
        ("linphone.sdp", "PCMU", 0, 100),
        ("polycom_hold.sdp", "PCMU", 0, 127),
    ],
)
def test_negotiation_picks_first_supported_codec_and_matching_dtmf(
    name: str, codec: str, payload_type: int, event_pt: int | None
) -> None:
    result = negotiate(load(name))
    assert (result.codec.name, result.codec.payload_type) == (codec, payload_type)
    assert (result.telephone_event.payload_type if result.telephone_event else None) == event_pt


def test_offer_without_common_codec_is_not_acceptable() -> None:
    with pytest.raises(NotAcceptableError) as caught:
        negotiate(load("carrier_g729_only.sdp"))
    assert caught.value.status_code == 488
    assert str(caught.value) == (
        "no common audio codec: offered G729, telephone-event; supported PCMU, PCMA"
    )


def test_srtp_only_offer_is_not_acceptable() -> None:
    with pytest.raises(NotAcceptableError, match="RTP/SAVP"):
        negotiate(load("srtp_only.sdp"))


@pytest.mark.parametrize(
    ("name", "direction", "on_hold"),
    [
        ("polycom_hold.sdp", Direction.SENDONLY, True),
        ("inactive.sdp", Direction.INACTIVE, True),  # session-level a=inactive applies
        ("hold_c0.sdp", Direction.SENDRECV, True),  # RFC 2543 hold: c=0.0.0.0
        ("baresip.sdp", Direction.SENDRECV, False),
    ],
)
def test_hold_offers_are_recognised(name: str, direction: Direction, on_hold: bool) -> None:
    result = negotiate(load(name))
    assert result.direction is direction
    assert result.on_hold is on_hold


def test_media_endpoint_reads_session_and_media_level_addresses() -> None:
    assert media_endpoint(load("baresip.sdp")) == MediaEndpoint("192.168.1.23", 10450, 10451)
    # c= only inside the m= section, as this SBC sends it
    assert media_endpoint(load("carrier_sbc.sdp")) == MediaEndpoint("203.0.113.12", 41234, 41235)
    # a=rtcp (RFC 3605) names the RTCP port explicitly
    assert media_endpoint(load("linphone.sdp")) == MediaEndpoint("192.168.0.12", 7078, 7079)
    explicit = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        "m=audio 4000 RTP/AVP 0\r\na=rtcp:4999\r\n"
    )
    assert media_endpoint(explicit) == MediaEndpoint("10.0.0.1", 4000, 4999)


def test_media_endpoint_of_sdp_without_active_audio_is_an_error() -> None:
    rejected = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n"
        "m=audio 0 RTP/AVP 0\r\n"
    )
    with pytest.raises(SdpError, match="no active RTP audio stream"):
        media_endpoint(rejected)


def test_rewrite_points_media_at_the_relay_and_drops_foreign_codecs() -> None:
    rewritten = relay_sdp("baresip.sdp")
    reparsed = SessionDescription.parse(str(rewritten))
    assert reparsed == rewritten
    assert media_endpoint(reparsed) == MediaEndpoint(NODE_ADDRESS, 20_000, 20_001)
    assert reparsed.origin.username == "vpbx"
    assert reparsed.origin.address == NODE_ADDRESS
    audio = reparsed.media[0]
    assert audio.formats == ("0", "8", "101")
    assert [value for value in audio.attribute_values("rtpmap")] == [
        "0 PCMU/8000",
        "8 PCMA/8000",
        "101 telephone-event/8000",
    ]
    assert audio.fmtp(96) is None  # opus parameters went with opus
    assert audio.fmtp(101) == "0-15"
    assert audio.ptime == 20
    assert audio.direction is Direction.SENDRECV


def test_rewrite_strips_ice_and_rejects_streams_the_relay_does_not_carry() -> None:
    rewritten = relay_sdp("linphone.sdp", keep_codecs=("PCMU", "telephone-event"))
    text = str(rewritten)
    assert "candidate" not in text
    assert "ice-" not in text
    audio, video = rewritten.media
    # telephone-event at 48k/16k cannot ride along with 8k PCMU
    assert audio.formats == ("0", "100")
    assert audio.attribute("rtcp") is None  # the relay's RTCP is on port + 1
    assert (video.media, video.port) == ("video", 0)
    assert media_endpoint(rewritten) == MediaEndpoint(NODE_ADDRESS, 20_000, 20_001)


def test_rewrite_with_an_explicit_rtcp_port_announces_it() -> None:
    rewritten = relay_sdp("sipp.sdp", rtcp_port=30_001)
    assert media_endpoint(rewritten) == MediaEndpoint(NODE_ADDRESS, 20_000, 30_001)


@pytest.mark.parametrize(
    ("name", "direction"),
    [("polycom_hold.sdp", Direction.SENDONLY), ("inactive.sdp", Direction.INACTIVE)],
)
def test_hold_passes_through_the_rewrite(name: str, direction: Direction) -> None:
    rewritten = relay_sdp(name, keep_codecs=("PCMU", "telephone-event"))
    assert rewritten.direction_of(rewritten.media[0]) is direction
    assert negotiate(rewritten).on_hold


def test_rfc2543_hold_address_passes_through_the_rewrite() -> None:
    rewritten = relay_sdp("hold_c0.sdp")
    assert rewritten.connection is not None
    assert rewritten.connection.address == "0.0.0.0"
    assert rewritten.media[0].port == 20_000
    assert negotiate(rewritten).on_hold


def test_rewrite_refuses_when_no_kept_codec_is_offered() -> None:
    with pytest.raises(NotAcceptableError, match="G729"):
        relay_sdp("carrier_g729_only.sdp")


def test_origin_version_increments_only_when_the_sdp_changes() -> None:
    origin = SdpOriginator(NODE_ADDRESS, session_id=99)
    offer = load("yealink.sdp")
    first = rewrite_for_relay(offer, NODE_ADDRESS, 20_000, origin=origin)
    refresh = rewrite_for_relay(offer, NODE_ADDRESS, 20_000, origin=origin)
    hold = rewrite_for_relay(
        load("polycom_hold.sdp"), NODE_ADDRESS, 20_000, origin=origin, keep_codecs=("PCMU",)
    )
    assert first.origin.session_id == refresh.origin.session_id == hold.origin.session_id == 99
    assert refresh.origin.session_version == first.origin.session_version
    assert hold.origin.session_version == first.origin.session_version + 1


def test_ipv6_relay_address_is_written_as_ip6() -> None:
    origin = SdpOriginator("2001:db8::5")
    rewritten = rewrite_for_relay(load("sipp.sdp"), "2001:db8::5", 20_000, origin=origin)
    assert "c=IN IP6 2001:db8::5\r\n" in str(rewritten)
    assert "IN IP6 2001:db8::5\r\n" in str(rewritten.origin) + "\r\n"
