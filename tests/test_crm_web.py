"""The agent workspace in a real browser: `vpbx up` with its CRM serving the built web app,
Debian's Chromium driven by Playwright (headless).

The demo's admin logs in, finds a client the API created by a local form of their phone,
opens the card (name, phones, custom fields, manager, the calls the nodes reported with a
recording fetched from the control API across origins, both languages), is refused a bad
phone on the field that has it, finds a new contact by a part of its Cyrillic name, follows
the bell to a missed caller and closes an overdue task with a result. Screenshots are kept
under the test's tmp dir and, if set, $VPBX_TEST_ARTIFACTS; any console error (a CSP
refusal included) fails the module.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from tests.services.chromium import artifact, chromium, log_in, watch_console
from tests.services.platform import REPO, RunningPlatform
from vpbx_common.events import CALL_EVENTS_STREAM, CallEvent, CallEventType, stream_fields

pytestmark = pytest.mark.integration

ADMIN = ("admin@acme.vpbx.local", "acme-admin-secret")
WEB_BUILD = REPO / "crm" / "web" / "dist" / "index.html"
TIMEOUT_MS = 10_000


@pytest.fixture(scope="module")
def pbx(crm_platform: RunningPlatform) -> RunningPlatform:
    """The CRM modules' shared platform (tests/services/platform.py)."""
    if not WEB_BUILD.is_file():
        pytest.fail(f"the workspace is not built ({WEB_BUILD} is missing): run `make web`")
    return crm_platform


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as launched:
        yield launched


@pytest.fixture(scope="module")
def admin(pbx: RunningPlatform) -> dict[str, str]:
    return pbx.login(*ADMIN)


