"""The workspace's reports page and the client card's statistics tab in a real browser.

A small known set of the demo tenant's CDRs (plus one call outside the period and one of
another tenant) is written into the CDR store the shared platform uses (its chdb, through
CdrStore.insert as the nodes' shipper writes, in a process of its own since chdb serves one
data dir per process). The demo's admin opens /reports for that week in Moscow time: the
figures a user reads equal the set's counts made here in Python, the chart draws the
answered and missed series per day (a call at 00:30 Moscow lands on its Moscow day), the
grouping changes the rows, and the XLSX export downloads a workbook openpyxl reads with the
expected header and totals; the ad-channel and manager sections show the same week. The
card's statistics tab counts a client's calls from the CRM.
Screenshots are kept under the test's tmp dir and $VPBX_TEST_ARTIFACTS.
"""

from __future__ import annotations

import datetime as dt
import json
import secrets
import subprocess
import sys
import time
import zoneinfo
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openpyxl
import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from tests.services.chromium import artifact, chromium, log_in, watch_console
from tests.services.platform import REPO, RunningPlatform
from vpbx_common.cdr import CallRecord, Direction, EndReason, HangupBy
from vpbx_common.events import CALL_EVENTS_STREAM, CallEvent, CallEventType, stream_fields

pytestmark = pytest.mark.integration

ADMIN = ("admin@acme.vpbx.local", "acme-admin-secret")
WEB_BUILD = REPO / "crm" / "web" / "dist" / "index.html"
TIMEOUT_MS = 15_000
MSK = zoneinfo.ZoneInfo("Europe/Moscow")
FIRST, LAST = dt.date(2025, 3, 10), dt.date(2025, 3, 16)
NUMBER = "+74950000001"


@dataclass(frozen=True)
class Call:
    call_id: str
    local: dt.datetime
    caller: str
    answered_by: str = ""
    ring_s: int = 5
    talk_s: int = 0
    contact: str = ""
    category: str = ""
    vip: bool = False
    tenant: str = "acme"

    @property
    def answered(self) -> bool:
        return bool(self.answered_by)

    def record(self) -> CallRecord:
        start_ms = int(self.local.timestamp() * 1000)
        answer_ms = start_ms + self.ring_s * 1000 if self.answered else None
        return CallRecord.build(
            call_id=self.call_id,
            tenant=self.tenant,
            city="msk",
            node=f"{self.tenant}-msk-web",
            direction=Direction.INBOUND,
            caller=self.caller,
            dialled=NUMBER,
            label="yandex-direct",
            answered_by=self.answered_by,
            start_ms=start_ms,
            answer_ms=answer_ms,
            end_ms=start_ms + (self.ring_s + self.talk_s) * 1000,
            end_reason=EndReason.COMPLETED if self.answered else EndReason.NO_ANSWER,
            sip_status=200 if self.answered else 480,
            hangup_by=HangupBy.CALLER,
            contact_id=self.contact,
            contact_category=self.category,
            contact_vip=self.vip,
        )


def msk(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2025, 3, day, hour, minute, tzinfo=MSK)


def caller() -> str:
    # Numbers of this run only: a callback found among other tests' calls would change the
    # "never called back" figure.
    return f"+7913{secrets.randbelow(10**7):07d}"


IN_PERIOD = (
    Call("web-rep-1", msk(10, 10), caller(), "101", 4, 60, "c-web-1", "client"),
    Call("web-rep-2", msk(10, 11), caller()),
    # 00:30 in Moscow is 21:30 of the 10th in UTC: Moscow's report puts it on the 11th.
    Call("web-rep-3", msk(11, 0, 30), caller(), "102", 10, 120, "c-web-2", "client", True),
    Call("web-rep-4", msk(11, 9), caller()),
    Call("web-rep-5", msk(11, 9, 5), caller()),
    Call("web-rep-6", msk(12, 15), caller(), "101", 6, 30),
    Call("web-rep-7", msk(12, 16), caller(), contact="c-web-1", category="client"),
)
OUTSIDE = (
    # The Monday after the period, ten minutes past Moscow's midnight.
    Call("web-rep-8", dt.datetime(2025, 3, 17, 0, 10, tzinfo=MSK), caller(), "101", 3, 10),
    Call("web-rep-9", msk(11, 12), caller(), "101", 3, 500, tenant="globex"),
)

INSERT = """
import json, sys
from pathlib import Path
from vpbx_common.cdr import CallRecord, open_cdr_store
store = open_cdr_store(None, Path(sys.argv[1]))
try:
    store.migrate()
    store.insert([CallRecord.from_json(item) for item in json.load(sys.stdin)])
finally:
    store.close()
"""


def insert_cdrs(pbx: RunningPlatform, calls: tuple[Call, ...]) -> None:
    records = [call.record().to_json() for call in calls]
    done = subprocess.run(
        [sys.executable, "-c", INSERT, str((pbx.var_dir / "chdb").resolve())],
        input=json.dumps(records),
        env=pbx.env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="module")
