"""Phones as people type them -> E.164, and the region a contact's phone places them in."""

from __future__ import annotations

from collections.abc import Sequence

from vpbx_common.e164 import InvalidPhoneNumber, normalize_e164
from vpbx_common.phoneregion import region_for

from ..errors import InvalidInput


def normalized_phones(phones: Sequence[str], field: str, country: str) -> list[str]:
    """Each phone in E.164, in order; a bad or repeated one is a 422 naming it."""
    seen: list[str] = []
    for index, text in enumerate(phones):
        at = f"{field}[{index}]"
        try:
            phone = normalize_e164(text, country)
        except InvalidPhoneNumber as exc:
            raise InvalidInput.at(at, str(exc)) from exc
        if phone in seen:
            raise InvalidInput.at(at, f"{phone} is listed twice")
        seen.append(phone)
    return seen


def phone_query(text: str, country: str) -> str:
    """A phone given in a query (``?phone=``) in E.164; 422 naming ``query.phone``."""
    try:
        return normalize_e164(text, country)
    except InvalidPhoneNumber as exc:
        raise InvalidInput.at("query.phone", str(exc)) from exc


def region_of_phones(phones: Sequence[str]) -> tuple[str, str]:
    """(code, name) of the first phone that has a known region, else ('', '')."""
    for phone in phones:
        region = region_for(phone)
        if region is not None:
            return region.code, region.name
    return "", ""
