"""The calls report: how many calls, answered, missed and never called back, how fast."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from vpbx_common.analytics.base import (
    KEY_PRELUDE,
    KEY_SQL,
    CallDirection,
    GroupBy,
    Report,
    optional_ratio,
    real_number,
    register,
    seconds,
)
from vpbx_common.analytics.period import ReportPeriod
from vpbx_common.analytics.scope import ScopedQuery, TenantScope
from vpbx_common.cdr.store import Row

DEFAULT_SERVICE_LEVEL_S = 20
MAX_SERVICE_LEVEL_S = 3600


@dataclass(frozen=True, slots=True)
class CallsRow:
    """The figures of one key (or the totals, key 'total'); see docs/analytics.md."""

    key: str
    total: int
    answered: int
    missed: int  # not answered by a person: voicemail, cancelled, no answer, busy, ...
    missed_callable: int  # missed inbound calls from a real number
    missed_not_called_back: int  # ...with no later answered call connecting that number
    called_back: int
    callback_p50_s: float | None  # start of the missed call -> start of the first callback
    answer_p50_s: float | None  # start -> answer, over answered calls
    answer_p90_s: float | None
    answered_within_sl: int  # answered within service_level_s of the start
    service_level: float | None  # answered_within_sl / total
    abandoned_in_queue: int
    abandoned_in_ivr: int
    abandoned_in_ring: int
    voicemail: int
    queued: int  # calls that waited in a queue
    queue_wait_s: float  # their time in queues, together
    talk_s: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class CallsResult:
    group_by: GroupBy
    direction: CallDirection
    service_level_s: int
    rows: tuple[CallsRow, ...]  # sorted by key
    totals: CallsRow

    def to_json(self) -> dict[str, Any]:
        return {
            "group_by": self.group_by.value,
            "direction": self.direction.value,
            "service_level_s": self.service_level_s,
            "rows": [row.to_json() for row in self.rows],
            "totals": self.totals.to_json(),
        }


# One row per call of the period, with the first later answered call connecting a missed
# caller's number. {calls_since} reaches past the period's end, up to now: a call missed on the
# last evening and returned the next morning was called back. 18.16 joins only by equality
# (USING), so the callbacks are an array per number, searched with arrayFirst.
_PER_CALL = """
SELECT
    {key} AS key,
    start_ms,
    isNotNull(answer_ms) AS answered,
    ring_ms,
    talk_ms,
    end_reason,
    abandoned_in,
    queue,
    queue_wait_ms,
    callable,
    arrayFirst(t -> t > start_ms, callback_starts) AS callback_ms
FROM (
    SELECT *, {prelude},
        if(direction = 'inbound' AND isNull(answer_ms) AND {real_caller}, caller, '') AS number,
        number != '' AS callable
    FROM {{calls}}
    WHERE {direction}
) AS c
ANY LEFT JOIN (
    SELECT number, arraySort(groupArray(start_ms)) AS callback_starts
    FROM (
        SELECT if(direction = 'outbound', dialled, caller) AS number, start_ms
        FROM {{calls_since}}
        WHERE isNotNull(answer_ms) AND direction IN ('inbound', 'outbound')
    )
    WHERE number != ''
    GROUP BY number
) AS cb USING number
"""

_FIGURES = """
    count() AS total,
    sum(answered) AS answered_n,
    countIf(callable) AS missed_callable,
    countIf(callable AND callback_ms = 0) AS not_called_back,
    quantileExactIf(0.5)(callback_ms - start_ms, callable AND callback_ms > 0) AS callback_p50,
    quantilesExactIf(0.5, 0.9)(ring_ms, answered = 1) AS answer_q,
    countIf(answered = 1 AND ring_ms <= {sl_ms}) AS within_sl,
    countIf(answered = 0 AND abandoned_in = 'queue') AS in_queue,
    countIf(answered = 0 AND abandoned_in = 'ivr') AS in_ivr,
    countIf(answered = 0 AND abandoned_in = 'ring') AS in_ring,
    countIf(end_reason = 'voicemail') AS voicemail,
    countIf(queue != '') AS queued,
    sum(queue_wait_ms) AS queue_wait,
    sum(talk_ms) AS talk
