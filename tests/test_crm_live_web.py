"""The live workspace in a real browser: `vpbx up` with its CRM, Debian's Chromium with
fake media devices (Playwright, headless).

An agent logs in; a call offered to their extension is XADD'ed to the nodes' stream as a
node writes it (before its INVITEs); the caller's card pops up in the page with the
client's name and a "client of <colleague>" warning; when the call they answered ends the
page goes to the after-call form. An unknown number pops up with a quick-create form. The
supervisor page shows the agent ringing. The moments the pop arrived and was shown are
read from the page (window.__vpbx) and printed beside the moment of the XADD.

The browser's own SIP device registers over the edge's SIP WebSocket (JsSIP), and two
browsers call each other with WebRTC media through the node.
"""

from __future__ import annotations

import secrets
import time
import wave
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from tests.services.chromium import FAKE_MEDIA_ARGS, artifact, chromium, log_in, watch_console
from tests.services.platform import REPO, RunningPlatform
from vpbx_common.events import CALL_EVENTS_STREAM, CallEvent, CallEventType, stream_fields

pytestmark = pytest.mark.integration

ADMIN = ("admin@acme.vpbx.local", "acme-admin-secret")
WEB_BUILD = REPO / "crm" / "web" / "dist" / "index.html"
TIMEOUT_MS = 10_000
AGENT_EXTENSION = "150"
COLLEAGUE_EXTENSION = "151"


@pytest.fixture(scope="module")
def pbx(crm_platform: RunningPlatform) -> RunningPlatform:
    """The CRM modules' shared platform (tests/services/platform.py)."""
    if not WEB_BUILD.is_file():
        pytest.fail(f"the workspace is not built ({WEB_BUILD} is missing): run `make web`")
    return crm_platform


