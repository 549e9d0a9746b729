"""The request signature: how webhook deliveries (control API) and HTTP decisions
(media node) are signed, and how a receiver checks them.

Header::

    X-Vpbx-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>

The HMAC key is the webhook's secret, or the tenant's decision secret for an
HTTP decision (its UTF-8 bytes); the message is the
timestamp, a dot and the raw request body: ``f"{t}.".encode() + body``. A
receiver recomputes it over the body exactly as received (before parsing the
JSON), compares in constant time, and refuses timestamps too far from its
clock so a captured request cannot be replayed later. Several ``v1=`` entries
may appear; one matching is enough.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

SIGNATURE_HEADER = "X-Vpbx-Signature"
EVENT_HEADER = "X-Vpbx-Event"
DELIVERY_HEADER = "X-Vpbx-Delivery"
DEFAULT_TOLERANCE_S = 300


def generate_secret() -> str:
    """32 random bytes, URL-safe base64 (43 characters)."""
    return secrets.token_urlsafe(32)


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of ``"<timestamp>.<body>"`` under ``secret``."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The value of the X-Vpbx-Signature header for ``body``."""
    t = int(time.time()) if timestamp is None else timestamp
    return f"t={t},v1={signature(secret, t, body)}"


def verify(
    secret: str,
    header: str,
    body: bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """Whether ``header`` (X-Vpbx-Signature) signs ``body`` with ``secret`` and is recent."""
    timestamp: int | None = None
    candidates: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError:
                return False
        elif key == "v1":
            candidates.append(value)
    if timestamp is None or not candidates:
        return False
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_s:
        return False
    expected = signature(secret, timestamp, body)
    # Check every candidate: the time taken does not depend on which one matched.
    matched = False
    for candidate in candidates:
        matched |= hmac.compare_digest(expected, candidate)
    return matched
