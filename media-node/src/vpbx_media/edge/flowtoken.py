"""Signed edge tokens: how the edge finds its way back through a dialog.

The edge writes a token into every Record-Route and Path entry it adds. The
token names the outside flow (a phone or carrier: transport, address, port)
and the tenant node the dialog belongs to. A request routed through that
entry goes to the node when it comes from the outside flow, and out over the
same flow otherwise, which reaches phones behind NAT. The HMAC keeps
outsiders from crafting Route headers that would turn the edge into an open
relay: a request can only ever reach the node or the flow named by the edge.

A WebSocket flow (a browser) cannot be reached again once its connection is gone,
and many browsers behind one ingress share its address: the token then also
carries the connection's id (random per connection, sip/websocket.py), so it
names that one connection and no later one from the same address and port.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import dataclass

from ..sip.transport import Address, Flow, TransportKind

_MAC_BYTES = 10


@dataclass(frozen=True, slots=True)
class EdgeToken:
    outside: Flow
    node: Address


class EdgeTokens:
    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    @property
    def secret(self) -> bytes:
        """The edge secret (relayproof.RelayProofs signs with it too)."""
        return self._secret

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def encode(self, token: EdgeToken) -> str:
        outside, node = token.outside, token.node
        payload_text = (
            f"{outside.transport.value}|{outside.remote.host}|{outside.remote.port}"
            f"|{node.host}|{node.port}"
        )
        if outside.transport.is_websocket and outside.connection_id is not None:
            payload_text += f"|{outside.connection_id}"
        payload = payload_text.encode()
        raw = self._mac(payload) + payload
        return base64.b32encode(raw).decode().rstrip("=").lower()

    def decode(self, text: str) -> EdgeToken | None:
        """The token's content, or None when it is garbled or forged."""
        try:
            raw = base64.b32decode(text.upper() + "=" * (-len(text) % 8))
        except (ValueError, UnicodeError):
            return None
        mac, payload = raw[:_MAC_BYTES], raw[_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(payload)):
            return None
        try:
            fields = payload.decode().split("|")
            kind, host, port, node_host, node_port = fields[:5]
            transport = TransportKind(kind)
            connection: int | None = None
            if transport.is_websocket:
                # A WebSocket flow without its connection would name nobody.
                (connection_text,) = fields[5:]
                connection = int(connection_text)
            elif len(fields) != 5:
                return None
            return EdgeToken(
                Flow(transport, Address(host, int(port)), connection),
                Address(node_host, int(node_port)),
            )
        except ValueError:
            return None
