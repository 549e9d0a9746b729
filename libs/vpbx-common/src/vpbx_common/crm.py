"""What the CRM tells the rest of the platform about a caller: the lookup contract.

The media node's ``crm-lookup`` route step asks the CRM service who is calling::

    GET {VPBX_CRM_URL}/internal/v1/lookup/{tenant}?phone=%2B79161234567
    Authorization: Bearer <the platform's service token>

    200 {"contact": {"id": ..., "name": ..., "category": ..., "owner_user_id": ..., "vip": ...}}
    200 {"contact": null}        # nobody in the tenant's CRM has that phone

The answer is read live from the CRM's store on every call (no cache on either side), so a
client reassigned a second ago routes to the new manager. The same ``CrmContact`` travels
on the node's call events (``CallEvent.contact``) and in the CDR, so no consumer needs to
ask the CRM again what it knew when the call came in.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

LOOKUP_PATH = "/internal/v1/lookup/{tenant}"

# The built-in categories; a tenant may use its own (a lowercase slug).
BUILTIN_CATEGORIES = ("client", "supplier", "partner", "other")
# One spelling for the CRM's contacts and the route plans' category targets.
CATEGORY_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class CrmContactError(ValueError):
    """A document that is not a contact summary; the message names the field."""


@dataclass(frozen=True, slots=True)
class CrmContact:
    """A contact as routing and call events see it."""

    id: str
    name: str
    category: str
    owner_user_id: str | None = None
    vip: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> CrmContact:
        """The contact in a decoded JSON object; CrmContactError names what is wrong."""
        if not isinstance(data, dict):
            raise CrmContactError("contact: not an object")
        values: dict[str, Any] = {}
        for name in ("id", "name", "category"):
            value = data.get(name)
            if not isinstance(value, str) or (name != "name" and not value):
                raise CrmContactError(f"contact.{name}: not a non-empty string")
            values[name] = value
        owner = data.get("owner_user_id")
        if owner is not None and (not isinstance(owner, str) or not owner):
            raise CrmContactError("contact.owner_user_id: not a string or null")
        vip = data.get("vip", False)
        if not isinstance(vip, bool):
            raise CrmContactError("contact.vip: not a boolean")
        return cls(owner_user_id=owner, vip=vip, **values)