def pbx(crm_platform: RunningPlatform) -> RunningPlatform:
    if not WEB_BUILD.is_file():
        pytest.fail(f"the workspace is not built ({WEB_BUILD} is missing): run `make web`")
    insert_cdrs(crm_platform, IN_PERIOD + OUTSIDE)
    return crm_platform


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def page(browser: Browser, pbx: RunningPlatform) -> Iterator[Page]:
    """One logged-in tab of the demo's admin, English, in Moscow time."""
    context = browser.new_context(
        locale="en-US",
        timezone_id="Europe/Moscow",
        viewport={"width": 1360, "height": 900},
        base_url=pbx.crm_url,
        accept_downloads=True,
    )
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    tab = context.new_page()
    problems = watch_console(tab)
    log_in(tab, *ADMIN)
    try:
        yield tab
    finally:
        context.close()
    assert not problems, problems


def figure(page: Page, name: str) -> str:
    return page.locator(f"[data-figure={name}] dd").first.inner_text().strip()


def report_url(**params: str) -> str:
    query = {"from": FIRST.isoformat(), "to": LAST.isoformat(), **params}
    return "/reports?" + "&".join(f"{key}={value}" for key, value in query.items())


def test_the_reports_page_shows_the_weeks_calls_with_a_chart(page: Page, tmp_path: Path) -> None:
    # Reached from the navigation like any section.
    page.get_by_role("link", name="Reports").click()
    page.wait_for_url("**/reports**")
    page.goto(report_url())
    answered = [call for call in IN_PERIOD if call.answered]
    expect(page.locator("[data-figure=total] dd")).to_have_text(str(len(IN_PERIOD)))
    assert figure(page, "answered") == str(len(answered))
    assert figure(page, "missed") == str(len(IN_PERIOD) - len(answered))
    # Every missed caller is a number of this run nobody called back.
    assert figure(page, "missed_not_called_back") == str(len(IN_PERIOD) - len(answered))
    talk = sum(call.talk_s for call in answered)
    assert figure(page, "talk_s") == f"{talk // 60}:{talk % 60:02d}"

    # The rows per Moscow day, the 00:30 call on the 11th; the totals row as the figures.
    days = Counter(call.local.date().isoformat() for call in IN_PERIOD)
    rows = page.locator("table.report-rows tbody tr")
    assert rows.count() == len(days)
    for day, count in days.items():
        cells = page.locator(f"table.report-rows tr[data-key='{day}'] td")
        assert cells.nth(1).inner_text() == str(count), day
    assert page.locator("table.report-rows tr[data-key=total] td").nth(1).inner_text() == str(
        len(IN_PERIOD)
    )

    # The chart: an SVG with both series, one bar per day in each (every day has both).
    chart = page.locator("[data-chart=calls] svg.recharts-surface").first
    expect(chart).to_be_visible()
    legend = page.locator("[data-chart=calls] .recharts-legend-item-text")
    assert legend.all_text_contents() == ["Answered", "Missed"]
    bars = page.locator("[data-chart=calls] .recharts-bar-rectangle")
    assert bars.count() == 2 * len(days)
    ticks = page.locator(
        "[data-chart=calls] .recharts-xAxis-tick-labels .recharts-cartesian-axis-tick-value"
    )
    assert ticks.all_text_contents() == sorted(days)
    expect(page.locator("[data-chart=speed] svg.recharts-surface").first).to_be_visible()

    # The clients report of the same week.
    existing = [call for call in IN_PERIOD if call.contact]
    expect(page.locator("[data-figure=clients]")).to_have_text(
        f"Of {len(IN_PERIOD)} inbound calls: {len(existing)} from existing clients, "
        f"{len(IN_PERIOD) - len(existing)} from unknown numbers, "
        f"{sum(call.vip for call in IN_PERIOD)} from VIPs"
    )
    categories = Counter(call.category for call in existing)
    for category, count in categories.items():
        assert page.locator(f"[data-category={category}] dd").inner_text() == str(count)

    # The ad channels and managers of the control API, the same week: every call of the
    # set came to the one labelled number, each from a number never heard before.
    channel = page.locator("[data-report=channels] tr[data-key=yandex-direct] td")
    expect(channel.nth(1)).to_have_text(str(len(IN_PERIOD)))
    assert channel.nth(2).inner_text() == str(len(IN_PERIOD))
    expect(page.locator("[data-report=managers] table")).to_be_visible()
    assert "Ivan Petrov" in page.locator("[data-report=managers] tbody").inner_text()
    artifact(page, tmp_path, "reports-week.png")


def test_grouping_by_agent_keys_the_rows_by_who_answered(page: Page, tmp_path: Path) -> None:
    page.goto(report_url())
    expect(page.locator("[data-figure=total] dd")).to_have_text(str(len(IN_PERIOD)))
    page.get_by_label("Group by").select_option("user")
    page.wait_for_url("**group_by=user**")
    by_agent = Counter(call.answered_by for call in IN_PERIOD)
    rows = page.locator("table.report-rows tbody tr")
    expect(rows).to_have_count(len(by_agent))
    for extension, count in by_agent.items():
        row = page.locator(f"table.report-rows tr[data-key='{extension}'] td")
        assert row.nth(1).inner_text() == str(count), extension
    # An extension reads as the person's name.
    assert "Ivan Petrov" in page.locator("table.report-rows tr[data-key='101']").inner_text()
    artifact(page, tmp_path, "reports-by-agent.png")


