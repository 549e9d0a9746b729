"""Region of a phone number, destination class and local-presence caller ID.

The mobile numbers are taken from ranges of the shipped register extract
(DEF-9xx.csv, see phoneregion/data/README.md); each is cited with its register
row (code;from;to;operator;territory). The landline numbers come from the zone
table of the numbering plan (495 Moscow, 383 Novosibirsk, 343 Sverdlovsk Oblast,
812 St Petersburg, 843 Tatarstan, 382 Tomsk).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from vpbx_common.e164 import InvalidPhoneNumber
from vpbx_common.phoneregion import (
    CallerIdChoice,
    DestinationClass,
    LocalPresence,
    PhoneRegion,
    destination_class,
    distance_km,
    region_for,
    russia,
)

# 903;1000000;1999999;ПАО "ВЫМПЕЛКОМ";Город Москва, Московская область
MOSCOW_MOBILE = "+79031234567"
# 913;7000000;7999999;ПАО "МТС";Новосибирская область
NOVOSIBIRSK_MOBILE = "+79137123456"
# 912;2000000;2999999;ПАО "МТС";Свердловская область
YEKATERINBURG_MOBILE = "+79122345678"
# 921;3000000;4499999;ПАО "МЕГАФОН";Город Санкт-Петербург, Ленинградская область
ST_PETERSBURG_MOBILE = "+79213456789"
# 917;2200000;2999999;ПАО "Мобильные ТелеСистемы";Республика Татарстан
KAZAN_MOBILE = "+79172512345"
# 913;8400000;8899999;ПАО "Мобильные ТелеСистемы";Томская область
TOMSK_MOBILE = "+79138512345"

MOSCOW_LANDLINE = "+74951234567"
NOVOSIBIRSK_LANDLINE = "+73832123456"
YEKATERINBURG_LANDLINE = "+73432123456"
ST_PETERSBURG_LANDLINE = "+78121234567"
KAZAN_LANDLINE = "+78432123456"
TOMSK_LANDLINE = "+73822123456"


@pytest.mark.parametrize(
    ("number", "code", "name"),
    [
        (MOSCOW_LANDLINE, "RU-MOW", "Moscow"),
        (MOSCOW_MOBILE, "RU-MOW", "Moscow"),
        (NOVOSIBIRSK_LANDLINE, "RU-NVS", "Novosibirsk Oblast"),
        (NOVOSIBIRSK_MOBILE, "RU-NVS", "Novosibirsk Oblast"),
        (YEKATERINBURG_LANDLINE, "RU-SVE", "Sverdlovsk Oblast"),
        (YEKATERINBURG_MOBILE, "RU-SVE", "Sverdlovsk Oblast"),
        (ST_PETERSBURG_LANDLINE, "RU-SPE", "Saint Petersburg"),
        (ST_PETERSBURG_MOBILE, "RU-SPE", "Saint Petersburg"),
        (KAZAN_LANDLINE, "RU-TA", "Republic of Tatarstan"),
        (KAZAN_MOBILE, "RU-TA", "Republic of Tatarstan"),
        (TOMSK_LANDLINE, "RU-TOM", "Tomsk Oblast"),
        (TOMSK_MOBILE, "RU-TOM", "Tomsk Oblast"),
    ],
)
def test_russian_landline_and_mobile_numbers_resolve_to_their_subject(
    number: str, code: str, name: str
) -> None:
    region = region_for(number)

    assert region is not None
    assert (region.code, region.country, region.name) == (code, "RU", name)
    assert region.latitude is not None
    assert region.longitude is not None


def test_moscow_oblast_zone_and_nenets_sub_zone_of_arkhangelsk() -> None:
    assert _code("+74961234567") == "RU-MOS"
    assert _code("+78182123456") == "RU-ARK"
    # Naryan-Mar is dialled inside Arkhangelsk's 818, as 818-53.
    assert _code("+78185312345") == "RU-NEN"


def test_range_naming_no_single_listed_subject_is_known_only_as_russia() -> None:
    # 949;...;Донецкая Народная Республика: not in ISO 3166-2:RU.
    region = region_for("+79491234567")

    assert region == PhoneRegion(
        code="RU", country="RU", name="Russia", latitude=None, longitude=None
    )


def test_valid_russian_number_outside_the_data_is_known_only_as_russia() -> None:
    # 336 (Baikonur) is a valid zone with no ISO 3166-2:RU subject.
    assert _code("+73362123456") == "RU"


def test_russian_numbers_resolve_without_the_geocoder() -> None:
    """The call path must not pay the geocoder's import (seconds) for Russian callees."""
    # A fresh interpreter: other tests in this process import the geocoder.
    script = (
        "import sys\n"
        "from vpbx_common.phoneregion import region_for\n"
        f"for number in {[MOSCOW_MOBILE, KAZAN_LANDLINE, '+73362123456', '+78005553535']!r}:\n"
        "    region_for(number)\n"
        "print('phonenumbers.geocoder' in sys.modules)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )

    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    "number",
    [
        "+78005553535",  # toll-free
        "+78091234567",  # premium
        "+70000000000",  # no such Russian code
        "+7913712345",  # a digit short
        "74951234567",  # no plus
        "+7 495 123-45-67",  # not E.164 yet
        "+7９１３７１２３４５６",  # full-width digits
        "",
        "junk",
        "+999123456789",  # no such country code
        "+80012345678",  # international freephone: no region
    ],
)
def test_invalid_unknown_and_non_geographic_numbers_have_no_region(number: str) -> None:
    assert region_for(number) is None


