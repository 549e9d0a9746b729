"""Proof that a new INVITE reached a node through the SIP edge.

A node takes a call to one of its tenant's numbers only from the edge (which
checked that it came from a carrier) or straight from one of its tenant's trunks
(a registered trunk sends its calls to the node's Contact). Anything else sending
INVITEs to a node's SIP port is refused, so the node must be able to tell a
request the edge relayed.

How: the edge signs the Via header it puts on top of each initial INVITE it
relays to a node, with a parameter ``vpbx-edge=<unix time>.<mac>``, the MAC an
HMAC-SHA256 (the edge secret, VPBX_EDGE_SECRET, which edge and nodes share) of
the Call-ID, the Via's branch and the time. The node checks the top Via only,
the one the last hop wrote.

Why the Via and not the Record-Route token (flowtoken.py): every caller sees the
edge's Record-Route entry in the answers to its INVITE, token included, and could
replay it straight at a node; the edge's own Via never leaves the edge-node path
(the edge removes it from responses before relaying them, and the node, a B2BUA,
never copies a request's Vias into its own requests). A sender that goes around
the edge can write any top Via but cannot sign it; a proof is good for one Call-ID
and branch and for ``MAX_SKEW_S`` around its time (the edge's and the node's
clocks must agree that closely), so even one read off the wire inside the
cluster is of little use. Why not the source address: in a cluster the edge
sends from pod addresses that change with every restart, and in local mode the
edge and the carriers share 127.0.0.1.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable

from ..sip.errors import SipParseError
from ..sip.headers import Via
from ..sip.message import SipRequest

PROOF_PARAM = "vpbx-edge"
MAX_SKEW_S = 120
_MAC_BYTES = 12


class RelayProofs:
    """Signs (the edge) and checks (a node) the ``vpbx-edge`` Via parameter."""

    def __init__(self, secret: bytes, clock: Callable[[], float] = time.time) -> None:
        self._secret = secret
        self._clock = clock

    def _mac(self, call_id: str, branch: str, stamp: str) -> str:
        payload = f"via|{call_id}|{branch}|{stamp}".encode()
        digest = hmac.new(self._secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]
        return base64.b32encode(digest).decode().rstrip("=").lower()

    def sign(self, via: Via, call_id: str) -> Via:
        """The edge's Via with the proof for this request added."""
        stamp = str(int(self._clock()))
        mac = self._mac(call_id, via.branch or "", stamp)
        return via.with_params(**{PROOF_PARAM: f"{stamp}.{mac}"})

    def verify(self, request: SipRequest) -> bool:
        """Whether the request's top Via carries a valid, recent proof of the edge."""
        vias = request.headers.values("Via")
        if not vias:
            return False
        try:
            top = Via.parse(vias[0])
        except SipParseError:
            return False
        proof = top.param(PROOF_PARAM)
        if not proof:
            return False
        stamp, _, mac = proof.partition(".")
        if not stamp.isdigit() or abs(self._clock() - int(stamp)) > MAX_SKEW_S:
            return False
        expected = self._mac(request.call_id, top.branch or "", stamp)
        return hmac.compare_digest(mac.encode(), expected.encode())
