"""The report period (local days, DST) and the tenant scope every analytics query goes through."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from vpbx_common.analytics import REPORTS, ReportPeriod, ScopedQuery, ScopeError, TenantScope


def utc_ms(*parts: int) -> int:
    return int(datetime(*parts, tzinfo=UTC).timestamp()) * 1000  # type: ignore[misc]


def test_a_period_of_days_runs_from_local_midnight_to_the_midnight_after_the_last_day() -> None:
    moscow = ReportPeriod.from_dates(date(2025, 3, 1), date(2025, 3, 31), "Europe/Moscow")
    assert moscow.start_ms == utc_ms(2025, 2, 28, 21)  # UTC+3 all year
    assert moscow.end_ms == utc_ms(2025, 3, 31, 21)
    one_day = ReportPeriod.from_dates(date(2025, 3, 9), date(2025, 3, 9), "America/New_York")
    assert one_day.start_ms == utc_ms(2025, 3, 9, 5)  # EST, UTC-5
    assert one_day.end_ms == utc_ms(2025, 3, 10, 4)  # EDT from 02:00 that day, UTC-4
    assert one_day.end_ms - one_day.start_ms == 23 * 3_600_000  # the day the clocks go forward
    autumn = ReportPeriod.from_dates(date(2025, 11, 2), date(2025, 11, 2), "America/New_York")
    assert autumn.end_ms - autumn.start_ms == 25 * 3_600_000


@pytest.mark.parametrize(
    ("first", "last", "tz", "message"),
    [
        (date(2025, 3, 2), date(2025, 3, 1), "UTC", "before its first day"),
        (date(2025, 3, 1), date(2025, 3, 2), "Mars/Olympus", "not a known IANA time zone"),
        (date(2025, 3, 1), date(2025, 3, 2), "", "tz must be"),
        (date(2025, 3, 1), date(2025, 3, 2), "../etc/passwd", "tz"),
        (date(2101, 1, 1), date(2101, 1, 2), "UTC", "outside 1970..2100"),
    ],
)
def test_a_bad_period_is_refused_with_the_reason(
    first: date, last: date, tz: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        ReportPeriod.from_dates(first, last, tz)


def test_a_period_must_end_after_it_starts() -> None:
    with pytest.raises(ValueError, match="must end after it starts"):
        ReportPeriod(1_000, 1_000, "UTC")
    with pytest.raises(ValueError, match="start_ms must be an integer"):
        ReportPeriod(True, 1_000, "UTC")  # type: ignore[arg-type]


PERIOD = ReportPeriod(1_000, 2_000, "UTC")


def test_each_source_becomes_the_tenants_rows() -> None:
    query = TenantScope("acme").query(
        "SELECT count() FROM {calls} WHERE caller = {caller}", {"caller": "+7913"}, period=PERIOD
    )
    assert isinstance(query, ScopedQuery)
    assert query.tenant == "acme"
    sql = query.render()
    assert "FROM cdr FINAL WHERE tenant = 'acme' AND start_ms >= 1000 AND start_ms < 2000" in sql
    assert sql.endswith("WHERE caller = '+7913'")
    since = TenantScope("acme").query("SELECT 1 FROM {legs_since}", period=PERIOD).render()
    assert "FROM call_legs FINAL WHERE tenant = 'acme' AND start_ms >= 1000)" in since
    every = TenantScope("acme").query("SELECT 1 FROM {calls_all}").render()
    assert "FROM cdr FINAL WHERE tenant = 'acme')" in every


def test_a_hostile_tenant_name_stays_a_value() -> None:
    sql = TenantScope("x' OR '1'='1").query("SELECT 1 FROM {calls_all}").render()
    assert "tenant = 'x\\' OR \\'1\\'=\\'1'" in sql


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("SELECT count() FROM cdr", "names 'cdr'"),
        ("SELECT count() FROM {calls} AS c JOIN call_legs USING call_id", "names 'call_legs'"),
        ("SELECT * FROM Deal_Events", "names 'Deal_Events'"),
        ("SELECT * FROM system.tables", "names 'system.'"),
        ("SELECT * FROM schema_migrations", "names 'schema_migrations'"),
        ("SELECT * FROM other_db.calls_copy", "reads 'other_db.calls_copy' after FROM"),
        ("SELECT 1 FROM {calls} AS c ANY LEFT JOIN remote('h', t) USING x", "after JOIN"),
        ("SELECT 1 FROM numbers(10)", r"reads 'numbers\(10\)' after FROM"),
        ("SELECT 1", "reads no scoped source"),
        ("SELECT {scope_tenant} FROM {calls_all}", "the scope's own"),
        ("SELECT 1 FROM {customers}", "reads '{customers}'"),
    ],
)
def test_a_template_that_could_leave_the_tenant_is_refused(template: str, message: str) -> None:
    with pytest.raises(ScopeError, match=message):
        TenantScope("acme").query(template, period=PERIOD)


def test_scope_parameters_and_a_missing_period_are_refused() -> None:
    with pytest.raises(ScopeError, match="starting with 'scope_'"):
        TenantScope("acme").query("SELECT 1 FROM {calls}", {"scope_tenant": "other"}, period=PERIOD)
    with pytest.raises(ScopeError, match="has no period"):
        TenantScope("acme").query("SELECT 1 FROM {calls}")
    with pytest.raises(ScopeError, match="needs a tenant"):
        TenantScope("")


def test_every_registered_report_builds_only_scoped_queries_of_its_tenant() -> None:
    assert {"calls", "clients"} <= set(REPORTS)
    for name, report_class in REPORTS.items():
        for tenant in ("acme", "globex"):
            report = report_class(TenantScope(tenant), PERIOD)
            assert report.name == name
            queries = report.queries()
            assert queries
            for query in queries:
                assert isinstance(query, ScopedQuery)
                assert query.tenant == tenant
                sql = query.render()
                assert f"tenant = '{tenant}'" in sql
                other = "globex" if tenant == "acme" else "acme"
                assert other not in sql
