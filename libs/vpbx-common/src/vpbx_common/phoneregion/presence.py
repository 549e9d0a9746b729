"""Local presence: the caller ID a callee is most likely to answer and call back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from vpbx_common.phoneregion.lookup import distance_km, region_for
from vpbx_common.phoneregion.model import PhoneRegion

CallerIdReason = Literal["same-region", "nearest-region", "default"]
# Distinct callee regions whose choice one LocalPresence remembers: Russia's
# subjects and a few hundred foreign areas fit; beyond that choices are computed.
_REMEMBERED_REGIONS = 1024


@dataclass(frozen=True, slots=True)
class CallerIdChoice:
    """The number to show a callee, and why it was chosen (for logs and CDRs)."""

    number: str
    reason: CallerIdReason
    region: str | None  # the callee's region code, when known


class LocalPresence:
    """Picks one of a tenant's numbers as caller ID by the callee's region.

    Built once per node-config version from the tenant's numbers (E.164, in the
    tenant's order of preference) and a default (None: the first number). The
    tenant's numbers are resolved here, once; ``choose`` then costs one region
    look-up of the callee and a dictionary hit.

    A callee in a region where the tenant has numbers sees the first of them; else,
    when the callee's region has coordinates, the tenant's number nearest to it
    in the same country (the first on a tie); else the default.
    """

    __slots__ = ("_by_region", "_choices", "_default", "_located_by_country")

    def __init__(self, numbers: Sequence[str], default: str | None = None) -> None:
        if default is None:
            if not numbers:
                raise ValueError("local presence needs at least one number or a default")
            default = numbers[0]
        self._default = default
        self._by_region: dict[str, str] = {}
        self._located_by_country: dict[str, list[tuple[str, PhoneRegion]]] = {}
        for number in numbers:
            region = region_for(number)
            if region is None:
                continue
            self._by_region.setdefault(region.code, number)
            if region.latitude is not None and region.longitude is not None:
                self._located_by_country.setdefault(region.country, []).append((number, region))
        self._choices: dict[str, CallerIdChoice] = {}

    @property
    def default(self) -> str:
        """The number shown when no region rule applies."""
        return self._default

    def choose(self, callee: str) -> CallerIdChoice:
        """The caller ID for a call to ``callee`` (E.164)."""
        region = region_for(callee)
        if region is None:
            return CallerIdChoice(number=self._default, reason="default", region=None)
        choice = self._choices.get(region.code)
        if choice is None:
            choice = self._choose_for(region)
            if len(self._choices) < _REMEMBERED_REGIONS:
                self._choices[region.code] = choice
        return choice

    def _choose_for(self, region: PhoneRegion) -> CallerIdChoice:
        same_region = self._by_region.get(region.code)
        if same_region is not None:
            return CallerIdChoice(number=same_region, reason="same-region", region=region.code)
        nearest: str | None = None
        nearest_km = float("inf")
        for number, number_region in self._located_by_country.get(region.country, ()):
            km = distance_km(region, number_region)
            if km is not None and km < nearest_km:
                nearest, nearest_km = number, km
        if nearest is not None:
            return CallerIdChoice(number=nearest, reason="nearest-region", region=region.code)
        return CallerIdChoice(number=self._default, reason="default", region=region.code)
