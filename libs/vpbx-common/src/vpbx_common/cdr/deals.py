"""A deal's step as the analytics store keeps it: the CRM's deal history, flattened.

The CRM writes one ``DealEvent`` per change of a deal into its outbox (in the transaction of the
change) and ships them to ClickHouse ``deal_events`` (migration 8). Everything a report needs is
on the event itself (the ad-channel label, the deal's owner, the amount at that moment), so the
channels and managers reports never join with the CRM's PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from decimal import ROUND_HALF_EVEN, Decimal
from enum import StrEnum
from typing import Any, Self

# ClickHouse 18.16 has Decimal only behind a setting and chdb and the driver disagree on how
# it travels, so money is an Int64 of hundredths (kopecks, cents): the CRM keeps two decimals.
MINOR_UNITS_PER_UNIT = 100
_MINOR = Decimal(1) / MINOR_UNITS_PER_UNIT
_INT64_MAX = (1 << 63) - 1


class DealEventKind(StrEnum):
    CREATED = "created"
    STAGE_CHANGED = "stage-changed"  # from one open stage to another
    WON = "won"
    LOST = "lost"
    # Back from a won or lost stage to an open one: the win or loss before it no longer holds.
    REOPENED = "reopened"


def minor_units(amount: Decimal) -> int:
    """An amount in hundredths (1500.5 -> 150050), rounded half to even like the CRM's column."""
    units = int((amount / _MINOR).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))
    if abs(units) > _INT64_MAX:
        raise ValueError(f"amount {amount} does not fit the store's Int64 of hundredths")
    return units


def from_minor_units(units: int) -> Decimal:
    return (Decimal(units) * _MINOR).quantize(_MINOR)


@dataclass(frozen=True, slots=True)
class DealEvent:
    """One step of one deal. ``event_id`` is unique per step (the CRM's history row id), so a
    batch shipped twice collapses to one row per step in the store."""

    tenant: str
    event_id: str
    deal_id: str
    kind: DealEventKind
    at_ms: int
    # Ids are text: the CRM's UUIDs, '' for none.
    contact_id: str = ""
    # The ad channel the deal came by (the deal's source label, else its contact's), at the
    # time of the step; '' for none.
    label: str = ""
    stage: str = ""  # the stage the deal is in after the step (id)
    pipeline: str = ""  # id
    amount: int | None = None  # hundredths of `currency`; None: the deal has no amount
    currency: str = ""
    user_id: str = ""  # who made the step ('' for an API key or the system)
    owner_user_id: str = ""  # the deal's responsible manager after the step

    def __post_init__(self) -> None:
        for name in ("tenant", "event_id", "deal_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name!r} must be a non-empty string")
        for name in ("contact_id", "label", "stage", "pipeline", "currency", "user_id"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"{name!r} must be str")
        if not isinstance(self.owner_user_id, str):
            raise ValueError("'owner_user_id' must be str")
        if not isinstance(self.kind, DealEventKind):
            raise ValueError(f"'kind' must be one of {', '.join(DealEventKind)}")
        if isinstance(self.at_ms, bool) or not isinstance(self.at_ms, int) or self.at_ms < 0:
            raise ValueError("'at_ms' must be a non-negative integer")
        amount = self.amount
        if amount is not None and (
            isinstance(amount, bool) or not isinstance(amount, int) or abs(amount) > _INT64_MAX
        ):
            raise ValueError("'amount' must be an Int64 of hundredths or None")

    def to_json(self) -> dict[str, Any]:
        fields = asdict(self)
        fields["kind"] = self.kind.value
        return fields

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        """The event from its JSON form (the CRM outbox's payload); ValueError names what is
        wrong with a malformed one."""
        if not isinstance(data, Mapping):
            raise ValueError("a deal event must be a JSON object")
        try:
            kind = DealEventKind(str(data.get("kind")))
        except ValueError:
            raise ValueError(f"'kind' must be one of {', '.join(DealEventKind)}") from None
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown deal event fields: {', '.join(unknown)}")
        missing = sorted({"tenant", "event_id", "deal_id", "at_ms"} - set(data))
        if missing:
            raise ValueError(f"missing deal event fields: {', '.join(missing)}")
        return cls(**{**data, "kind": kind})
