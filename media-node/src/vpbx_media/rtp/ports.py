"""The node's RTP port range, handed out in (even RTP, odd RTCP) pairs (RFC 3550 11)."""

from __future__ import annotations

import logging
from collections import deque

logger = logging.getLogger(__name__)


class PortsExhaustedError(RuntimeError):
    """Every port pair in the range is in use; the node cannot take another media leg."""

    def __init__(self, start: int, end: int, in_use: int) -> None:
        super().__init__(
            f"all {in_use} RTP port pairs in {start}-{end} are in use; "
            "widen the media port range or lower the call limit"
        )
        self.start = start
        self.end = end
        self.in_use = in_use


class PortAllocator:
    """Even RTP ports from `start`..`end` (both inclusive); port + 1 is the leg's RTCP port.

    Released ports go to the back of the queue, so a port is reused as late as possible:
    stray packets of a finished call then do not land in the next call that gets its port.
    """

    def __init__(self, start: int, end: int) -> None:
        first = start + (start % 2)
        if not 1 <= start <= end <= 65_535:
            raise ValueError(f"port range {start}-{end} is not within 1-65535 in order")
        if first + 1 > end:
            raise ValueError(f"port range {start}-{end} holds no even/odd RTP/RTCP pair")
        self.start = start
        self.end = end
        self._free: deque[int] = deque(range(first, end, 2))
        self._in_use: set[int] = set()

    @property
    def capacity(self) -> int:
        return len(self._free) + len(self._in_use)

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    @property
    def available(self) -> int:
        return len(self._free)

    def allocate(self) -> int:
        """An even RTP port whose odd neighbour is the RTCP port; raise when none is left."""
        if not self._free:
            raise PortsExhaustedError(self.start, self.end, len(self._in_use))
        port = self._free.popleft()
        self._in_use.add(port)
        return port

    def release(self, port: int) -> None:
        if port not in self._in_use:
            raise ValueError(f"RTP port {port} was not allocated by this allocator")
        self._in_use.remove(port)
        self._free.append(port)