@pytest.fixture(scope="module")
def page(browser: Browser, pbx: RunningPlatform) -> Iterator[Page]:
    """One logged-in tab (English UI) for the module's tests, in order."""
    context = browser.new_context(
        locale="en-US", viewport={"width": 1360, "height": 900}, base_url=pbx.crm_url
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


def publish_calls(pbx: RunningPlatform, caller: str, *, answered: bool = True) -> None:
    """A missed call and (``answered``) an answered, recorded one from ``caller``, on the
    nodes' stream."""
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    base = {"tenant": "acme", "city": "msk", "node": "test", "number": "+74950000002"}
    missed = f"web-missed-{secrets.token_hex(4)}"
    talked = f"web-talked-{secrets.token_hex(4)}"
    events = [
        CallEvent(
            CallEventType.RINGING,
            missed,
            caller=caller,
            callee="101",
            at_ms=now - 90_000,
            label="yandex-direct",
            **base,
        ),
        CallEvent(
            CallEventType.ENDED,
            missed,
            caller=caller,
            callee="101",
            at_ms=now - 80_000,
            end_reason="cancelled",
            **base,
        ),
        CallEvent(
            CallEventType.RINGING, talked, caller=caller, callee="101", at_ms=now - 60_000, **base
        ),
        CallEvent(
            CallEventType.ANSWERED, talked, caller=caller, callee="101", at_ms=now - 58_000, **base
        ),
        CallEvent(
            CallEventType.ENDED,
            talked,
            caller=caller,
            callee="101",
            at_ms=now - 15_000,
            end_reason="completed",
            **base,
        ),
        CallEvent(
            CallEventType.RECORDING_READY,
            talked,
            caller=caller,
            callee="101",
            at_ms=now - 14_000,
            key=f"recordings/acme/{talked}.ogg",
            duration_ms=43_000,
            **base,
        ),
    ]
    if not answered:
        events = events[:2]
    client = redis.Redis.from_url(pbx.env["VPBX_REDIS_URL"])
    try:
        for event in events:
            client.xadd(CALL_EVENTS_STREAM, dict(stream_fields(event)))
    finally:
        client.close()


def test_a_client_is_found_by_a_local_form_of_their_phone_and_the_card_shows_them(
    pbx: RunningPlatform, admin: dict[str, str], page: Page, tmp_path: Path
) -> None:
    digits = f"{secrets.randbelow(10**7):07d}"
    phone = f"+7916{digits}"
    local = f"8 (916) {digits[:3]}-{digits[3:5]}-{digits[5:]}"
    name = f"Ivan Webtest {digits}"
    with pbx.api(admin) as api:
        me = api.get("/v1/auth/me").json()
    with pbx.crm(admin) as crm:
        created = crm.post(
            "/v1/contacts",
            json={
                "name": name,
                "phones": [phone, "+74951234567"],
                "emails": ["ivan@example.com"],
                "vip": True,
                "owner_user_id": me["user_id"],
                "source_label": "yandex-direct",
                "custom": {"orders": 12, "debt": 15000.5, "segment": "wholesale"},
            },
        )
        assert created.status_code == 201, created.text
    contact = created.json()
    publish_calls(pbx, phone)

    page.get_by_label("Search").fill(local)
    row = page.locator("table.contacts tbody tr", has_text=name)
    row.wait_for()
    assert page.locator("table.contacts tbody tr").count() == 1
    artifact(page, tmp_path, "contacts-found-by-phone.png")
    row.get_by_role("link", name=name).click()
    page.wait_for_url(f"**/contacts/{contact['id']}")

    heading = page.get_by_role("heading", level=1)
    heading.wait_for()
    assert name in heading.inner_text()
    assert "VIP" in heading.inner_text()
    facts = page.locator("dl.facts").first
    pretty = f"+7 916 {digits[:3]}-{digits[3:5]}-{digits[5:]}"
    assert facts.get_by_role("link", name=pretty).get_attribute("href") == f"tel:{phone}"
    assert facts.get_by_role("link", name="+7 495 123-45-67").is_visible()
    assert "ivan@example.com" in facts.inner_text()
    assert "yandex-direct" in facts.inner_text()
    assert "Moscow" in facts.inner_text() or "Москва" in facts.inner_text()
    custom = page.locator("dl.custom")
    assert custom.locator("dd[data-field=orders]").inner_text() == "12"
    assert custom.locator("dd[data-field=debt]").inner_text() == "15,000.5"
    assert custom.locator("dd[data-field=segment]").inner_text() == "wholesale"
    assert "Orders" in custom.inner_text()
    # The manager's name comes from the CRM's directory of the tenant's people.
    owner = facts.locator("dt", has_text="Manager").locator("xpath=following-sibling::dd[1]")
    assert owner.inner_text().strip() not in ("", "nobody", me["user_id"][:8])
    # The calls the nodes reported, newest first: the missed one marked, the answered one
    # with its recording, fetched from the control API across origins with the token.
    calls = page.locator("table.calls tbody tr")
    calls.nth(1).wait_for()
    assert calls.count() == 2
    assert "missed" in (calls.nth(1).get_attribute("class") or "")
    assert "yandex-direct" in calls.nth(1).inner_text()
    assert "0:43" in calls.nth(0).inner_text()  # talk time
    calls.nth(0).get_by_role("button", name=re.compile("Recording")).click()
    # No CDR holds this made-up call: the control API answers 404, and the page says so
    # (a refused cross-origin request would show "Failed to fetch" instead).
    calls.nth(0).get_by_text("Recording not available").wait_for()
    page.get_by_text("Tasks for this contact").wait_for()
    shot = artifact(page, tmp_path, "contact-card.png")
    assert shot.stat().st_size > 10_000

    # The same card in Russian, from the switch in the top bar.
    page.locator("header").get_by_role("button", name="RU").click()
    page.locator("header nav").get_by_role("link", name="Клиенты").wait_for()
    assert page.locator("dl.custom dd[data-field=debt]").inner_text() in ("15 000,5", "15\xa0000,5")
    artifact(page, tmp_path, "contact-card-ru.png")
    page.locator("header").get_by_role("button", name="EN").click()
    page.locator("header nav").get_by_role("link", name="Contacts").wait_for()


def test_a_bad_phone_is_refused_on_its_field_and_a_good_one_saves(
    page: Page, tmp_path: Path
) -> None:
    page.goto("/contacts")
    page.get_by_role("link", name="New contact").click()
    page.wait_for_url("**/contacts/new")
    name = f"Мария Формтест {secrets.token_hex(3)}"
    page.get_by_label("Name", exact=True).fill(name)
    phone = page.get_by_label("Phone 1")
    phone.fill("12-ab")
    page.get_by_role("button", name="Save").click()
    error = page.locator("#phones-0-error")
    error.wait_for()
    assert error.inner_text().strip()
    assert phone.get_attribute("aria-invalid") == "true"
    assert page.url.endswith("/contacts/new")
    assert page.get_by_role("alert").first.is_visible()
    artifact(page, tmp_path, "contact-form-error.png")

    digits = f"{secrets.randbelow(10**7):07d}"
    phone.fill(f"8 903 {digits}")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r".*/contacts/[0-9a-f-]{36}$"))
    assert name in page.get_by_role("heading", level=1).inner_text()
    assert page.get_by_role("link", name=re.compile(r"\+7 903")).is_visible()
    # Found again by a part of the name typed in lower case (Cyrillic, on SQLite too).
    page.locator("header nav").get_by_role("link", name="Contacts").click()
    page.get_by_label("Search").fill(name.split()[-2].lower() + " " + name.split()[-1])
    page.locator("table.contacts tbody tr", has_text=name).wait_for()


