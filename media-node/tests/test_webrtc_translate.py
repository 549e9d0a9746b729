"""SDP translation between WebRTC (Chrome, JsSIP) and the plain RTP the relay speaks.

The golden descriptions are written after what Chrome 120+ sends through JsSIP: Opus
first, G.711 further down, telephone-event at 8 and 48 kHz, header extensions, mDNS
host candidates, one or two m= sections.
"""

from __future__ import annotations

import random

import pytest

from vpbx_media.sdp import Direction, NotAcceptableError, SdpError, SessionDescription, negotiate
from vpbx_media.webrtc.translate import (
    IceDtls,
    is_webrtc,
    plain_sdp,
    read_browser,
    read_plain,
    webrtc_sdp,
)

FINGERPRINT = "sha-256 " + ":".join(f"{n:02X}" for n in range(32))

CHROME_OFFER = (
    "v=0\r\n"
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "a=group:BUNDLE 0\r\n"
    "a=extmap-allow-mixed\r\n"
    "a=msid-semantic: WMS 7f1d7bd3-2d0f-4f6c-9d1c-3ad4f0a0e1b2\r\n"
    "m=audio 51732 UDP/TLS/RTP/SAVPF 111 63 9 0 8 13 110 126\r\n"
    "c=IN IP4 192.0.2.10\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=candidate:2999745851 1 udp 2122260223 192.0.2.10 51732 typ host generation 0 "
    "network-id 1\r\n"
    "a=candidate:1d2c3b4a 1 udp 2122194687 4f1d2c3b-aaaa-bbbb-cccc-0123456789ab.local 51733 "
    "typ host generation 0 network-id 2\r\n"
    "a=candidate:4233069003 1 tcp 1518280447 192.0.2.10 9 typ host tcptype active "
    "generation 0 network-id 1\r\n"
    "a=ice-ufrag:Qx7v\r\n"
    "a=ice-pwd:Z1tY7mQ9kP3rB8nL2vC6xW0d\r\n"
    "a=ice-options:trickle\r\n"
    f"a=fingerprint:{FINGERPRINT}\r\n"
    "a=setup:actpass\r\n"
    "a=mid:0\r\n"
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level\r\n"
    "a=extmap:2 http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time\r\n"
    "a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r\n"
    "a=extmap:4 urn:ietf:params:rtp-hdrext:sdes:mid\r\n"
    "a=sendrecv\r\n"
    "a=msid:7f1d7bd3-2d0f-4f6c-9d1c-3ad4f0a0e1b2 0c2a8c5e-4e55-4a44-9a8f-1f6b2c3d4e5f\r\n"
    "a=rtcp-mux\r\n"
    "a=rtcp-rsize\r\n"
    "a=rtpmap:111 opus/48000/2\r\n"
    "a=rtcp-fb:111 transport-cc\r\n"
    "a=fmtp:111 minptime=10;useinbandfec=1\r\n"
    "a=rtpmap:63 red/48000/2\r\n"
    "a=fmtp:63 111/111\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:13 CN/8000\r\n"
    "a=rtpmap:110 telephone-event/48000\r\n"
    "a=rtpmap:126 telephone-event/8000\r\n"
    "a=ssrc:1839483742 cname:u3N5o8YQ2f1k9ZtD\r\n"
    "a=ssrc:1839483742 msid:7f1d7bd3-2d0f-4f6c-9d1c-3ad4f0a0e1b2 "
    "0c2a8c5e-4e55-4a44-9a8f-1f6b2c3d4e5f\r\n"
)

# JsSIP with a camera: a second (video) section the gateway must refuse, not drop.
CHROME_OFFER_WITH_VIDEO = (
    CHROME_OFFER.replace("a=group:BUNDLE 0\r\n", "a=group:BUNDLE 0 1\r\n")
    + "m=video 9 UDP/TLS/RTP/SAVPF 96 97\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:Qx7v\r\n"
    "a=ice-pwd:Z1tY7mQ9kP3rB8nL2vC6xW0d\r\n"
    f"a=fingerprint:{FINGERPRINT}\r\n"
    "a=setup:actpass\r\n"
    "a=mid:1\r\n"
    "a=sendrecv\r\n"
    "a=rtcp-mux\r\n"
    "a=rtpmap:96 VP8/90000\r\n"
    "a=rtpmap:97 rtx/90000\r\n"
    "a=fmtp:97 apt=96\r\n"
)

