"""`make bench-analytics` scaled down to a few thousand calls on chdb: it runs end to end.

A smoke test, not a benchmark: no figure is compared with a goal. It checks that the bench
ships every generated call through the spool, fills up to --cdrs, prints a latency line for
every registered report (both tenants, both periods), writes its results and removes its
data dir. The bench runs in its own process: chdb binds one data dir per process.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from loadtest.bench_analytics import CallMaker, plan_tenants, tenant_name

from vpbx_common.analytics import REPORTS
from vpbx_common.cdr import CallRecord, Direction, EndReason
from vpbx_common.cdr.derived import derive_call

ROOT = Path(__file__).resolve().parents[1]


def test_tenants_are_skewed_and_add_up() -> None:
    tenants = plan_tenants(100_000, 100)
    sizes = [tenant.expected_calls for tenant in tenants]
    assert abs(sum(sizes) - 100_000) < 100
    assert sizes == sorted(sizes, reverse=True)
    # A few big tenants, many small: the biggest has ~100x the median's calls.
    assert sizes[0] > 50 * sizes[50]
    assert tenants[0].name == tenant_name(1)


def test_generated_calls_have_the_shapes_reports_count() -> None:
    maker = CallMaker(plan_tenants(50_000, 20), seed=3)
    calls: list[CallRecord] = [maker.next() for _ in range(4000)]
    assert len({call.call_id for call in calls}) == len(calls)
    inbound = [call for call in calls if call.direction is Direction.INBOUND]
    derived = [derive_call(call) for call in inbound]
    abandoned = {d.abandoned_in for d in derived} - {""}
    assert abandoned == {"queue", "ivr", "ring"}
    assert any(d.queue_wait_ms > 0 for d in derived)
    assert any(d.ivr_choice for d in derived)
    assert any(call.end_reason is EndReason.VOICEMAIL for call in inbound)
    assert {call.label for call in inbound} > {""}
    assert any(call.contact_vip for call in inbound)
    assert any(call.contact_id for call in inbound)
    assert any(not call.contact_id for call in inbound)
    assert {call.direction for call in calls} == set(Direction)
    # Every call goes through the spool's own round trip unchanged.
    assert all(CallRecord.loads(call.dumps()) == call for call in calls[:200])


def test_scaled_down_bench_prints_every_report(tmp_path: Path) -> None:
    work = tmp_path / "work"
    results = tmp_path / "results.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "loadtest.bench_analytics",
            "--cdrs=3000",
            "--tenants=20",
            "--ship-cdrs=1500",
            "--engines=chdb",
            "--repeats=1",
            "--max-seconds-per-case=0",
            "--profile-cdrs=200",
            "--no-optimize",
            f"--work-dir={work}",
            f"--results={results}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    out = completed.stdout
    assert re.search(r"ingest chdb: 1500 calls \(\d+ legs\) through the shipper", out), out
    assert re.search(r"fill chdb: 1 copies .* -> 3000 calls", out), out
    for name in REPORTS:
        for tenant in (tenant_name(1), tenant_name(11)):
            for days in (30, 365):
                pattern = rf"report chdb\s+{name}\s+tenant {tenant} .*{days}d: p50 +[\d.]+ ms"
                assert re.search(pattern, out), f"no figure for {name} {tenant} {days}d:\n{out}"
    figures = json.loads(results.read_text())["engines"]["chdb"]
    assert figures["ingest"]["records"] == 1500
    assert figures["fill"]["calls"] == 3000
    assert len(figures["reports"]) == 4 * len(REPORTS)
    assert not work.exists()  # the data dir is removed