def test_the_bell_tells_of_a_missed_call_and_leads_to_the_client(
    pbx: RunningPlatform, admin: dict[str, str], page: Page
) -> None:
    with pbx.api(admin) as api:
        me = api.get("/v1/auth/me").json()
    digits = f"{secrets.randbelow(10**7):07d}"
    name = f"Bell Client {digits}"
    with pbx.crm(admin) as crm:
        created = crm.post(
            "/v1/contacts",
            json={"name": name, "phones": [f"+7926{digits}"], "owner_user_id": me["user_id"]},
        )
        assert created.status_code == 201, created.text
        before = crm.get("/v1/notifications", params={"unread": True}).json()["total"]
    page.goto("/contacts")
    bell = page.locator("header .bell-button")
    expect(bell).to_have_attribute("aria-label", f"Notifications: {before}")
    publish_calls(pbx, f"+7926{digits}", answered=False)
    # The missed call is a task for the client's manager, announced within a poll or two.
    expect(bell).to_have_attribute("aria-label", f"Notifications: {before + 1}")
    bell.click()
    item = page.locator(".bell-panel .bell-item", has_text=name)
    item.click()
    page.wait_for_url(f"**/contacts/{created.json()['id']}")
    page.locator("table.calls tr.missed").wait_for()
    expect(bell).to_have_attribute("aria-label", f"Notifications: {before}")


def test_an_overdue_task_is_marked_and_closed_with_a_result(
    pbx: RunningPlatform, admin: dict[str, str], page: Page, tmp_path: Path
) -> None:
    title = f"Call back about the invoice {secrets.token_hex(3)}"
    due = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    with pbx.crm(admin) as crm:
        task = crm.post("/v1/tasks", json={"title": title, "due_at": due.isoformat()})
        assert task.status_code == 201, task.text
    page.locator("header nav").get_by_role("link", name="Tasks").click()
    page.wait_for_url("**/tasks")
    row = page.locator("table.tasks tbody tr", has_text=title)
    row.wait_for()
    assert "overdue" in (row.get_attribute("class") or "")
    artifact(page, tmp_path, "tasks.png")
    row.get_by_role("button", name="Close").click()
    page.get_by_label("What came of it").fill("Paid by phone")
    page.get_by_role("button", name="Done", exact=True).click()
    row.wait_for(state="detached")
    with pbx.crm(admin) as crm:
        closed = crm.get(f"/v1/tasks/{task.json()['id']}").json()
    assert closed["status"] == "done"
    assert closed["result"] == "Paid by phone"
