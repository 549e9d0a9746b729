"""`vpbx calls`: the route in the table and in --json, against an embedded chdb store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vpbx_cli.main import CALL_TABLE_HEADER, app, format_call_row, route_summary
from vpbx_common.cdr import CallRecord, Direction, EndReason, HangupBy, RouteStep, open_cdr_store

BASE_MS = 1_763_800_000_000

ROUTE = (
    RouteStep(0.0, "group:sales", "skipped", "102", "on a call"),
    RouteStep(20.004, "group:sales", "no-answer", None, "nobody answered in 20 s"),
    RouteStep(20.02, "voicemail:sales", "recorded", None, "message of 31 s"),
)


def voicemail(call_id: str, start_ms: int, route: tuple[RouteStep, ...]) -> CallRecord:
    return CallRecord.build(
        call_id=call_id,
        tenant="acme",
        city="nsk",
        node="acme-nsk-0",
        direction=Direction.INBOUND,
        caller="+79130000001",
        dialled="+73832000000",
        start_ms=start_ms,
        answer_ms=None,
        end_ms=start_ms + 52_000,
        end_reason=EndReason.VOICEMAIL,
        sip_status=200,
        hangup_by=HangupBy.CALLER,
        route=route,
    )


def test_route_summary_is_the_step_count_and_the_last_step() -> None:
    assert route_summary(voicemail("a", BASE_MS, ROUTE)) == "3: voicemail:sales recorded"
    assert route_summary(voicemail("b", BASE_MS, ROUTE[:1])) == "1: group:sales skipped 102"
    assert route_summary(voicemail("c", BASE_MS, ())) == "-"
    long = voicemail("d", BASE_MS, (RouteStep(1.0, "plan:" + "x" * 100, "fell-through"),))
    assert len(route_summary(long)) == 48


def test_calls_prints_the_route(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VPBX_CLICKHOUSE_URL", raising=False)
    records = [voicemail("vm-1", BASE_MS, ROUTE), voicemail("vm-2", BASE_MS + 1, ())]
    with open_cdr_store(None, tmp_path / "chdb") as store:
        store.migrate()
        store.insert(records)
    runner = CliRunner()
    as_json = runner.invoke(app, ["calls", "--json", "--var-dir", str(tmp_path)])
    assert as_json.exit_code == 0, as_json.output
    printed = json.loads(as_json.output)
    assert [CallRecord.from_json(item) for item in printed] == records[::-1]
    assert printed[1]["route"][0] == {
        "after_s": 0.0,
        "subject": "group:sales",
        "outcome": "skipped",
        "member": "102",
        "detail": "on a call",
    }
    table = runner.invoke(app, ["calls", "--var-dir", str(tmp_path)])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0] == CALL_TABLE_HEADER
    assert lines[1:] == [format_call_row(record) for record in records[::-1]]
    assert lines[2].endswith("voicemail (200)    3: voicemail:sales recorded")
    assert lines[1].endswith("voicemail (200)    -")