def test_the_xlsx_export_downloads_the_report_with_its_totals(page: Page, tmp_path: Path) -> None:
    page.goto(report_url())
    expect(page.locator("[data-figure=total] dd")).to_have_text(str(len(IN_PERIOD)))
    with page.expect_download() as started:
        page.locator("[data-export=calls-xlsx]").click()
    download = started.value
    assert download.suggested_filename == f"calls-{FIRST}_{LAST}.xlsx"
    target = tmp_path / download.suggested_filename
    download.save_as(target)
    workbook = openpyxl.load_workbook(target, read_only=True)
    sheet = workbook.worksheets[0]
    table = [list(row) for row in sheet.iter_rows(values_only=True)]
    header = table[0]
    # The fixed fields, the key first (the report has more columns).
    assert header[0] == "key"
    fixed = {
        "total",
        "answered",
        "missed",
        "missed_not_called_back",
        "answer_p50_s",
        "answer_p90_s",
        "talk_s",
    }
    assert fixed <= set(header), header
    totals: dict[str, Any] = dict(zip(map(str, header), table[-1], strict=True))
    answered = [call for call in IN_PERIOD if call.answered]
    assert totals["key"] == "total"
    assert totals["total"] == len(IN_PERIOD)
    assert totals["answered"] == len(answered)
    assert totals["talk_s"] == sum(call.talk_s for call in answered)
    assert len(table) == 1 + len({call.local.date() for call in IN_PERIOD}) + 1


def publish_calls(pbx: RunningPlatform, phone: str) -> None:
    """A missed call, then an answered one of 43 s, from ``phone`` on the nodes' stream."""
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    base = {"tenant": "acme", "city": "msk", "node": "test", "number": NUMBER}
    missed = f"web-stats-missed-{secrets.token_hex(4)}"
    talked = f"web-stats-talked-{secrets.token_hex(4)}"
    ring, end = CallEventType.RINGING, CallEventType.ENDED
    events = [
        CallEvent(ring, missed, caller=phone, callee="101", at_ms=now - 90_000, **base),
        CallEvent(
            end,
            missed,
            caller=phone,
            callee="101",
            at_ms=now - 80_000,
            end_reason="cancelled",
            **base,
        ),
        CallEvent(ring, talked, caller=phone, callee="101", at_ms=now - 60_000, **base),
        CallEvent(
            CallEventType.ANSWERED, talked, caller=phone, callee="101", at_ms=now - 58_000, **base
        ),
        CallEvent(
            end,
            talked,
            caller=phone,
            callee="101",
            at_ms=now - 15_000,
            end_reason="completed",
            **base,
        ),
    ]
    client = redis.Redis.from_url(pbx.env["VPBX_REDIS_URL"])
    try:
        for event in events:
            client.xadd(CALL_EVENTS_STREAM, dict(stream_fields(event)))
    finally:
        client.close()


def test_the_card_statistics_tab_counts_the_clients_calls(
    pbx: RunningPlatform, page: Page, tmp_path: Path
) -> None:
    admin = pbx.login(*ADMIN)
    phone = caller()
    with pbx.crm(admin) as crm:
        created = crm.post("/v1/contacts", json={"name": "Stats Webtest", "phones": [phone]})
        assert created.status_code == 201, created.text
    contact = created.json()
    publish_calls(pbx, phone)
    # The CRM takes the nodes' events on its own time: the card is opened once it has both
    # calls (the card loads its calls once).
    deadline = time.monotonic() + 30
    with pbx.crm(admin) as crm:
        while True:
            listed = crm.get(f"/v1/contacts/{contact['id']}/calls").json()
            if listed["total"] == 2 and all(c["status"] == "ended" for c in listed["items"]):
                break
            assert time.monotonic() < deadline, listed
            time.sleep(0.2)
    page.goto(f"/contacts/{contact['id']}")
    page.locator("table.calls tbody tr").nth(1).wait_for()
    page.get_by_role("tab", name="Statistics").click()
    page.wait_for_url("**tab=stats")
    expect(page.locator(".contact-stats [data-figure=total] dd")).to_have_text("2")
    assert figure(page, "answered") == "1"
    assert figure(page, "missed") == "1"
    assert figure(page, "talk") == "0:43"
    month = dt.datetime.now(MSK).strftime("%Y-%m")
    cells = page.locator(f"table.per-month tr[data-month='{month}'] td")
    assert cells.nth(1).inner_text() == "2"
    expect(page.locator("[data-chart=months] svg.recharts-surface").first).to_be_visible()
    artifact(page, tmp_path, "contact-statistics.png")
