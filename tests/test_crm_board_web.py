"""The deals board and the after-call form in a real browser (`vpbx up` with its CRM, the
built workspace, Debian's Chromium driven by Playwright; the same set-up as
tests/test_crm_web.py, whose fixtures this module reuses).

A deal dragged to another column stays there after a reload, and one moved to the lost
column from its stage menu asks why; the after-call form of an answered call shows the
dialled number's script, stores the checked stages and the outcome, moves the client's
deal, and the card shows the result. Screenshots of the board and the card are kept like
the other browser tests' ($VPBX_TEST_ARTIFACTS).
"""

from __future__ import annotations

import datetime as dt
import re
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import redis
from playwright.sync_api import Page, expect

from tests.services.platform import RunningPlatform
from tests.test_crm_web import admin, artifact, browser, page, pbx
from vpbx_common.events import CALL_EVENTS_STREAM, CallEvent, CallEventType, stream_fields

pytestmark = pytest.mark.integration

# The fixtures come from the workspace's first browser test (one platform per module).
__all__ = ["admin", "browser", "page", "pbx"]


def sales_pipeline(crm: Any) -> tuple[str, dict[str, str]]:
    pipelines = crm.get("/v1/pipelines").json()["items"]
    first = pipelines[0]
    return first["id"], {stage["name"]: stage["id"] for stage in first["stages"]}


def test_a_deal_dragged_to_another_stage_stays_there_and_a_lost_one_says_why(
    pbx: RunningPlatform, admin: dict[str, str], page: Page, tmp_path: Path
) -> None:
    suffix = secrets.token_hex(3)
    with pbx.crm(admin) as crm:
        pipeline_id, stages = sales_pipeline(crm)
        client = crm.post(
            "/v1/contacts",
            json={
                "name": f"Board Client {suffix}",
                "phones": [f"+7925{secrets.randbelow(10**7):07d}"],
            },
        )
        assert client.status_code == 201, client.text
        created = crm.post(
            "/v1/deals",
            json={
                "title": f"Board deal {suffix}",
                "contact_id": client.json()["id"],
                "amount": "1500",
                "stage_id": stages["New"],
            },
        )
        assert created.status_code == 201, created.text
    deal = created.json()
    card_selector = f"li.deal-card[data-deal-id='{deal['id']}']"

    page.goto(f"/deals?pipeline={pipeline_id}")
    new = page.locator(f"section.column[data-stage-id='{stages['New']}']")
    proposal = page.locator(f"section.column[data-stage-id='{stages['Proposal']}']")
    card = new.locator(card_selector)
    expect(card).to_contain_text(f"Board Client {suffix}")
    expect(card).to_contain_text("1,500")
    card.drag_to(proposal)
    expect(proposal.locator(card_selector)).to_be_visible()
    expect(proposal.get_by_test_id("column-sum")).not_to_have_text("—")

    page.reload()
    proposal.locator(card_selector).wait_for()
    assert new.locator(card_selector).count() == 0
    with pbx.crm(admin) as crm:
        assert crm.get(f"/v1/deals/{deal['id']}").json()["stage_id"] == stages["Proposal"]
    artifact(page, tmp_path, "deals-board.png")

    # Without a mouse: the card's stage menu; the lost column asks for the reason first.
    proposal.locator(card_selector).get_by_label("Move to stage").select_option(label="Lost")
    dialog = page.get_by_role("dialog")
    dialog.get_by_role("button", name="Move").click()
    expect(dialog.get_by_role("alert")).to_have_text("Give a reason")
    dialog.get_by_label("Loss reason").fill("Chose a competitor")
    dialog.get_by_role("button", name="Move").click()
    lost = page.locator(f"section.column[data-stage-id='{stages['Lost']}']")
    expect(lost.locator(card_selector)).to_contain_text("Chose a competitor")
    with pbx.crm(admin) as crm:
        moved = crm.get(f"/v1/deals/{deal['id']}").json()
    assert (moved["status"], moved["loss_reason"]) == ("lost", "Chose a competitor")

    # A new deal made in a column lands in that stage, its amount in the column's sum.
    qualified = page.locator(f"section.column[data-stage-id='{stages['Qualified']}']")
    qualified.get_by_role("button", name="New deal").click()
    form = qualified.get_by_role("form", name="New deal")
    form.get_by_label("Amount").fill("abc")
    form.get_by_role("button", name="Create").click()
    # Each field says what is wrong with it: no title, not an amount.
    expect(form.get_by_role("alert")).to_have_count(2)
    form.get_by_label("Title").fill(f"Fresh deal {suffix}")
    form.get_by_label("Amount").fill("2000,50")  # a decimal comma, as typed in Russia
    form.get_by_role("button", name="Create").click()
    expect(qualified.locator("li.deal-card", has_text=f"Fresh deal {suffix}")).to_be_visible()
    expect(qualified.get_by_test_id("column-sum")).to_contain_text("2,000.50")


