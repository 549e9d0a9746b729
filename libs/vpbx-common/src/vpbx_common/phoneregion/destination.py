"""Which kind of destination a dialled number is, for outbound permissions and rating."""

from __future__ import annotations

import enum

import phonenumbers
from phonenumbers import PhoneNumberType

from vpbx_common.e164 import InvalidPhoneNumber, is_e164

_PREMIUM_TYPES = frozenset({PhoneNumberType.PREMIUM_RATE, PhoneNumberType.SHARED_COST})


class DestinationClass(enum.StrEnum):
    """What calling a number costs or risks, from the tenant's country.

    There is no emergency class: emergency numbers (112, 101...) are short codes,
    not E.164 numbers, so they cannot be told apart here.
    """

    DOMESTIC = "domestic"  # the tenant's country, ordinary fixed or mobile
    INTERNATIONAL = "international"
    PREMIUM = "premium"  # premium-rate or shared-cost (RU 8-809, 8-803), at home or abroad
    TOLL_FREE = "toll-free"  # free to the caller in the tenant's country (RU 8-800)


def destination_class(e164: str, home_country: str) -> DestinationClass:
    """The class of a call from a tenant in ``home_country`` (ISO 3166-1) to ``e164``.

    Premium wins over international: a premium number abroad is PREMIUM, the
    class outbound policy is strictest about. A toll-free number abroad is
    INTERNATIONAL: it is free only from inside its own country. A number the
    metadata does not know (a range newer than phonenumbers) is classed by its
    country alone. Raises InvalidPhoneNumber for text that is not E.164 and
    ValueError for a ``home_country`` that is not two letters.
    """
    home = home_country.upper()
    if len(home) != 2 or not (home.isascii() and home.isalpha()):
        raise ValueError(f"{home_country!r}: not an ISO 3166-1 alpha-2 country code")
    if not is_e164(e164):
        raise InvalidPhoneNumber(f"{e164!r}: not an E.164 number")
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException as error:
        raise InvalidPhoneNumber(f"{e164!r}: not a phone number ({error})") from error
    number_type = phonenumbers.number_type(parsed)
    if number_type in _PREMIUM_TYPES:
        return DestinationClass.PREMIUM
    if _country_of(parsed) != home:
        return DestinationClass.INTERNATIONAL
    if number_type == PhoneNumberType.TOLL_FREE:
        return DestinationClass.TOLL_FREE
    return DestinationClass.DOMESTIC


def _country_of(parsed: phonenumbers.PhoneNumber) -> str | None:
    """The number's country (ISO 3166-1, or "001" for non-geographic codes).

    For a number no region's metadata claims (a range newer than phonenumbers),
    the main country of its country code: the best guess there is.
    """
    country = phonenumbers.region_code_for_number(parsed)
    if country is None and parsed.country_code is not None:
        country = phonenumbers.region_code_for_country_code(parsed.country_code)
    return country
