"""Russian numbers' federal subjects from the shipped numbering-plan data.

The data files (``data/ru_ranges.tsv``, ``data/subjects.tsv``, see
``data/README.md``) are read on first use and kept for the life of the process:
the call path then resolves a Russian number with one bisect over integer
ranges, without phonenumbers' geocoder (seconds to import, and it knows Russian
mobile numbers only as "Russia").
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass
from importlib import resources

from vpbx_common.phoneregion.model import PhoneRegion

RUSSIA = PhoneRegion(code="RU", country="RU", name="Russia", latitude=None, longitude=None)
# National significant numbers of Russia are 10 digits; the first is 3, 4 or 8
# (geographic and service codes, "ABC") or 9 (mobile, "DEF"). +7 6xx and +7 7xx
# are Kazakhstan's.
_RUSSIAN_LEADING_DIGITS = frozenset("3489")
_E164_LENGTH = len("+7") + 10


def _data_text(name: str) -> str:
    return resources.files("vpbx_common.phoneregion").joinpath("data", name).read_text("utf-8")


def _rows(text: str) -> list[list[str]]:
    """Tab-separated rows of a data file, without comments and the header line."""
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return [line.split("\t") for line in lines[1:]]


@functools.cache
def subjects() -> dict[str, PhoneRegion]:
    """Russia's federal subjects by ISO 3166-2 code (``"RU-NVS"``)."""
    return {
        code: PhoneRegion(
            code=code,
            country="RU",
            name=name_en,
            latitude=float(latitude),
            longitude=float(longitude),
        )
        for code, name_en, _name_ru, _centre, latitude, longitude in _rows(
            _data_text("subjects.tsv")
        )
    }


@dataclass(frozen=True, slots=True)
class RussianRanges:
    """Sorted, non-overlapping national-number ranges and the region of each."""

    starts: list[int]
    ends: list[int]
    regions: list[PhoneRegion]

    def region_of(self, national_number: int) -> PhoneRegion | None:
        """The region of a 10-digit national number; None outside every range."""
        index = bisect.bisect_right(self.starts, national_number) - 1
        if index < 0 or national_number > self.ends[index]:
            return None
        return self.regions[index]


@functools.cache
def ranges() -> RussianRanges:
    """The shipped ranges, loaded once (about 14 000 of them, a few ms)."""
    by_code = subjects() | {RUSSIA.code: RUSSIA}
    starts: list[int] = []
    ends: list[int] = []
    regions: list[PhoneRegion] = []
    for start, end, code in _rows(_data_text("ru_ranges.tsv")):
        starts.append(int(start))
        ends.append(int(end))
        regions.append(by_code[code])
    return RussianRanges(starts=starts, ends=ends, regions=regions)


def national_number(e164: str) -> int | None:
    """The national number of a Russian E.164 number (``+7`` then 10 digits), else None.

    A plain string check, so a Russian callee costs no phonenumbers parse.
    """
    if len(e164) != _E164_LENGTH or not e164.startswith("+7"):
        return None
    digits = e164[2:]
    if digits[0] not in _RUSSIAN_LEADING_DIGITS or not (digits.isascii() and digits.isdigit()):
        return None
    return int(digits)