# Chrome answering the gateway's offer (0 8 101): G.711 and the offer's event type.
CHROME_ANSWER = (
    "v=0\r\n"
    "o=- 8342750139215811450 2 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    "a=group:BUNDLE 0\r\n"
    "a=msid-semantic: WMS 1a2b\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 0 101\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=ice-ufrag:Hh3k\r\n"
    "a=ice-pwd:Yy7uI9oP0aS2dF4gH6jK8lZx\r\n"
    "a=ice-options:trickle\r\n"
    f"a=fingerprint:{FINGERPRINT}\r\n"
    "a=setup:active\r\n"
    "a=mid:0\r\n"
    "a=sendrecv\r\n"
    "a=msid:1a2b 3c4d\r\n"
    "a=rtcp-mux\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=ssrc:99 cname:abc\r\n"
)

PLAIN_OFFER = (
    "v=0\r\no=vpbx 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
    "m=audio 20000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
)

GATEWAY_ICE = IceDtls(
    ufrag="gw01",
    pwd="gatewaypasswordgateway",
    fingerprint=FINGERPRINT,
    setup="actpass",
    candidates=("1 1 udp 2130706431 10.0.0.5 40000 typ host",),
)


def test_chrome_offer_is_read_as_g711_with_its_event_type() -> None:
    browser = read_browser(CHROME_OFFER.encode())
    assert [(c.name, c.payload_type) for c in browser.codecs] == [
        ("PCMU", 0),
        ("PCMA", 8),
        ("telephone-event", 126),  # the 8 kHz one: events are timed in the audio clock
    ]
    assert browser.ice.ufrag == "Qx7v"
    assert browser.ice.pwd == "Z1tY7mQ9kP3rB8nL2vC6xW0d"
    assert browser.ice.fingerprint == FINGERPRINT
    assert browser.ice.setup == "actpass"
    assert browser.mid == "0"
    assert len(browser.ice.candidates) == 3
    assert browser.direction is Direction.SENDRECV


def test_plain_offer_from_chrome_is_what_the_node_negotiates_as_a_phone() -> None:
    browser = read_browser(CHROME_OFFER.encode())
    plain = plain_sdp(
        address="127.0.0.1",
        port=41000,
        codecs=browser.codecs,
        direction=browser.direction,
        session_id=5,
        version=1,
    )
    negotiation = negotiate(SessionDescription.parse(plain))
    assert negotiation.codec.name == "PCMU"
    assert negotiation.telephone_event is not None
    assert negotiation.telephone_event.payload_type == 126  # same number on both sides
    assert negotiation.endpoint.ip == "127.0.0.1"
    assert negotiation.endpoint.rtp_port == 41000
    assert not is_webrtc(plain)


def test_answer_to_chrome_with_video_refuses_video_and_keeps_bundle_to_audio() -> None:
    browser = read_browser(CHROME_OFFER_WITH_VIDEO.encode())
    node_answer = read_plain(
        b"v=0\r\no=vpbx 1 1 IN IP4 10.0.0.5\r\ns=-\r\nc=IN IP4 10.0.0.5\r\nt=0 0\r\n"
        b"m=audio 20002 RTP/AVP 8 126\r\na=rtpmap:8 PCMA/8000\r\n"
        b"a=rtpmap:126 telephone-event/8000\r\na=sendrecv\r\n"
    )
    answer = webrtc_sdp(
        ice=GATEWAY_ICE,
        address="10.0.0.5",
        port=40000,
        codecs=node_answer.codecs,
        direction=node_answer.direction,
        session_id=9,
        version=2,
        mid=browser.mid or "0",
        cname="gw",
        answer_to=browser,
    )
    parsed = SessionDescription.parse(answer)
    assert [m.media for m in parsed.media] == ["audio", "video"]
    assert parsed.media[1].port == 0
    assert parsed.attribute("group") is not None
    assert parsed.attribute("group").value == "BUNDLE 0"  # type: ignore[union-attr]
    # The answer is itself a valid WebRTC description: it reads back the same way.
    again = read_browser(answer)
    assert [(c.name, c.payload_type) for c in again.codecs] == [
        ("PCMA", 8),
        ("telephone-event", 126),
    ]
    assert again.ice.candidates == GATEWAY_ICE.candidates
    assert b"a=extmap" not in answer  # no header extensions: plain RTP headers


