"""Call detail records: the record, its ClickHouse schema and the stores that keep it."""

from vpbx_common.cdr.deals import DealEvent, DealEventKind, from_minor_units, minor_units
from vpbx_common.cdr.migrations import RECORD_COLUMNS
from vpbx_common.cdr.record import (
    MAX_ROUTE_STEPS,
    CallRecord,
    Direction,
    EndReason,
    HangupBy,
    OpenCall,
    Route,
    RouteStep,
    bounded_route,
    dumps_route,
    loads_route,
    now_ms,
)
from vpbx_common.cdr.store import (
    CdrQuery,
    CdrStore,
    CdrStoreError,
    CdrStoreUnavailableError,
    open_cdr_store,
    record_from_row,
)

__all__ = [
    "MAX_ROUTE_STEPS",
    "RECORD_COLUMNS",
    "CallRecord",
    "CdrQuery",
    "CdrStore",
    "CdrStoreError",
    "CdrStoreUnavailableError",
    "DealEvent",
    "DealEventKind",
    "Direction",
    "EndReason",
    "HangupBy",
    "OpenCall",
    "Route",
    "RouteStep",
    "bounded_route",
    "dumps_route",
    "from_minor_units",
    "loads_route",
    "minor_units",
    "now_ms",
    "open_cdr_store",
    "record_from_row",
]
