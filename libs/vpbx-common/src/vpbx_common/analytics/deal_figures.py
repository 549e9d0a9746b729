"""What the channels and managers reports share: first calls, won deals, money.

Definitions (docs/analytics.md repeats them for readers of the reports):

- A caller's *first call* is their earliest inbound call in the tenant's whole history (only
  real numbers count, see ``real_number``); it is a first call of the period when it started
  in the period. Its label and the extension that answered it are that call's.
- A deal is *won in the period* when the last of its closing steps (won, lost, reopened) that
  happened in the period is a win: a deal won and reopened within the period is not won, one
  won, reopened and won again is won once. The label, closer (``user_id``), responsible manager
  (``owner_user_id``) and amount are those of that winning step.
- Money is kept in hundredths (Int64) in the store and given as Decimal here; amounts of
  different currencies are never added together.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from vpbx_common.analytics.base import real_number
from vpbx_common.cdr.deals import from_minor_units

CENT = Decimal("0.01")

# First inbound calls of real numbers over the tenant's whole history, one row per caller:
# when, on which label, who answered, which contact the CRM knew. argMin picks the values of
# the earliest call. The outer query keeps the period's ({from_ms}, {to_ms}).
FIRST_CALLS = f"""
SELECT caller, first_ms, first_label, first_answered_by
FROM (
    SELECT caller,
        min(start_ms) AS first_ms,
        argMin(label, start_ms) AS first_label,
        argMin(answered_by, start_ms) AS first_answered_by
    FROM {{calls_all}}
    WHERE direction = 'inbound' AND {real_number("caller")}
    GROUP BY caller
)
WHERE first_ms >= {{from_ms}} AND first_ms < {{to_ms}}
"""  # noqa: S608

# Deals won in the period, one row per deal: the values of its last closing step, which is a
# win. ifNull: an aggregate over a Nullable column skips NULL rows (the -Null combinator), which
# would take an older step's amount for a win without one.
WON_DEALS = """
SELECT deal_id, label, user_id, owner_user_id, amount, currency
FROM (
    SELECT deal_id,
        argMax(toString(kind), at_ms) AS last_kind,
        argMax(label, at_ms) AS label,
        argMax(user_id, at_ms) AS user_id,
        argMax(owner_user_id, at_ms) AS owner_user_id,
        argMax(ifNull(amount, 0), at_ms) AS amount,
        argMax(currency, at_ms) AS currency
    FROM {deals}
    WHERE kind IN ('won', 'lost', 'reopened')
    GROUP BY deal_id
)
WHERE last_kind = 'won'
"""


def as_int(value: Any) -> int:
    """A count or sum as the engines return it (JSON output may quote 64-bit integers)."""
    return int(value)


def money(hundredths: int) -> Decimal:
    return from_minor_units(hundredths)


def money_json(value: Decimal | None) -> str | None:
    """Money in answers: a string with two decimals ("1500.00"), like the CRM's amounts."""
    return None if value is None else str(value.quantize(CENT))


def amounts_json(amounts: Mapping[str, Decimal]) -> dict[str, str]:
    return {currency: str(amount.quantize(CENT)) for currency, amount in sorted(amounts.items())}


def cost(spend: Decimal, count: int) -> Decimal | None:
    """spend / count to the cent; None when there is nothing to divide by."""
    return None if count == 0 else (spend / count).quantize(CENT)