def test_chrome_answer_becomes_a_plain_answer() -> None:
    browser = read_browser(CHROME_ANSWER.encode())
    assert browser.ice.setup == "active"
    plain = plain_sdp(
        address="127.0.0.1",
        port=41002,
        codecs=browser.codecs,
        direction=browser.direction,
        session_id=1,
        version=1,
    )
    answer = read_plain(plain)
    assert [(c.name, c.payload_type) for c in answer.codecs] == [
        ("PCMU", 0),
        ("telephone-event", 101),
    ]
    assert (answer.address, answer.port) == ("127.0.0.1", 41002)


def test_offer_to_the_browser_round_trips() -> None:
    plain = read_plain(PLAIN_OFFER.encode())
    offer = webrtc_sdp(
        ice=GATEWAY_ICE,
        address="10.0.0.5",
        port=40000,
        codecs=plain.codecs,
        direction=Direction.SENDONLY,
        session_id=3,
        version=4,
        mid="0",
        cname="gw",
    )
    text = offer.decode()
    assert "m=audio 40000 UDP/TLS/RTP/SAVPF 0 8 101\r\n" in text
    assert "a=setup:actpass\r\n" in text
    assert "a=rtcp-mux\r\n" in text
    assert "a=sendonly\r\n" in text
    assert "a=fmtp:101 0-15\r\n" in text
    assert is_webrtc(offer)
    back = read_browser(offer)
    assert back.direction is Direction.SENDONLY
    assert [c.payload_type for c in back.codecs] == [0, 8, 101]


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (CHROME_OFFER.replace(f"a=fingerprint:{FINGERPRINT}\r\n", ""), "a=fingerprint"),
        (CHROME_OFFER.replace("a=ice-pwd:Z1tY7mQ9kP3rB8nL2vC6xW0d\r\n", ""), "a=ice-pwd"),
        (CHROME_OFFER.replace("a=rtcp-mux\r\n", ""), "rtcp-mux"),
        (CHROME_OFFER.replace(" 111 63 9 0 8 13 110 126", " 111 63"), "no PCMU/PCMA"),
        (CHROME_OFFER.replace("a=setup:actpass", "a=setup:holdconn"), "a=setup:holdconn"),
        (CHROME_OFFER.replace("UDP/TLS/RTP/SAVPF", "RTP/AVP"), "UDP/TLS/RTP/SAVPF"),
        ("v=0\r\nthis is no sdp\r\n", "<type>=<value>"),
    ],
)
def test_bad_webrtc_sdp_says_what_is_wrong(body: str, reason: str) -> None:
    with pytest.raises(SdpError) as caught:
        read_browser(body.encode())
    assert reason in caught.value.reason


def test_no_codec_in_common_is_not_acceptable() -> None:
    opus_only = CHROME_OFFER.replace(" 111 63 9 0 8 13 110 126", " 111")
    with pytest.raises(NotAcceptableError):
        read_browser(opus_only.encode())


def test_mangled_webrtc_sdp_never_raises_anything_but_sdp_error() -> None:
    rng = random.Random(4733)
    original = CHROME_OFFER.encode()
    for _ in range(2000):
        data = bytearray(original)
        for _ in range(rng.randint(1, 8)):
            position = rng.randrange(len(data))
            action = rng.random()
            if action < 0.4:
                data[position] = rng.randrange(256)
            elif action < 0.7:
                del data[position : position + rng.randint(1, 40)]
            else:
                data[position:position] = rng.choice([b"\r\n", b":", b" ", b"=", b"\x00"])
        try:
            read_browser(bytes(data))
        except SdpError:
            continue


def test_plain_sdp_is_not_taken_for_webrtc() -> None:
    assert not is_webrtc(PLAIN_OFFER.encode())
    assert is_webrtc(CHROME_OFFER.encode())
    assert is_webrtc(CHROME_ANSWER.encode())


def test_a_phone_offering_sdes_srtp_with_a_plain_fallback_keeps_its_plain_call() -> None:
    sdes = (
        "v=0\r\no=- 1 1 IN IP4 192.0.2.7\r\ns=-\r\nc=IN IP4 192.0.2.7\r\nt=0 0\r\n"
        "m=audio 4000 RTP/SAVP 0 101\r\n"
        "a=crypto:1 AES_CM_128_HMAC_SHA1_80 inline:WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz\r\n"
        "m=audio 4002 RTP/AVP 0 101\r\n"
    )
    assert not is_webrtc(sdes.encode())
