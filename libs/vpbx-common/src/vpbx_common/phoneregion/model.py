"""What a phone number says about where its owner is."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PhoneRegion:
    """The region a phone number belongs to, as precise as vpbx can tell.

    ``code`` is the key other code compares: ``"RU-NVS"`` (ISO 3166-2) for a
    Russian federal subject, ``"DE:Berlin"`` (country, then the geocoder's
    English text) elsewhere, or the bare country (``"RU"``, ``"DE"``) when only
    the country is known. Coordinates, where known, are those of the region's
    administrative centre: enough to tell which of a tenant's numbers is nearest.
    """

    code: str
    country: str
    name: str
    latitude: float | None
    longitude: float | None