def publish_answered_call(pbx: RunningPlatform, caller: str, number: str) -> str:
    """An inbound call to ``number`` that 101 answered, on the nodes' event stream."""
    call_id = f"web-after-{secrets.token_hex(4)}@test"
    now = int(dt.datetime.now(dt.UTC).timestamp() * 1000)
    base: dict[str, Any] = {
        "tenant": "acme",
        "city": "msk",
        "node": "test",
        "number": number,
        "caller": caller,
        "callee": "101",
    }
    events = [
        CallEvent(CallEventType.RINGING, call_id, at_ms=now - 90_000, **base),
        CallEvent(CallEventType.ANSWERED, call_id, at_ms=now - 85_000, **base),
        CallEvent(CallEventType.ENDED, call_id, at_ms=now - 5_000, end_reason="completed", **base),
    ]
    client = redis.Redis.from_url(pbx.env["VPBX_REDIS_URL"])
    try:
        for event in events:
            client.xadd(CALL_EVENTS_STREAM, dict(stream_fields(event)))
    finally:
        client.close()
    return call_id


def test_the_after_call_form_stores_the_result_and_moves_the_deal(
    pbx: RunningPlatform, admin: dict[str, str], page: Page, tmp_path: Path
) -> None:
    suffix = secrets.token_hex(3)
    number = f"+7495{secrets.randbelow(10**7):07d}"
    phone = f"+7926{secrets.randbelow(10**7):07d}"
    with pbx.crm(admin) as crm:
        _, stages = sales_pipeline(crm)
        script = crm.post(
            "/v1/call-scripts",
            json={
                "name": f"Inbound {suffix}",
                "numbers": [number],
                "stages": ["Greet and name the company", "Ask about the offices", "Offer a demo"],
            },
        )
        assert script.status_code == 201, script.text
        client = crm.post("/v1/contacts", json={"name": f"After Call {suffix}", "phones": [phone]})
        assert client.status_code == 201, client.text
        deal = crm.post(
            "/v1/deals", json={"title": f"PBX for {suffix}", "contact_id": client.json()["id"]}
        )
        assert deal.status_code == 201, deal.text
    call_id = publish_answered_call(pbx, phone, number)
    with pbx.crm(admin) as crm:
        deadline = time.monotonic() + 10
        while crm.get(f"/v1/calls/{quote(call_id)}").json().get("status") != "ended":
            assert time.monotonic() < deadline, "the CRM never read the call"
            time.sleep(0.1)

    page.goto(f"/after-call/{quote(call_id, safe='')}")
    page.get_by_role("heading", name="After the call").wait_for()
    expect(page.get_by_text(f"Script: Inbound {suffix}")).to_be_visible()
    page.get_by_label("Greet and name the company").check()
    page.get_by_label("Offer a demo").check()
    page.get_by_role("button", name="Save the result").click()
    # Nothing is sent without an outcome: the field says so.
    expect(page.locator("#outcome-error")).to_have_text("Required")
    page.get_by_label("Outcome").fill("Demo on Thursday at 11")
    page.get_by_label("Move a deal to a stage").check()
    page.get_by_label("New stage").select_option(label="Proposal")
    page.get_by_role("button", name="Save the result").click()
    page.wait_for_url(f"**/contacts/{client.json()['id']}")

    result = page.get_by_test_id("call-result")
    expect(result).to_contain_text("Demo on Thursday at 11")
    expect(result.locator("li.done")).to_have_count(2)
    expect(result.locator("li.skipped")).to_have_text("— Ask about the offices")
    expect(page.locator(f"tr[data-deal-id='{deal.json()['id']}']")).to_contain_text("Proposal")
    artifact(page, tmp_path, "contact-card-after-call.png")
    with pbx.crm(admin) as crm:
        stored = crm.get(f"/v1/calls/{quote(call_id)}").json()["result"]
        moved = crm.get(f"/v1/deals/{deal.json()['id']}").json()
    assert stored["outcome"] == "Demo on Thursday at 11"
    assert moved["stage_id"] == stages["Proposal"]

    # A second visit shows the stored result instead of the form.
    page.goto(f"/after-call/{quote(call_id, safe='')}")
    expect(page.get_by_test_id("call-result")).to_contain_text("Demo on Thursday at 11")
    assert page.get_by_role("button", name="Save the result").count() == 0


