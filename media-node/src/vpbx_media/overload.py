"""Shedding load politely: 503 with a spread-out Retry-After, and quiet logging of it.

Under a registration storm (every phone of a city re-registering after an outage)
the edge and the nodes answer what they cannot serve in time with 503 and a
Retry-After. Phones that honour it come back later; a random spread keeps them from
all coming back in the same second and starting the storm over.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable


def retry_after(base_s: int) -> str:
    """A Retry-After value (seconds) drawn evenly from base_s..2*base_s."""
    return str(random.randint(base_s, 2 * base_s))


class ShedLog:
    """Counts shed requests; logs one line per `interval` seconds instead of one per request.

    Also used for other refusals a flood could make numerous (`answered`, `level`).
    """

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        interval: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        level: int = logging.WARNING,
        answered: str = "503",
    ) -> None:
        self.logger = logger
        self.what = what
        self.interval = interval
        self.clock = clock
        self.level = level
        self.answered = answered
        self.total = 0
        self._since_log = 0
        self._logged_at: float | None = None

    def shed(self, reason: str) -> None:
        self.total += 1
        self._since_log += 1
        now = self.clock()
        if self._logged_at is None or now - self._logged_at >= self.interval:
            self.logger.log(
                self.level,
                "%s: %d request(s) answered %s since the last report (%d in all); latest: %s",
                self.what,
                self._since_log,
                self.answered,
                self.total,
                reason,
            )
            self._since_log = 0
            self._logged_at = now
