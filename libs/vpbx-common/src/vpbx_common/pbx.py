"""The PBX vocabulary shared by the control API, the platform file and the media node."""

from __future__ import annotations

import enum


class RingStrategy(enum.StrEnum):
    """How the members of a group are rung."""

    RING_ALL = "ring-all"  # everybody at once
    SEQUENTIAL = "sequential"  # one after the other, in list order
    ROUND_ROBIN = "round-robin"  # one at a time, starting after the member who rang last
    ESCALATING = "escalating"  # add the next member every escalation_interval_s
    LEAST_RECENTLY_CALLED = "least-recently-called"
    BY_RANK = "by-rank"  # highest qualification rank first


class Presence(enum.StrEnum):
    """What a user set: only ``available`` users are offered calls."""

    AVAILABLE = "available"
    AWAY = "away"
    DO_NOT_DISTURB = "do-not-disturb"
