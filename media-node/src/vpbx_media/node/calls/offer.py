"""The node's own offer, for the legs it places itself (a click-to-call's devices, a
supervisor's phones, a third party of a conference): every codec the mixer and the
relay speak, so whoever answers picks."""

from __future__ import annotations

from ...rtp.relay import Leg, MediaRelay
from ...sdp import SdpOriginator, SessionDescription, rewrite_for_relay

# The connection address is the relay's from the start: a 0.0.0.0 placeholder would be
# kept as the RFC 2543 hold marker by rewrite_for_relay, and the phone would not send.
_OFFER_TEMPLATE = (
    "v=0\r\no=- 0 0 IN IP4 {address}\r\ns=-\r\nc=IN IP4 {address}\r\nt=0 0\r\n"
    "m=audio 9 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n"
)


def node_offer(relay: MediaRelay, origin: SdpOriginator) -> bytes:
    """The node's own offer (PCMU, PCMA, telephone-event) with media at the relay's leg A."""
    local = relay.local_endpoint(Leg.A)
    offer = rewrite_for_relay(
        SessionDescription.parse(_OFFER_TEMPLATE.format(address=local.ip).encode()),
        local.ip,
        local.rtp_port,
        origin=origin,
        rtcp_port=local.rtcp_port,
    )
    return str(offer).encode()
