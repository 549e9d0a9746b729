"""E.164 phone numbers: normalisation of what callers, carriers and admins type.

Every phone number stored or compared anywhere in vpbx (Number resources, routing
keys, CRM contacts, CDRs) is in E.164 form, ``+`` and 7 to 15 digits, so that one
number has exactly one spelling.
"""

from __future__ import annotations

import re

import phonenumbers

# ASCII digits only: "\d" would also accept full-width and other scripts' digits.
E164_PATTERN = re.compile(r"^\+[1-9][0-9]{6,14}$")

# Characters people and carriers put between digits; anything else is garbage,
# which phonenumbers would otherwise try hard to make sense of.
_DIALLED_TEXT = re.compile(r"^\+?[0-9][0-9 \-().]*$")
# tel: URI parameters that change which line is meant; dropping them would route
# the call to the main number instead of the extension the caller asked for.
_MEANINGFUL_TEL_PARAMETERS = ("ext", "isub")


# The name is the one other components already catch; it reads better than ...Error.
class InvalidPhoneNumber(ValueError):  # noqa: N818
    """Text that cannot be read as a phone number; the message says why."""


def is_e164(text: str) -> bool:
    """True when ``text`` already is in E.164 form (``+`` then 7-15 digits)."""
    return E164_PATTERN.fullmatch(text) is not None


def _strip_tel_uri(text: str) -> str:
    if text[:4].lower() != "tel:":
        return text
    number, _, parameters = text[4:].partition(";")
    for parameter in filter(None, parameters.split(";")):
        name = parameter.split("=", 1)[0].strip().lower()
        if name in _MEANINGFUL_TEL_PARAMETERS:
            raise InvalidPhoneNumber(
                f"{text!r}: the {name} parameter is not allowed, give the plain number"
            )
    return number


def normalize_e164(text: str, default_region: str = "RU") -> str:
    """The E.164 form of a dialled or typed number.

    Accepts international (``+7 (495) 000-00-01``), national (``8 495 000-00-01``
    in Russia), country-code-without-plus (``74950000001``), ``tel:`` URIs and SIP
    Request-URI user parts. The number must be *possible* (right length for its
    country), not necessarily *valid* per the metadata: test and newly allocated
    ranges are often missing from it.
    """
    candidate = _strip_tel_uri(text.strip())
    for separator in "-.()":
        candidate = candidate.replace(separator, " ")
    candidate = candidate.strip()
    if not _DIALLED_TEXT.fullmatch(candidate):
        raise InvalidPhoneNumber(f"{text!r}: not a phone number (only digits, '+' and separators)")
    try:
        parsed = phonenumbers.parse(candidate, default_region)
    except phonenumbers.NumberParseException as error:
        raise InvalidPhoneNumber(f"{text!r}: not a phone number ({error})") from error
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidPhoneNumber(f"{text!r}: wrong number of digits for its country")
    formatted = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if not is_e164(formatted):
        raise InvalidPhoneNumber(f"{text!r}: does not form an E.164 number")
    return formatted


def _parse_e164(e164: str) -> phonenumbers.PhoneNumber | None:
    if not is_e164(e164):
        return None
    try:
        return phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        # The pattern allows country codes that do not exist (e.g. +80...); such a
        # number simply has no known region.
        return None


def country_of(e164: str) -> str | None:
    """ISO 3166 region code of an E.164 number (``"RU"``), or None if unknown."""
    parsed = _parse_e164(e164)
    if parsed is None:
        return None
    region = phonenumbers.region_code_for_number(parsed)
    # "ZZ" is phonenumbers' unknown region; "001" marks non-geographic services.
    if region is None or region in ("ZZ", "001"):
        return None
    return region


def region_of(e164: str, language: str = "en") -> str | None:
    """Geographic area of an E.164 number (``"Moscow"``, ``"Ekaterinburg"``).

    The text of phonenumbers' geocoder. Mobile numbers usually only resolve to their
    country (``"Russia"``); toll-free and unknown numbers give None. Local
    presence uses ``vpbx_common.phoneregion.region_for`` instead, which places
    Russian mobile numbers too, from the numbering plan.
    """
    parsed = _parse_e164(e164)
    if parsed is None:
        return None
    # The geocoder's data takes seconds to import; only callers that need regions pay.
    from phonenumbers import geocoder

    description = geocoder.description_for_number(parsed, language)
    return description or None
