"""Carrier trunks as the node sees them: their registrations (and, later, trunk legs).

- ``destination``: where a trunk's requests go (its host resolved, tenant trunks checked
  against the outbound policy at send time);
- ``registration``: one trunk's RFC 3261 client registration (``TrunkRegistration``) and
  the node's set of them (``TrunkRegistrations``), statuses written to Redis.
"""

from __future__ import annotations

from .destination import TrunkUnreachableError, trunk_destination
from .registration import (
    RegistrationTimings,
    RequestSender,
    StatusSink,
    TrunkRegistration,
    TrunkRegistrations,
    refresh_delay,
)

__all__ = [
    "RegistrationTimings",
    "RequestSender",
    "StatusSink",
    "TrunkRegistration",
    "TrunkRegistrations",
    "TrunkUnreachableError",
    "refresh_delay",
    "trunk_destination",
]