def test_foreign_numbers_use_the_geocoder_text_or_the_country() -> None:
    assert region_for("+493012345678") == PhoneRegion(
        code="DE:Berlin", country="DE", name="Berlin", latitude=None, longitude=None
    )
    assert _code("+4915112345678") == "DE"  # German mobile: the country only
    assert _code("+77011234567") == "KZ"  # +7 7xx is Kazakhstan's


def test_distance_between_subject_centres() -> None:
    moscow, novosibirsk, tomsk = (
        russia.subjects()[code] for code in ("RU-MOW", "RU-NVS", "RU-TOM")
    )

    assert distance_km(moscow, novosibirsk) == pytest.approx(2810, abs=15)
    assert distance_km(novosibirsk, tomsk) == pytest.approx(206, abs=5)
    assert distance_km(tomsk, tomsk) == 0


def test_distance_is_none_across_countries_or_without_coordinates() -> None:
    moscow = russia.subjects()["RU-MOW"]
    berlin = PhoneRegion(
        code="DE:Berlin", country="DE", name="Berlin", latitude=52.52, longitude=13.4
    )

    assert distance_km(moscow, berlin) is None
    assert distance_km(moscow, russia.RUSSIA) is None


def test_subject_table_has_every_iso_subject_once() -> None:
    subjects = russia.subjects()

    assert len(subjects) == 83
    assert all(code.startswith("RU-") for code in subjects)
    for region in subjects.values():
        assert region.latitude is not None
        assert region.longitude is not None
        assert 41 < region.latitude < 72
        assert 19 < region.longitude < 180


def test_shipped_ranges_are_sorted_and_do_not_overlap() -> None:
    ranges = russia.ranges()

    assert len(ranges.starts) == len(ranges.ends) == len(ranges.regions) > 10_000
    assert all(start <= end for start, end in zip(ranges.starts, ranges.ends, strict=True))
    assert all(
        end < next_start for end, next_start in zip(ranges.ends, ranges.starts[1:], strict=False)
    )
    assert {region.code for region in ranges.regions} >= set(russia.subjects())


@pytest.mark.parametrize(
    ("number", "home", "expected"),
    [
        ("+78005553535", "RU", DestinationClass.TOLL_FREE),
        ("+78091234567", "RU", DestinationClass.PREMIUM),
        ("+78031234567", "RU", DestinationClass.PREMIUM),
        ("+493012345678", "RU", DestinationClass.INTERNATIONAL),
        (MOSCOW_MOBILE, "RU", DestinationClass.DOMESTIC),
        (NOVOSIBIRSK_LANDLINE, "ru", DestinationClass.DOMESTIC),
        ("+77011234567", "RU", DestinationClass.INTERNATIONAL),  # Kazakhstan shares +7
        ("+18005551234", "RU", DestinationClass.INTERNATIONAL),  # free only inside the US
        ("+18005551234", "US", DestinationClass.TOLL_FREE),
        (MOSCOW_MOBILE, "DE", DestinationClass.INTERNATIONAL),
        # Premium wins over international: a German 0900 number from Russia.
        ("+499001234567", "RU", DestinationClass.PREMIUM),
        # A range phonenumbers does not know is classed by its country.
        ("+72001234567", "RU", DestinationClass.DOMESTIC),
    ],
)
def test_destination_class(number: str, home: str, expected: DestinationClass) -> None:
    assert destination_class(number, home) is expected


