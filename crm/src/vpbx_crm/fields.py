"""Field types shared by the CRM's request and response bodies."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator, Field, StringConstraints

from vpbx_common.crm import CATEGORY_PATTERN

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Email = Annotated[
    str,
    StringConstraints(strip_whitespace=True, max_length=254, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$"),
]
# A phone as people type it; the service turns it into E.164 (and names a bad one).
PhoneText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=40)]
Category = Annotated[
    str,
    Field(
        pattern=CATEGORY_PATTERN.pattern,
        description="client, supplier, partner, other, or the tenant's own (a lowercase slug)",
        examples=["client"],
    ),
]
Label = Annotated[str, StringConstraints(strip_whitespace=True, max_length=63)]

CustomValue = str | int | float | bool | None
_CUSTOM_KEY = re.compile(r"^[a-z][a-z0-9_]{0,39}$")


def _bounded_custom(values: dict[str, CustomValue]) -> dict[str, CustomValue]:
    if len(values) > 50:
        raise ValueError("at most 50 custom fields")
    for key, value in values.items():
        if not _CUSTOM_KEY.fullmatch(key):
            raise ValueError(f"{key!r}: a custom field's name is a lowercase slug (a-z, 0-9, _)")
        if isinstance(value, str) and len(value) > 1000:
            raise ValueError(f"{key}: at most 1000 characters")
    return values


CustomFields = Annotated[
    dict[str, CustomValue],
    AfterValidator(_bounded_custom),
    Field(
        description="the tenant's own fields, e.g. orders and debt",
        examples=[{"orders": 12, "debt": 15000.5}],
    ),
]
