"""Analytics over the CDR store: report queries as SQL text, and their results.

Pure SQL text and parsing, no I/O: the control API runs the queries with its async
``CdrReader.read(*queries)``, other callers with ``CdrStore.read(*queries)``; both hand the rows
to the report's ``parse()``. Every query is built through ``TenantScope`` (scope.py), the one
place tenant isolation is enforced. See docs/analytics.md.
"""

from vpbx_common.analytics.base import (
    KEY_SQL,
    REPORTS,
    CallDirection,
    GroupBy,
    Report,
    ReportResult,
    register,
)
from vpbx_common.analytics.calls import CallsReport, CallsResult, CallsRow
from vpbx_common.analytics.channels import ChannelRow, ChannelsReport, ChannelsResult, Funnel
from vpbx_common.analytics.clients import (
    ClientCalls,
    ClientsReport,
    ClientsResult,
    RepeatedNumber,
)
from vpbx_common.analytics.managers import ManagerRow, ManagersReport, ManagersResult
from vpbx_common.analytics.period import ReportPeriod, time_zone
from vpbx_common.analytics.scope import SOURCES, ScopedQuery, ScopeError, TenantScope
from vpbx_common.cdr.derived import CallAnalytics, Leg, derive_call

__all__ = [
    "KEY_SQL",
    "REPORTS",
    "SOURCES",
    "CallAnalytics",
    "CallDirection",
    "CallsReport",
    "CallsResult",
    "CallsRow",
    "ChannelRow",
    "ChannelsReport",
    "ChannelsResult",
    "ClientCalls",
    "ClientsReport",
    "ClientsResult",
    "Funnel",
    "GroupBy",
    "Leg",
    "ManagerRow",
    "ManagersReport",
    "ManagersResult",
    "RepeatedNumber",
    "Report",
    "ReportPeriod",
    "ReportResult",
    "ScopeError",
    "ScopedQuery",
    "TenantScope",
    "derive_call",
    "register",
    "time_zone",
]
