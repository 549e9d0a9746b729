"""The node <-> worker wire: frames of a 4-byte big-endian length and a JSON object.

Kept apart from the worker so the node's process never imports aiortc.
"""

from __future__ import annotations

import asyncio
import json
import struct
from typing import Any

# How long a browser's ICE may take after its answer before the session is failed
# (aioice alone retries for much longer; a browser gives up after about 30 s).
ICE_TIMEOUT = 20.0

_HEADER = struct.Struct(">I")
MAX_FRAME = 1 << 20


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return _HEADER.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next frame, or None at the end of the stream."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError:
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise ValueError(f"frame of {length} bytes is larger than {MAX_FRAME}")
    try:
        body = await reader.readexactly(length)
    except asyncio.IncompleteReadError:
        return None
    message = json.loads(body)
    if not isinstance(message, dict):
        raise ValueError("a frame is not a JSON object")
    return message