def test_destination_class_refuses_what_it_cannot_classify() -> None:
    with pytest.raises(InvalidPhoneNumber, match=r"not an E\.164 number"):
        destination_class("8 800 555-35-35", "RU")
    with pytest.raises(InvalidPhoneNumber, match="not a phone number"):
        destination_class("+999123456789", "RU")
    with pytest.raises(ValueError, match="not an ISO 3166-1 alpha-2"):
        destination_class(MOSCOW_MOBILE, "RUS")


def _tenant() -> LocalPresence:
    return LocalPresence([MOSCOW_LANDLINE, NOVOSIBIRSK_LANDLINE, KAZAN_LANDLINE])


@pytest.mark.parametrize(
    ("callee", "number", "region"),
    [
        (MOSCOW_MOBILE, MOSCOW_LANDLINE, "RU-MOW"),
        (NOVOSIBIRSK_MOBILE, NOVOSIBIRSK_LANDLINE, "RU-NVS"),
        (KAZAN_MOBILE, KAZAN_LANDLINE, "RU-TA"),
        (KAZAN_LANDLINE, KAZAN_LANDLINE, "RU-TA"),
    ],
)
def test_callee_in_a_region_of_the_tenant_sees_that_number(
    callee: str, number: str, region: str
) -> None:
    assert _tenant().choose(callee) == CallerIdChoice(
        number=number, reason="same-region", region=region
    )


def test_callee_elsewhere_sees_the_nearest_number() -> None:
    tenant = _tenant()

    for tomsk in (TOMSK_MOBILE, TOMSK_LANDLINE):
        assert tenant.choose(tomsk) == CallerIdChoice(
            number=NOVOSIBIRSK_LANDLINE, reason="nearest-region", region="RU-TOM"
        )
    assert tenant.choose(ST_PETERSBURG_MOBILE) == CallerIdChoice(
        number=MOSCOW_LANDLINE, reason="nearest-region", region="RU-SPE"
    )


def test_first_number_of_a_region_wins_and_ties_go_to_the_first() -> None:
    second_moscow = "+74997654321"
    tenant = LocalPresence([NOVOSIBIRSK_LANDLINE, MOSCOW_MOBILE, second_moscow])

    assert tenant.choose(MOSCOW_LANDLINE).number == MOSCOW_MOBILE
    # St Petersburg is nearest to Moscow; both Moscow numbers are equally near.
    assert tenant.choose(ST_PETERSBURG_LANDLINE).number == MOSCOW_MOBILE


def test_default_when_the_callee_region_is_unknown_or_has_no_coordinates() -> None:
    tenant = LocalPresence([MOSCOW_LANDLINE, NOVOSIBIRSK_LANDLINE], default=KAZAN_LANDLINE)

    assert tenant.choose("+78005553535") == CallerIdChoice(
        number=KAZAN_LANDLINE, reason="default", region=None
    )
    assert tenant.choose("junk") == CallerIdChoice(
        number=KAZAN_LANDLINE, reason="default", region=None
    )
    assert tenant.choose("+493012345678") == CallerIdChoice(
        number=KAZAN_LANDLINE, reason="default", region="DE:Berlin"
    )
    assert tenant.choose("+79491234567") == CallerIdChoice(
        number=KAZAN_LANDLINE, reason="default", region="RU"
    )


def test_default_is_the_first_number_unless_given() -> None:
    assert _tenant().default == MOSCOW_LANDLINE
    assert _tenant().choose("+78005553535").number == MOSCOW_LANDLINE
    assert LocalPresence([], default=KAZAN_LANDLINE).choose(MOSCOW_MOBILE) == CallerIdChoice(
        number=KAZAN_LANDLINE, reason="default", region="RU-MOW"
    )


def test_no_numbers_and_no_default_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one number or a default"):
        LocalPresence([])


def test_tenant_numbers_without_a_region_are_only_candidates_for_default() -> None:
    tenant = LocalPresence(["+78005553535", NOVOSIBIRSK_LANDLINE])

    assert tenant.choose(NOVOSIBIRSK_MOBILE).number == NOVOSIBIRSK_LANDLINE
    assert tenant.choose(TOMSK_MOBILE).reason == "nearest-region"
    assert tenant.choose("+493012345678") == CallerIdChoice(
        number="+78005553535", reason="default", region="DE:Berlin"
    )


def test_repeated_choices_for_one_region_are_identical() -> None:
    tenant = _tenant()

    first = tenant.choose(TOMSK_MOBILE)
    assert tenant.choose(TOMSK_LANDLINE) is first


def _code(number: str) -> str | None:
    region = region_for(number)
    return None if region is None else region.code
