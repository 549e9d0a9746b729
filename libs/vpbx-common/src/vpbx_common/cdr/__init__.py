"""Call detail records: the record, its ClickHouse schema and the stores that keep it."""

from vpbx_common.cdr.record import CallRecord, Direction, EndReason, HangupBy, OpenCall, now_ms
from vpbx_common.cdr.store import CdrStore, CdrStoreError, CdrStoreUnavailableError, open_cdr_store

__all__ = [
    "CallRecord",
    "CdrStore",
    "CdrStoreError",
    "CdrStoreUnavailableError",
    "Direction",
    "EndReason",
    "HangupBy",
    "OpenCall",
    "now_ms",
    "open_cdr_store",
]