def test_a_company_is_made_with_field_errors_shown_and_its_card_has_people_and_notes(
    pbx: RunningPlatform, admin: dict[str, str], page: Page, tmp_path: Path
) -> None:
    suffix = secrets.token_hex(3)
    page.goto("/companies")
    page.get_by_role("link", name="New company").click()
    page.get_by_label("Company name").fill(f"ООО Ромашка {suffix}")
    tax_id = page.get_by_label("Tax id (INN)")
    tax_id.fill("12345")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#company-tax_id-error")).to_be_visible()
    assert tax_id.get_attribute("aria-invalid") == "true"
    tax_id.fill("7707083893")
    page.get_by_role("button", name="Save").click()
    page.wait_for_url(re.compile(r".*/companies/[0-9a-f-]{36}$"))
    company_id = page.url.rsplit("/", 1)[1]

    with pbx.crm(admin) as crm:
        person = crm.post(
            "/v1/contacts",
            json={
                "name": f"Ирина {suffix}",
                "phones": [f"+7927{secrets.randbelow(10**7):07d}"],
                "company_id": company_id,
            },
        )
        assert person.status_code == 201, person.text
    # Found by a part of the name in the list, then the card lists its people.
    page.goto("/companies")
    page.get_by_label("Search companies").fill(f"ромашка {suffix}")
    page.locator("table.companies tbody tr", has_text=suffix).get_by_role("link").click()
    page.wait_for_url(f"**/companies/{company_id}")
    page.locator("table.company-contacts").get_by_role("link", name=f"Ирина {suffix}").click()
    # The contact's card links back to the company and takes notes.
    page.wait_for_url(f"**/contacts/{person.json()['id']}")
    expect(
        page.locator("dl.facts").get_by_role("link", name=f"ООО Ромашка {suffix}")
    ).to_be_visible()
    page.get_by_placeholder("What to remember about the client").fill("Prefers e-mail")
    page.get_by_role("button", name="Add note").click()
    expect(page.locator(".note-list li")).to_contain_text("Prefers e-mail")
    with pbx.crm(admin) as crm:
        notes = crm.get("/v1/notes", params={"contact_id": person.json()["id"]}).json()
    assert [note["text"] for note in notes["items"]] == ["Prefers e-mail"]


def test_a_supervisor_writes_a_call_script_with_its_stages(page: Page) -> None:
    suffix = secrets.token_hex(3)
    page.locator("header nav").get_by_role("link", name="Scripts").click()
    page.get_by_role("button", name="New script").click()
    page.get_by_label("Name").fill(f"Outbound {suffix}")
    numbers = page.get_by_label("Numbers (comma-separated)")
    numbers.fill("+7 495 000-00-77, 12-ab")
    page.get_by_label("Stages (one per line)").fill("Introduce yourself\nAsk for the manager")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#script-numbers-error")).to_be_visible()
    assert numbers.get_attribute("aria-invalid") == "true"
    numbers.fill(f"+7 495 {secrets.randbelow(10**7):07d}")
    page.get_by_role("button", name="Save").click()
    script = page.get_by_role("region", name=f"Outbound {suffix}")
    expect(script.locator("ol li")).to_have_text(["Introduce yourself", "Ask for the manager"])
