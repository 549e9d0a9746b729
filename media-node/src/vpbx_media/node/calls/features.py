"""Feature codes a tenant's phones dial: pickup, park and retrieve, supervisor monitoring.

Pure: what a dialled string means under the tenant's codes (``FeatureCodesEntry``).
The longest matching code wins, so ``**`` + extension and ``*8`` never shadow each
other whatever a tenant chooses.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from vpbx_common.nodeconfig import FeatureCodesEntry

PARK_SLOTS = range(1, 10)


class FeatureKind(enum.StrEnum):
    PICKUP_GROUP = "pickup-group"
    PICKUP_DIRECTED = "pickup-directed"
    PARK = "park"  # dialled: retrieve the call parked on the slot; a transfer target: park
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


@dataclass(frozen=True, slots=True)
class Feature:
    kind: FeatureKind
    argument: str = ""  # the extension (pickup, monitoring) or the park slot ("" = any)


def parse_feature(dialled: str, codes: FeatureCodesEntry) -> Feature | None:
    """The feature ``dialled`` asks for, or None when it is no feature code."""
    candidates = sorted(
        (
            (codes.pickup_group, FeatureKind.PICKUP_GROUP),
            (codes.pickup_directed, FeatureKind.PICKUP_DIRECTED),
            (codes.park, FeatureKind.PARK),
            (codes.listen, FeatureKind.LISTEN),
            (codes.whisper, FeatureKind.WHISPER),
            (codes.barge, FeatureKind.BARGE),
        ),
        key=lambda item: -len(item[0]),
    )
    for code, kind in candidates:
        if not code or not dialled.startswith(code):
            continue
        argument = dialled[len(code) :]
        if kind is FeatureKind.PICKUP_GROUP:
            if argument == "":
                return Feature(kind)
            continue
        if kind is FeatureKind.PARK:
            if argument == "" or (argument.isdigit() and int(argument) in PARK_SLOTS):
                return Feature(kind, argument)
            continue
        if argument.isdigit():
            return Feature(kind, argument)
    return None