"""


def _int(value: Any) -> int:
    # JSON output quotes 64-bit integers (chdb's default); a quantile may come back as a float.
    return int(float(value)) if isinstance(value, str) and "." in value else int(value)


@register("calls")
class CallsReport(Report):
    def __init__(
        self,
        scope: TenantScope,
        period: ReportPeriod,
        *,
        group_by: GroupBy = GroupBy.DAY,
        direction: CallDirection = CallDirection.INBOUND,
        service_level_s: int = DEFAULT_SERVICE_LEVEL_S,
    ) -> None:
        super().__init__(scope, period)
        self.group_by = GroupBy(group_by)
        self.direction = CallDirection(direction)
        if (
            isinstance(service_level_s, bool)
            or not isinstance(service_level_s, int)
            or not 0 <= service_level_s <= MAX_SERVICE_LEVEL_S
        ):
            raise ValueError(
                f"service_level_s must be an integer of seconds, 0..{MAX_SERVICE_LEVEL_S}"
            )
        self.service_level_s = service_level_s

    def _per_call(self) -> str:
        return _PER_CALL.format(
            key=KEY_SQL[self.group_by],
            prelude=KEY_PRELUDE,
            real_caller=real_number("caller"),
            direction=self.direction.sql,
        )

    def queries(self) -> tuple[ScopedQuery, ...]:
        # One scan for the rows and the totals: each call is counted twice, under its key
        # (is_total 0) and under the totals (is_total 1). Two queries read the calls and
        # their callbacks twice over (1.8-4x slower on the server: docs/benchmarks.md);
        # WITH TOTALS would do it too, but chdb's JSON output is read without "totals".
        per_call = self._per_call()
        both = (
            "SELECT is_total, if(is_total = 1, 'total', key) AS report_key,"  # noqa: S608
            f" {_FIGURES} FROM (SELECT *, arrayJoin([0, 1]) AS is_total FROM ({per_call}))"
            " GROUP BY is_total, report_key ORDER BY is_total, report_key"
        )
        params = {"tz": self.period.tz, "sl_ms": self.service_level_s * 1000}
        return (self.query(both, **params),)

    def parse(self, rows: list[list[Row]]) -> CallsResult:
        [both] = rows
        by_key = [row[1:] for row in both if _int(row[0]) == 0]
        totals = [row[1:] for row in both if _int(row[0]) == 1]
        return CallsResult(
            group_by=self.group_by,
            direction=self.direction,
            service_level_s=self.service_level_s,
            rows=tuple(_row(row) for row in by_key),
            totals=_row(totals[0]) if totals else _row(("total", *([0] * 14))),
        )


def _row(row: Row) -> CallsRow:
    (
        key,
        total,
        answered,
        missed_callable,
        not_called_back,
        callback_p50,
        answer_q,
        within_sl,
        in_queue,
        in_ivr,
        in_ring,
        voicemail,
        queued,
        queue_wait,
        talk,
    ) = row
    total, answered = _int(total), _int(answered)
    missed_callable, not_called_back = _int(missed_callable), _int(not_called_back)
    called_back = missed_callable - not_called_back
    quantiles = list(answer_q) if answer_q else []
    has_answers = answered > 0 and len(quantiles) == 2
    return CallsRow(
        key=str(key),
        total=total,
        answered=answered,
        missed=total - answered,
        missed_callable=missed_callable,
        missed_not_called_back=not_called_back,
        called_back=called_back,
        callback_p50_s=seconds(_int(callback_p50)) if called_back else None,
        answer_p50_s=seconds(_int(quantiles[0])) if has_answers else None,
        answer_p90_s=seconds(_int(quantiles[1])) if has_answers else None,
        answered_within_sl=_int(within_sl),
        service_level=optional_ratio(_int(within_sl), total),
        abandoned_in_queue=_int(in_queue),
        abandoned_in_ivr=_int(in_ivr),
        abandoned_in_ring=_int(in_ring),
        voicemail=_int(voicemail),
        queued=_int(queued),
        queue_wait_s=seconds(_int(queue_wait)),
        talk_s=seconds(_int(talk)),
    )
