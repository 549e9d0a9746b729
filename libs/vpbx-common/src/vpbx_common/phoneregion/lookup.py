"""Region of a phone number, and how far apart two regions are."""

from __future__ import annotations

import functools
import math

import phonenumbers
from phonenumbers import PhoneNumberType

from vpbx_common.e164 import is_e164
from vpbx_common.phoneregion import russia
from vpbx_common.phoneregion.model import PhoneRegion

# Numbers that belong to a place; toll-free, premium, personal, VoIP and other
# service numbers have no region a caller ID could be matched to.
ORDINARY_NUMBER_TYPES = frozenset(
    {
        PhoneNumberType.FIXED_LINE,
        PhoneNumberType.MOBILE,
        PhoneNumberType.FIXED_LINE_OR_MOBILE,
    }
)
# Mean Earth radius (IUGG), km.
EARTH_RADIUS_KM = 6371.0088
# Foreign callees seen by one process; each costs a geocoder look-up once.
_FOREIGN_CACHE_SIZE = 4096


def region_for(e164: str) -> PhoneRegion | None:
    """The region of an E.164 number; None for invalid, unknown or non-geographic ones.

    Russian numbers resolve from vpbx's numbering-plan data alone: a number in
    an allocated range gets its federal subject (``RU-NVS``), or ``RU`` when the
    range names no single subject. A valid ordinary Russian number outside the
    data is known only to its country (``RU``). Numbers of other countries go
    through phonenumbers' geocoder (imported on the first such number).
    """
    national = russia.national_number(e164)
    if national is not None:
        region = russia.ranges().region_of(national)
        if region is not None:
            return region
        parsed = _parse_ordinary(e164)
        if parsed is None or phonenumbers.region_code_for_number(parsed) != "RU":
            return None
        return russia.RUSSIA
    return _foreign_region(e164)


def _parse_ordinary(e164: str) -> phonenumbers.PhoneNumber | None:
    """The parsed number if it is valid and fixed-line or mobile, else None."""
    if not is_e164(e164):
        return None
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    if phonenumbers.number_type(parsed) not in ORDINARY_NUMBER_TYPES:
        return None
    return parsed


@functools.lru_cache(maxsize=_FOREIGN_CACHE_SIZE)
def _foreign_region(e164: str) -> PhoneRegion | None:
    parsed = _parse_ordinary(e164)
    if parsed is None:
        return None
    country = phonenumbers.region_code_for_number(parsed)
    if country is None or len(country) != 2 or country == "ZZ":
        return None
    if country == "RU":
        # Not in the national format checked above; never ask the geocoder about
        # Russia, whose answer for most numbers is the country anyway.
        return russia.RUSSIA
    # Seconds to import: paid on the first foreign number only.
    from phonenumbers import geocoder

    country_name = geocoder.country_name_for_number(parsed, "en") or country
    description = geocoder.description_for_number(parsed, "en")
    if not description or description == country_name:
        return PhoneRegion(
            code=country, country=country, name=country_name, latitude=None, longitude=None
        )
    return PhoneRegion(
        code=f"{country}:{description}",
        country=country,
        name=description,
        latitude=None,
        longitude=None,
    )


def distance_km(a: PhoneRegion, b: PhoneRegion) -> float | None:
    """Great-circle distance between two regions' centres.

    None when either has no coordinates, or when they are in different
    countries: local presence never picks a number across a border for being
    closer.
    """
    if a.country != b.country:
        return None
    if a.latitude is None or a.longitude is None or b.latitude is None or b.longitude is None:
        return None
    lat_a, lat_b = math.radians(a.latitude), math.radians(b.latitude)
    half_dlat = (lat_b - lat_a) / 2
    half_dlon = math.radians(b.longitude - a.longitude) / 2
    haversine = (
        math.sin(half_dlat) ** 2 + math.cos(lat_a) * math.cos(lat_b) * math.sin(half_dlon) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(haversine)))
