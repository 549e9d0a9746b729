"""E.164 normalisation of what callers, carriers and admins type."""

from __future__ import annotations

import pytest

from vpbx_common.e164 import InvalidPhoneNumber, country_of, is_e164, normalize_e164, region_of


@pytest.mark.parametrize(
    "text",
    [
        "+7 (495) 000-00-01",
        "84950000001",
        "74950000001",
        "+74950000001",
        "tel:+7-495-000-0001",
        "TEL:+7.495.000.00.01",
        "  8 (495) 000 00 01  ",
    ],
)
def test_russian_spellings_of_one_number_normalize_to_one_e164(text: str) -> None:
    assert normalize_e164(text) == "+74950000001"


def test_other_countries_and_regions() -> None:
    assert normalize_e164("+1 650 253 0000") == "+16502530000"
    assert normalize_e164("+44 20 7946 0958") == "+442079460958"
    assert normalize_e164("030 123456", default_region="DE") == "+4930123456"


def test_toll_free_number_is_accepted() -> None:
    assert normalize_e164("8 800 555-35-35") == "+78005553535"


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "not a phone number"),
        ("abc", "not a phone number"),
        ("+", "not a phone number"),
        ("74950000001abc", "not a phone number"),
        ("sip:+74950000001@acme.vpbx.local", "not a phone number"),
        ("+7495", "wrong number of digits"),
        ("123", "wrong number of digits"),
        ("+7916123456789", "wrong number of digits"),
        ("tel:+74950000001;ext=12", "ext parameter is not allowed"),
    ],
)
def test_garbage_is_rejected_with_a_reason(text: str, reason: str) -> None:
    with pytest.raises(InvalidPhoneNumber, match=reason) as caught:
        normalize_e164(text)
    assert isinstance(caught.value, ValueError)
    assert repr(text) in str(caught.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("+74950000001", True),
        ("+1234567", True),
        ("+123456789012345", True),
        ("+123456", False),
        ("+1234567890123456", False),
        ("+04950000001", False),
        ("74950000001", False),
        ("+7 495 000 00 01", False),
        ("+74950000001\n", False),
        ("+7４９５０００００01", False),  # full-width digits
    ],
)
def test_is_e164(text: str, expected: bool) -> None:
    assert is_e164(text) is expected


def test_region_of_geographic_numbers_names_the_city() -> None:
    assert region_of("+74950000001") == "Moscow"
    assert region_of("+73430000001") == "Ekaterinburg"
    assert region_of("+73430000001", language="ru") == "Свердловская обл"


def test_region_of_unknown_or_non_geographic_is_none() -> None:
    assert region_of("+78005553535") is None
    assert region_of("84950000001") is None
    assert region_of("+999123456789") is None


def test_country_of() -> None:
    assert country_of("+74950000001") == "RU"
    assert country_of("+16502530000") == "US"
    assert country_of("+999123456789") is None
    assert country_of("not a number") is None