@pytest.fixture(scope="module")
def speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A second of a 440 Hz tone, 8 kHz mono: the fake microphone's voice."""
    path = tmp_path_factory.mktemp("audio") / "voice.wav"
    samples = bytearray()
    for n in range(8000):
        value = int(8000 * ((n * 440 * 2 // 8000) % 2 * 2 - 1))  # a square wave
        samples += value.to_bytes(2, "little", signed=True)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(8000)
        out.writeframes(bytes(samples))
    return path


@pytest.fixture(scope="module")
def browser(speech: Path) -> Iterator[Browser]:
    with chromium([*FAKE_MEDIA_ARGS, f"--use-file-for-fake-audio-capture={speech}"]) as launched:
        yield launched


@pytest.fixture(scope="module")
def admin(pbx: RunningPlatform) -> dict[str, str]:
    return pbx.login(*ADMIN)


def new_agent(
    pbx: RunningPlatform, admin: dict[str, str], name: str, extension: str
) -> dict[str, str]:
    """An agent with an extension of their own: email, password, id."""
    password = "agent-" + secrets.token_hex(8)
    email = f"{name.split()[0].lower()}.{secrets.token_hex(3)}@acme.example"
    with pbx.api(admin) as api:
        created = api.post(
            "/v1/users",
            json={
                "email": email,
                "name": name,
                "role": "agent",
                "extension": extension,
                "password": password,
            },
        )
        assert created.status_code == 201, created.text
    return {"email": email, "password": password, "id": created.json()["id"]}


@pytest.fixture(scope="module")
def agent(pbx: RunningPlatform, admin: dict[str, str]) -> dict[str, str]:
    return new_agent(pbx, admin, "Olga Webpop", AGENT_EXTENSION)


def open_tab(browser: Browser, pbx: RunningPlatform, email: str, password: str) -> Page:
    context = browser.new_context(
        locale="en-US", viewport={"width": 1360, "height": 900}, base_url=pbx.crm_url
    )
    context.set_default_timeout(TIMEOUT_MS)
    expect.set_options(timeout=TIMEOUT_MS)
    tab = context.new_page()
    problems = watch_console(tab)
    log_in(tab, email, password)
    # The live feed is open (its hello came): events from now on reach the page.
    expect(tab.locator("body[data-live=open]")).to_be_attached()
    tab.problems = problems  # type: ignore[attr-defined]
    return tab


def close_tab(tab: Page) -> None:
    problems: list[str] = tab.problems  # type: ignore[attr-defined]
    tab.context.close()
    assert not problems, problems


def xadd(pbx: RunningPlatform, *events: CallEvent) -> float:
    """The events on the nodes' stream; the moment (epoch ms) of the first XADD."""
    client = redis.Redis.from_url(pbx.env["VPBX_REDIS_URL"])
    try:
        started = time.time() * 1000
        for event in events:
            client.xadd(CALL_EVENTS_STREAM, dict(stream_fields(event)))
        return started
    finally:
        client.close()


def call_event(kind: CallEventType, call_id: str, caller: str, **fields: Any) -> CallEvent:
    values: dict[str, Any] = {
        "tenant": "acme",
        "city": "msk",
        "node": "test",
        "number": "+74950000002",
        "caller": caller,
        "callee": "",
        "at_ms": int(time.time() * 1000),
        "direction": "inbound",
    }
    values.update(fields)
    return CallEvent(kind, call_id, **values)


def pop_times(tab: Page, call_id: str) -> dict[str, float]:
    records: list[dict[str, float]] = tab.evaluate("window.__vpbx ? window.__vpbx.pops : []")
    found = [record for record in records if record.get("call_id") == call_id]
    assert found, records
    return found[0]


def test_the_callers_card_pops_up_with_the_colleague_warning_then_the_after_call_form(
    pbx: RunningPlatform,
    admin: dict[str, str],
    agent: dict[str, str],
    browser: Browser,
    tmp_path: Path,
) -> None:
    digits = f"{secrets.randbelow(10**7):07d}"
    phone = f"+7916{digits}"
    with pbx.api(admin) as api:
        maria = api.get("/v1/users", params={"extension": "102"}).json()["items"][0]
    with pbx.crm(admin) as crm:
        company = crm.post("/v1/companies", json={"name": f"Romashka {digits}"})
        assert company.status_code == 201, company.text
        created = crm.post(
            "/v1/contacts",
            json={
                "name": f"Ivan Popup {digits}",
                "phones": [phone],
                "owner_user_id": maria["id"],
                "company_id": company.json()["id"],
                "vip": True,
            },
        )
        assert created.status_code == 201, created.text
    contact = created.json()
    summary = {
        "id": contact["id"],
        "name": contact["name"],
        "category": "client",
        "owner_user_id": maria["id"],
        "vip": True,
    }

    tab = open_tab(browser, pbx, agent["email"], agent["password"])
    try:
        call_id = f"web-pop-{secrets.token_hex(4)}"
        xadd_ms = xadd(
            pbx,
            call_event(
                CallEventType.OFFERED,
                call_id,
                phone,
                offered=(AGENT_EXTENSION,),
                contact=summary,
            ),
        )
        pop = tab.locator(f".screen-pop[data-call-id='{call_id}']")
        expect(pop).to_be_visible()
        expect(pop.get_by_role("link", name=contact["name"])).to_be_visible()
        expect(pop.get_by_text("Client of Maria Sokolova")).to_be_visible()
        expect(pop.get_by_text(f"Romashka {digits}")).to_be_visible()  # the card's company
        times = pop_times(tab, call_id)
        print(
            f"\nscreen pop: XADD -> WebSocket message {times['received_ms'] - xadd_ms:.1f} ms, "
            f"-> shown {times['shown_ms'] - xadd_ms:.1f} ms (browser clock vs test clock)"
        )
        assert times["received_ms"] <= times["shown_ms"]
        artifact(tab, tmp_path, "live-screen-pop.png")

        # Clicking to call the colleague's client warns too.
        pop.get_by_role("link", name=contact["name"]).click()
        tab.wait_for_url(f"**/contacts/{contact['id']}")
        tab.locator(".card-columns a.phone").first.click()
        expect(tab.get_by_role("alert").get_by_text("Client of Maria Sokolova")).to_be_visible()
        tab.get_by_role("button", name="Cancel").click()

        # The agent answers on a phone; when the call ends the after-call form opens.
        xadd(
            pbx,
            call_event(CallEventType.ANSWERED, call_id, phone, callee=AGENT_EXTENSION),
            call_event(
                CallEventType.ENDED,
                call_id,
                phone,
                callee=AGENT_EXTENSION,
                end_reason="completed",
            ),
        )
        tab.wait_for_url(f"**/after-call/{call_id}")
        expect(pop).to_have_count(0)
        artifact(tab, tmp_path, "live-after-call.png")
    finally:
        close_tab(tab)


def test_an_unknown_number_pops_up_with_a_quick_create_form_and_the_supervisor_sees_it_ring(
    pbx: RunningPlatform,
    agent: dict[str, str],
    browser: Browser,
    tmp_path: Path,
) -> None:
    phone = f"+7916{secrets.randbelow(10**7):07d}"
    tab = open_tab(browser, pbx, agent["email"], agent["password"])
    boss = open_tab(browser, pbx, *ADMIN)
    try:
        boss.goto("/supervisor")
        row = boss.locator(f"tr[data-extension='{AGENT_EXTENSION}']")
        expect(row).to_have_attribute("data-state", "idle")

        call_id = f"web-new-{secrets.token_hex(4)}"
        xadd(pbx, call_event(CallEventType.OFFERED, call_id, phone, offered=(AGENT_EXTENSION,)))
        pop = tab.locator(f".screen-pop[data-call-id='{call_id}']")
        expect(pop.get_by_text("Unknown number")).to_be_visible()
        expect(row).to_have_attribute("data-state", "ringing")
        artifact(boss, tmp_path, "live-supervisor.png")

        pop.get_by_label("New client's name").fill("Walk-in caller")
        pop.get_by_role("button", name="Create client").click()
        pop.get_by_role("link", name="Open the new client's card").click()
        expect(tab.get_by_role("heading", name="Walk-in caller")).to_be_visible()
        artifact(tab, tmp_path, "live-new-number.png")
    finally:
        close_tab(tab)
        close_tab(boss)


@pytest.fixture(scope="module")
def colleague(pbx: RunningPlatform, admin: dict[str, str]) -> dict[str, str]:
    """A second agent, who answers in their own browser."""
    return new_agent(pbx, admin, "Petr Webcall", COLLEAGUE_EXTENSION)


def test_the_browser_gets_its_own_device_and_registers_at_the_edge_websocket(
    pbx: RunningPlatform, agent: dict[str, str], browser: Browser, tmp_path: Path
) -> None:
    tab = open_tab(browser, pbx, agent["email"], agent["password"])
    try:
        panel = tab.locator(".softphone-dock .softphone")
        expect(panel).to_have_attribute("data-registration", "registered")
        stored = tab.evaluate(f"localStorage.getItem('vpbx.softphone.{agent['id']}')")
        assert stored is not None
        assert f'"{AGENT_EXTENSION}-web' in stored
        # The registrar holds the browser's binding under the agent's extension.
        client = redis.Redis.from_url(pbx.env["VPBX_REDIS_URL"])
        try:
            bindings = client.hvals(f"vpbx:reg:acme:{AGENT_EXTENSION}")
        finally:
            client.close()
        assert any(b"transport=ws" in binding for binding in bindings), bindings
        tab.goto("/softphone")
        expect(tab.get_by_label("Microphone")).to_be_visible()
        artifact(tab, tmp_path, "live-softphone-registered.png")
    finally:
        close_tab(tab)


def test_two_browsers_talk_through_the_node(
    pbx: RunningPlatform,
    agent: dict[str, str],
    colleague: dict[str, str],
    browser: Browser,
    tmp_path: Path,
) -> None:
    caller = open_tab(browser, pbx, agent["email"], agent["password"])
    callee = open_tab(browser, pbx, colleague["email"], colleague["password"])
    try:
        dialler = caller.locator(".softphone-dock .softphone")
        answerer = callee.locator(".softphone-dock .softphone")
        expect(dialler).to_have_attribute("data-registration", "registered")
        expect(answerer).to_have_attribute("data-registration", "registered")
        dialler.get_by_label("Number or extension").fill(COLLEAGUE_EXTENSION)
        dialler.get_by_role("button", name="Call").click()
        expect(answerer.get_by_text(f"{AGENT_EXTENSION} is calling")).to_be_visible()
        answerer.get_by_role("button", name="Answer").click()
        expect(dialler.get_by_text(f"Talking to {COLLEAGUE_EXTENSION}")).to_be_visible()
        expect(answerer.get_by_text(f"Talking to {AGENT_EXTENSION}")).to_be_visible()
        dialler.get_by_role("button", name="Mute").click()
        expect(dialler.get_by_role("button", name="Unmute")).to_be_visible()
        dialler.get_by_role("button", name="Hold").click()
        expect(dialler.get_by_role("button", name="Resume")).to_be_visible()
        dialler.get_by_role("button", name="Resume").click()
        dialler.get_by_role("button", name="5").click()  # a DTMF digit
        # The far end's voice plays in the callee's page (the fake microphone's tone).
        callee.wait_for_function(
            "() => { const a = document.querySelector('[data-testid=softphone-audio]');"
            " return a && a.srcObject && a.srcObject.getAudioTracks().length > 0; }"
        )
        artifact(caller, tmp_path, "live-softphone-call.png")
        dialler.get_by_role("button", name="Hang up").click()
        expect(answerer.get_by_role("button", name="Hang up")).to_have_count(0)
        expect(dialler.get_by_role("button", name="Hang up")).to_have_count(0)
    finally:
        close_tab(caller)
        close_tab(callee)


# --- a real caller, answered in the browser ------------------------------------------------

MAIN_NUMBER = "+74950000001"
CALLER_TONE_HZ = 1000  # baresip's sine
VOICE_HZ = 440  # the fake microphone's square wave (the speech fixture)

# The dominant frequency of what the softphone plays, measured in the page with WebAudio
# (an AnalyserNode on the remote stream), averaged over ``ms``.
HEARD_IN_PAGE_JS = """
async (ms) => {
  const audio = document.querySelector('[data-testid=softphone-audio]');
  const context = new AudioContext();
  const analyser = context.createAnalyser();
  analyser.fftSize = 4096;
  context.createMediaStreamSource(audio.srcObject).connect(analyser);
  const bins = new Float32Array(analyser.frequencyBinCount);
  const total = new Float64Array(analyser.frequencyBinCount);
  const until = performance.now() + ms;
  while (performance.now() < until) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    analyser.getFloatFrequencyData(bins);
    for (let i = 1; i < bins.length; i++) total[i] += Math.pow(10, bins[i] / 10);
  }
  let peak = 1;
  for (let i = 2; i < total.length; i++) if (total[i] > total[peak]) peak = i;
  await context.close();
  return peak * context.sampleRate / analyser.fftSize;
}
"""


def heard_hz(path: Path, start_s: float, seconds: float) -> float:
    """The dominant frequency of a slice of what baresip heard (its WAV dump)."""
    import numpy as np

    with wave.open(str(path)) as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    mono = frames.reshape(-1, channels)[:, 0].astype(np.float64)
    piece = mono[int(start_s * rate) : int((start_s + seconds) * rate)]
    spectrum = np.abs(np.fft.rfft(piece * np.hanning(len(piece)))) ** 2
    return float(np.fft.rfftfreq(len(piece), 1 / rate)[int(np.argmax(spectrum[1:])) + 1])


def main_number_rings(pbx: RunningPlatform, admin: dict[str, str], agent: dict[str, str]) -> None:
    """acme's main number rings the agent (all their devices: here, the browser)."""
    with pbx.api(admin) as api:
        numbers = api.get("/v1/numbers", params={"limit": 200}).json()["items"]
        [main] = [number for number in numbers if number["number"] == MAIN_NUMBER]
        routed = api.patch(
            f"/v1/numbers/{main['id']}", json={"entry": {"type": "user", "user_id": agent["id"]}}
        )
        assert routed.status_code == 200, routed.text


def test_a_clients_call_pops_the_card_before_the_browser_rings_and_both_sides_hear_each_other(
    pbx: RunningPlatform,
    admin: dict[str, str],
    agent: dict[str, str],
    browser: Browser,
    baresip_factory: Any,
    tmp_path: Path,
) -> None:
    """The issue's call: a known client (baresip, playing 1 kHz) calls the tenant's number,
    which rings the agent; the card pops with the client's name before the browser rings
    (both moments recorded); the agent answers in the browser; the page hears 1 kHz (WebAudio)
    and the caller hears the browser's 440 Hz; after the hang-up the call and its recording
    are on the card."""
    caller_phone = f"+7913{secrets.randbelow(10**7):07d}"
    main_number_rings(pbx, admin, agent)
    with pbx.api(admin) as api:
        recorded = api.patch(f"/v1/users/{agent['id']}", json={"settings": {"record": True}})
        assert recorded.status_code == 200, recorded.text
    with pbx.crm(admin) as crm:
        created = crm.post(
            "/v1/contacts",
            json={"name": "Anna Caller", "phones": [caller_phone], "owner_user_id": agent["id"]},
        )
        assert created.status_code == 201, created.text
    contact = created.json()
    time.sleep(1.5)  # the nodes load the changed number and user (config invalidation)

    tab = open_tab(browser, pbx, agent["email"], agent["password"])
    caller = None
    try:
        phone = tab.locator(".softphone-dock .softphone")
        expect(phone).to_have_attribute("data-registration", "registered")
        caller = baresip_factory(
            caller_phone,
            None,
            pbx.host,
            proxy=(pbx.host, pbx.sip_port),
            regint=0,
            record=True,
            tone_hz=CALLER_TONE_HZ,
        )
        caller.start()
        caller.dial(f"sip:{MAIN_NUMBER}@{pbx.host}")

        pop = tab.locator(".screen-pop", has_text="Anna Caller")
        expect(pop).to_be_visible(timeout=15_000)
        expect(phone.get_by_role("button", name="Answer")).to_be_visible(timeout=15_000)
        pops = tab.evaluate("window.__vpbx ? window.__vpbx.pops : []")
        rings = tab.evaluate("window.__vpbxRings || []")
        shown = [p["shown_ms"] for p in pops if p.get("shown_ms")]
        assert shown, pops
        assert rings, rings
        lead = rings[0]["at_ms"] - min(shown)
        print(f"\nthe card was on screen {lead:.0f} ms before the browser rang")
        assert min(shown) <= rings[0]["at_ms"], (pops, rings)
        artifact(tab, tmp_path, "call-pop-and-ring.png")

        phone.get_by_role("button", name="Answer").click()
        caller.wait_call_state("ESTABLISHED", timeout=15)
        expect(phone.get_by_text("Talking to")).to_be_visible()
        tab.wait_for_function(
            "() => { const a = document.querySelector('[data-testid=softphone-audio]');"
            " return a && a.srcObject && a.srcObject.getAudioTracks().length > 0; }"
        )
        in_page = tab.evaluate(HEARD_IN_PAGE_JS, 1500)
        assert abs(in_page - CALLER_TONE_HZ) < 30, in_page
        phone.get_by_role("button", name="Hang up").click()
        caller.wait_no_calls(timeout=10)
        [heard] = caller.heard()
        at_caller = heard_hz(heard, 0.5, 1.0)
        assert abs(at_caller - VOICE_HZ) < 30, at_caller

        # The call and its recording land on the client's card (the recording is served
        # once the call's record reached the CDR store).
        deadline = time.monotonic() + 30
        while not any(record["caller"] == caller_phone for record in pbx.calls(20)):
            assert time.monotonic() < deadline, "the call never reached the CDR store"
            time.sleep(0.5)
        tab.goto(f"/contacts/{contact['id']}")
        row = tab.locator("tr[data-call-id]").first
        expect(row.get_by_role("button", name="Recording")).to_be_visible(timeout=30_000)
        row.get_by_role("button", name="Recording").click()
        expect(row.locator("audio[aria-label=Recording]")).to_be_visible()
        artifact(tab, tmp_path, "call-on-the-card.png")
    finally:
        if caller is not None:
            caller.stop()
        close_tab(tab)


def test_an_unknown_callers_missed_call_becomes_a_contact_and_a_task_in_the_workspace(
    pbx: RunningPlatform,
    admin: dict[str, str],
    agent: dict[str, str],
    browser: Browser,
    baresip_factory: Any,
    tmp_path: Path,
) -> None:
    """A number the CRM does not know calls; the browser rings with "unknown number" on
    screen; the caller gives up; the agent finds the new contact and the missed-call task
    to call them back in the workspace."""
    digits = f"{secrets.randbelow(10**7):07d}"
    caller_phone = f"+7913{digits}"
    pretty = f"+7 913 {digits[:3]}-{digits[3:5]}-{digits[5:]}"
    main_number_rings(pbx, admin, agent)
    time.sleep(1.5)  # the nodes load the changed number
    tab = open_tab(browser, pbx, agent["email"], agent["password"])
    caller = None
    try:
        phone = tab.locator(".softphone-dock .softphone")
        expect(phone).to_have_attribute("data-registration", "registered")
        caller = baresip_factory(
            caller_phone, None, pbx.host, proxy=(pbx.host, pbx.sip_port), regint=0
        )
        caller.start()
        caller.dial(f"sip:{MAIN_NUMBER}@{pbx.host}")
        expect(tab.locator(".screen-pop", has_text="Unknown number")).to_be_visible(timeout=15_000)
        expect(phone.get_by_role("button", name="Answer")).to_be_visible(timeout=15_000)
        caller.hangup()  # nobody answered
        expect(phone.get_by_role("button", name="Answer")).to_have_count(0)

        tab.goto("/tasks")
        task = tab.locator("tr", has_text=f"Missed call from {pretty}")
        expect(task).to_be_visible(timeout=20_000)
        artifact(tab, tmp_path, "missed-call-task.png")
        task.get_by_role("link", name=pretty).click()
        expect(tab.get_by_role("heading", name=pretty)).to_be_visible()
        expect(tab.locator("table.calls tr.missed")).to_have_count(1)
    finally:
        if caller is not None:
            caller.stop()
        close_tab(tab)


QUEUE_AGENT_EXTENSION = "160"


def test_a_caller_waiting_in_a_queue_shows_on_the_supervisors_board_then_talking(
    pbx: RunningPlatform,
    admin: dict[str, str],
    browser: Browser,
    baresip_factory: Any,
    tmp_path: Path,
) -> None:
    """The live board with real peers: a caller (baresip) dials a number whose route is a
    queue; nobody can take the call yet (the only agent has no phone on), so the
    supervisor's page lists them waiting in that queue with a running wait and the call
    as queued; the agent opens the workspace (the browser's softphone registers), the
    queue offers the call, the board shows it ringing, then talking to the agent, and it
    leaves the board when the caller hangs up."""
    digits = f"{secrets.randbelow(10**7):07d}"
    caller_phone = f"+7913{digits}"
    pretty = f"+7 913 {digits[:3]}-{digits[3:5]}-{digits[5:]}"
    queue_name = f"board-{secrets.token_hex(3)}"
    vera = new_agent(pbx, admin, "Vera Queue", QUEUE_AGENT_EXTENSION)
    with pbx.api(admin) as api:
        group = api.post(
            "/v1/groups", json={"name": queue_name, "members": [{"user_id": vera["id"]}]}
        )
        assert group.status_code == 201, group.text
        plan = api.post(
            "/v1/route-plans",
            json={
                "name": queue_name,
                "steps": [{"type": "queue", "group_id": group.json()["id"], "max_wait_s": 300}],
            },
        )
        assert plan.status_code == 201, plan.text
        numbers = api.get("/v1/numbers", params={"limit": 200}).json()["items"]
        [main] = [number for number in numbers if number["number"] == MAIN_NUMBER]
        routed = api.patch(
            f"/v1/numbers/{main['id']}",
            json={"entry": {"type": "route-plan", "route_plan_id": plan.json()["id"]}},
        )
        assert routed.status_code == 200, routed.text
    time.sleep(1.5)  # the nodes load the changed number (config invalidation)

    boss = open_tab(browser, pbx, *ADMIN)
    tab = None
    caller = None
    try:
        boss.goto("/supervisor")
        expect(boss.get_by_text("Nobody waits in a queue")).to_be_visible()
        caller = baresip_factory(
            caller_phone, None, pbx.host, proxy=(pbx.host, pbx.sip_port), regint=0
        )
        caller.start()
        caller.dial(f"sip:{MAIN_NUMBER}@{pbx.host}")
        caller.wait_call_state("ESTABLISHED", timeout=15)  # the queue answers: music

        queue_row = boss.locator(f"tr[data-queue='{queue_name}']")
        expect(queue_row.locator("[data-field=waiting]")).to_have_text("1", timeout=15_000)
        waiting = queue_row.locator("li[data-state=queued]", has_text=pretty)
        expect(waiting).to_be_visible()
        # The wait runs on the page: past a second, whatever the moment it was read.
        expect(waiting.locator("[data-field=wait]")).not_to_have_text("0:00")
        expect(queue_row.locator("[data-field=longest]")).not_to_have_text("0:00")
        call_row = boss.locator("table.live-calls tr", has_text=pretty)
        expect(call_row).to_have_attribute("data-state", "queued")
        expect(call_row).to_contain_text("waiting in queue")
        artifact(boss, tmp_path, "board-queued.png")

        tab = open_tab(browser, pbx, vera["email"], vera["password"])
        phone = tab.locator(".softphone-dock .softphone")
        expect(phone).to_have_attribute("data-registration", "registered")
        expect(phone.get_by_role("button", name="Answer")).to_be_visible(timeout=15_000)
        expect(call_row).to_have_attribute("data-state", "ringing")
        expect(call_row.locator("[data-field=with]")).to_have_text("Vera Queue")
        phone.get_by_role("button", name="Answer").click()
        expect(phone.get_by_text("Talking to")).to_be_visible()

        expect(call_row).to_have_attribute("data-state", "talking")
        expect(call_row.locator("[data-field=with]")).to_have_text("Vera Queue")
        expect(boss.get_by_text("Nobody waits in a queue")).to_be_visible()
        agent_row = boss.locator(f"tr[data-extension='{QUEUE_AGENT_EXTENSION}']")
        expect(agent_row).to_have_attribute("data-state", "talking")
        artifact(boss, tmp_path, "board-talking.png")

        caller.hangup()
        expect(call_row).to_have_count(0)

        # Then in the reports: the node ships the CDR, the report counts it for Vera,
        # answered after a wait in the queue (the extension is only hers in this run).
        today = datetime.now(UTC).date()
        window = {"from": str(today - timedelta(days=1)), "to": str(today), "tz": "UTC"}
        row = _report_row(pbx, admin, {**window, "group_by": "user"}, QUEUE_AGENT_EXTENSION)
        assert row["total"] == row["answered"] == row["queued"] == 1, row
        assert row["queue_wait_s"] > 1, row
        assert row["talk_s"] > 0, row
        by_queue = _report_row(pbx, admin, {**window, "group_by": "group"}, queue_name)
        assert by_queue["answered"] == 1, by_queue
        boss.goto(f"/reports?from={window['from']}&to={window['to']}&tz=UTC&group_by=group")
        shown = boss.locator(f"tr[data-key='{queue_name}']")
        expect(shown).to_be_visible(timeout=15_000)
        artifact(boss, tmp_path, "board-call-in-reports.png")
    finally:
        if caller is not None:
            caller.stop()
        if tab is not None:
            close_tab(tab)
        close_tab(boss)


def _report_row(
    pbx: RunningPlatform, admin: dict[str, str], params: dict[str, str], key: str
) -> dict[str, Any]:
    """The calls report's row for ``key``, once the node's shipper has stored the call."""
    deadline = time.monotonic() + 30
    with pbx.api(admin) as api:
        while True:
            answer = api.get("/v1/reports/calls", params=params)
            assert answer.status_code == 200, answer.text
            rows = {row["key"]: row for row in answer.json()["rows"]}
            if key in rows or time.monotonic() > deadline:
                assert key in rows, answer.json()
                found: dict[str, Any] = rows[key]
                return found
            time.sleep(0.5)
