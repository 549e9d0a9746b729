"""Call routing on live calls: what an admin sets up through the control API is what
callers get, with real peers.

`vpbx up` in a subprocess (control API seeded from examples/demo.yaml), baresip
agents that answer (or not), sipp or a recording baresip as the carrier, all on
loopback. The demo tenant acme has 101 and 102 (msk) and 201 (ekb) and the
number +74950000001, whose entry is the sales group.

One `vpbx up` serves the whole module: each test starts from the demo's routing (the
``platform`` fixture puts it back) and sets up the rest through the control API.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import threading
import time
import wave
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from tests.services.baresip import Baresip, BaresipFactory
from tests.services.platform import RunningPlatform
from tests.services.sipp import SippFactory
from vpbx_common.signing import verify
from vpbx_media.media import g711, tones

pytestmark = pytest.mark.integration

ACME = "acme.vpbx.local"
ACME_MAIN = "+74950000001"
CALLER = "+79130000001"
ACME_ADMIN = ("admin@acme.vpbx.local", "acme-admin-secret")
PASSWORDS = {"101": "acme-101-secret", "102": "acme-102-secret", "201": "acme-201-secret"}


def agent(
    factory: BaresipFactory, platform: RunningPlatform, extension: str, *, answers: bool = True
) -> Baresip:
    phone = factory(
        extension,
        PASSWORDS[extension],
        ACME,
        proxy=(platform.host, platform.sip_port),
        auto_answer=answers,
    )
    phone.start()
    phone.wait_registered(timeout=15)
    return phone


def recording_caller(factory: BaresipFactory, platform: RunningPlatform) -> Baresip:
    """A carrier's caller as a baresip that records what it hears (no registration)."""
    phone = factory(
        CALLER, None, platform.host, proxy=(platform.host, platform.sip_port), regint=0, record=True
    )
    phone.start()
    return phone


@contextmanager
def admin_api(platform: RunningPlatform) -> Iterator[httpx.Client]:
    with platform.api(platform.login(*ACME_ADMIN)) as client:
        yield client


def ids_by_extension(api: httpx.Client) -> dict[str, str]:
    users = api.get("/v1/users", params={"limit": 200}).json()["items"]
    return {user["extension"]: user["id"] for user in users if user["extension"]}


def sales_group(api: httpx.Client) -> dict[str, Any]:
    [sales] = api.get("/v1/groups", params={"name": "sales"}).json()["items"]
    return dict(sales)


def set_sales(api: httpx.Client, members: list[str], **fields: Any) -> None:
    users = ids_by_extension(api)
    body = {"members": [{"user_id": users[extension]} for extension in members], **fields}
    changed = api.patch(f"/v1/groups/{sales_group(api)['id']}", json=body)
    assert changed.status_code == 200, changed.text


def group_of_its_own(api: httpx.Client, members: list[str], **fields: Any) -> dict[str, Any]:
    """A new group for one test: what the nodes remember of a group between calls (whom
    its round robin rang last, how long its queue's callers waited) goes by its name, and
    must not carry over from an earlier test on the same platform."""
    users = ids_by_extension(api)
    body = {
        "name": one_off("team"),
        "members": [{"user_id": users[extension]} for extension in members],
        **fields,
    }
    return created(api, "/v1/groups", body)


def route_main_number(api: httpx.Client, entry: dict[str, Any]) -> None:
    numbers = api.get("/v1/numbers", params={"limit": 200}).json()["items"]
    [main] = [number for number in numbers if number["number"] == ACME_MAIN]
    changed = api.patch(f"/v1/numbers/{main['id']}", json={"entry": entry})
    assert changed.status_code == 200, changed.text


def created(api: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post(path, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def one_off(name: str) -> str:
    """``name`` made unique: the tenant's names of groups, menus, plans and schedules must
    not repeat, and the tests sharing a platform each create their own."""
    return f"{name}-{secrets.token_hex(3)}"


def wait_for_reload(
    platform: RunningPlatform, timeout: float = 10, tenant: str = "acme", city: str = "msk"
) -> None:
    """Until the tenant's node in ``city`` runs the config the control API serves now."""
    headers = {"Authorization": f"Bearer {platform.service_token}"}
    with platform.api(headers) as client:
        served = client.get(f"/internal/v1/node-config/{tenant}/{city}")
        current = served.headers["ETag"].strip('"')
    # The version the node switched to last: a version is its content, so a change undone
    # brings back one the log already names from before.
    versions = re.compile(
        rf"tenant={tenant} city={city} config version (?:\S+ -> (\S+)|(\S+) loaded)"
    )

    def running() -> str | None:
        found = versions.findall(platform.log())
        return (found[-1][0] or found[-1][1]) if found else None

    deadline = time.monotonic() + timeout
    while running() != current:
        if time.monotonic() > deadline:
            raise AssertionError(f"the {tenant}/{city} node never loaded config {current}")
        time.sleep(0.05)


def route_as_in_the_demo(platform: RunningPlatform) -> None:
    """Acme's routing back to the demo's, whatever a test before changed: the sales group
    rings 101, 102 and 201 all at once for 30 s with no overflow, the main number's calls
    go to it (recorded as the tenant's policy says, any number at once), and everybody is
    available. Also waits until the phones and calls of the tests before are gone."""
    platform.wait_until_idle()
    with admin_api(platform) as api:
        set_sales(
            api,
            ["101", "102", "201"],
            strategy="ring-all",
            ring_timeout_s=30,
            escalation_interval_s=10,
            member_ring_s=None,
            overflow=None,
        )
        numbers = api.get("/v1/numbers", params={"limit": 200}).json()["items"]
        [main] = [number for number in numbers if number["number"] == ACME_MAIN]
        entry = {"type": "group", "group_id": sales_group(api)["id"]}
        changed = api.patch(
            f"/v1/numbers/{main['id']}", json={"entry": entry, "record": None, "channels": 0}
        )
        assert changed.status_code == 200, changed.text
        for user in ids_by_extension(api).values():
            available = api.put(f"/v1/users/{user}/presence", json={"presence": "available"})
            assert available.status_code == 200, available.text
    wait_for_reload(platform)


@pytest.fixture
def platform(shared_platform: RunningPlatform) -> RunningPlatform:
    """The module's platform routed as in the demo, its calls() those of this test."""
    route_as_in_the_demo(shared_platform)
    return shared_platform.for_one_test()


def carrier_call(
    sipp: SippFactory, platform: RunningPlatform, scenario: str = "uac_call.xml", **options: Any
) -> Any:
    settings: dict[str, Any] = {
        "remote": (platform.host, platform.sip_port),
        "service": ACME_MAIN,
        "keys": {"domain": platform.host, "caller": CALLER},
        "timeout": 60,
        "pause_ms": 1500,
    }
    settings.update(options)
    return sipp(scenario, **settings)


def incoming(phone: Baresip) -> int:
    """Calls offered to this phone so far (baresip logs each one as it rings, or as it
    answers by itself)."""
    log = phone.log_text()
    return log.count("Incoming call from") + log.count("call: answering call on line")


def settled_calls(platform: RunningPlatform, count: int) -> list[dict[str, Any]]:
    """The last ``count`` CDRs, oldest first."""
    records = platform.calls(count, wait_for=count, timeout=40)
    return sorted(records, key=lambda record: int(record["start_ms"]))


def dominant_hz(path: Path, start_s: float, seconds: float) -> tuple[float, float]:
    """(frequency with the most energy, its share of the energy) in a slice of a WAV."""
    with wave.open(str(path)) as wav:
        rate, channels = wav.getframerate(), wav.getnchannels()
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    mono = frames.reshape(-1, channels)[:, 0].astype(np.float64)
    piece = mono[int(start_s * rate) : int((start_s + seconds) * rate)]
    spectrum = np.abs(np.fft.rfft(piece * np.hanning(len(piece)))) ** 2
    frequencies = np.fft.rfftfreq(len(piece), 1 / rate)
    peak = int(np.argmax(spectrum[1:])) + 1
    band = spectrum[max(peak - 3, 1) : peak + 4].sum()
    return float(frequencies[peak]), float(band / spectrum[1:].sum())


# --- group strategies -------------------------------------------------------------


def test_sequential_group_rings_the_next_member_when_the_first_does_not_answer(
    platform: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    busy_elsewhere = agent(baresip_factory, platform, "101", answers=False)
    maria = agent(baresip_factory, platform, "102")
    with admin_api(platform) as api:
        set_sales(api, ["101", "102"], strategy="sequential", ring_timeout_s=12)
    wait_for_reload(platform)

    started = time.monotonic()
    caller = carrier_call(sipp_factory, platform)
    caller.start()
    maria.wait_call_state("ESTABLISHED", timeout=20)
    answered_after = time.monotonic() - started
    result = caller.wait()

    assert result.all_succeeded, result.describe() + platform.log()[-3000:]
    assert incoming(busy_elsewhere) == 1  # 101 rang first ...
    assert answered_after >= 5.0, answered_after  # ... for its share (12 s / 2 members)
    busy_elsewhere.wait_no_calls(timeout=5)  # and stopped ringing when its turn was over
    [record] = settled_calls(platform, 1)
    assert (record["answered_by"], record["end_reason"]) == ("102", "completed")


def test_round_robin_starts_after_the_member_who_rang_last_across_calls(
    platform: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    for extension in ("101", "102", "201"):
        agent(baresip_factory, platform, extension)
    with admin_api(platform) as api:
        team = group_of_its_own(api, ["101", "102", "201"], strategy="round-robin")
        route_main_number(api, {"type": "group", "group_id": team["id"]})
    wait_for_reload(platform)

    for _ in range(4):
        result = carrier_call(sipp_factory, platform, pause_ms=300).run()
        assert result.all_succeeded, result.describe() + platform.log()[-3000:]

    answered = [record["answered_by"] for record in settled_calls(platform, 4)]
    assert answered == ["101", "102", "201", "101"]


def test_busy_and_do_not_disturb_members_are_skipped_without_ringing(
    platform: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    resting = agent(baresip_factory, platform, "101")
    talking = agent(baresip_factory, platform, "102")
    boris = agent(baresip_factory, platform, "201")
    with admin_api(platform) as api:
        set_sales(api, ["101", "102", "201"], strategy="sequential")
        users = ids_by_extension(api)
        dnd = api.put(f"/v1/users/{users['101']}/presence", json={"presence": "do-not-disturb"})
        assert dnd.status_code == 200, dnd.text
    wait_for_reload(platform)
    # 102 is on a call: sequential skips 101 (do not disturb) and rings 102 first.
    first = carrier_call(sipp_factory, platform, pause_ms=8000)
    first.start()
    talking.wait_call_state("ESTABLISHED", timeout=20)

    second = carrier_call(sipp_factory, platform, pause_ms=500).run()
    first_result = first.wait()

    assert second.all_succeeded, second.describe() + platform.log()[-3000:]
    assert first_result.all_succeeded, first_result.describe()
    assert incoming(resting) == 0  # do-not-disturb never rang
    assert incoming(talking) == 1  # busy: not offered the second call
    assert incoming(boris) == 1
    answered = [record["answered_by"] for record in settled_calls(platform, 2)]
    assert answered == ["102", "201"]


def test_nobody_answering_goes_to_the_overflow_after_the_group_timeout(
    platform: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    silent = agent(baresip_factory, platform, "101", answers=False)
    boris = agent(baresip_factory, platform, "201")
    with admin_api(platform) as api:
        users = ids_by_extension(api)
        overflow = {"type": "user", "user_id": users["201"]}
        set_sales(api, ["101"], ring_timeout_s=5, overflow=overflow)
    wait_for_reload(platform)

    started = time.monotonic()
    caller = carrier_call(sipp_factory, platform)
    caller.start()
    boris.wait_call_state("ESTABLISHED", timeout=20)
    overflowed_after = time.monotonic() - started
    result = caller.wait()

    assert result.all_succeeded, result.describe() + platform.log()[-3000:]
    assert overflowed_after >= 4.5, overflowed_after
    assert incoming(silent) == 1
    [record] = settled_calls(platform, 1)
    assert record["answered_by"] == "201"


# --- route plans ------------------------------------------------------------------


def test_outside_working_hours_the_closed_branch_takes_the_call(
    platform: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    sales = agent(baresip_factory, platform, "101")
    duty = agent(baresip_factory, platform, "201")
    today = time.strftime("%Y-%m-%d", time.gmtime())
    with admin_api(platform) as api:
        users = ids_by_extension(api)
        holiday = created(
            api,
            "/v1/schedules",
            {
                "name": one_off("office"),
                "time_zone": "UTC",
                "weekly": [
                    {"day": day, "start": "00:00", "end": "23:59"}
                    for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
                ],
                # Closed all day today, whatever the hour: a holiday.
                "special_days": [{"date": today, "name": "holiday", "hours": []}],
            },
        )
        plan = created(
            api,
            "/v1/route-plans",
            {
                "name": one_off("daytime"),
                "steps": [
                    {
                        "type": "schedule",
                        "schedule_id": holiday["id"],
                        "branches": {
                            "open": [{"type": "group", "group_id": sales_group(api)["id"]}],
                            "closed": [{"type": "user", "user_id": users["201"]}],
                        },
                    },
                    {"type": "hangup", "reason": "unavailable"},
                ],
            },
        )
        route_main_number(api, {"type": "route-plan", "route_plan_id": plan["id"]})
    wait_for_reload(platform)

    result = carrier_call(sipp_factory, platform).run()

    assert result.all_succeeded, result.describe() + platform.log()[-3000:]
    assert incoming(sales) == 0
    assert incoming(duty) == 1
    [record] = settled_calls(platform, 1)
    assert record["answered_by"] == "201"


# --- IVR ------------------------------------------------------------------------

PROMPT_HZ = 600


def ivr_on_main_number(platform: RunningPlatform) -> None:
    """Main menu: a 600 Hz prompt; 1 -> 102, 2 -> 201; no key -> hang up."""
    with admin_api(platform) as api:
        users = ids_by_extension(api)
        menu = created(
            api,
            "/v1/ivr-menus",
            {
                "name": one_off("main"),
                "prompt": {"kind": "tone", "frequency_hz": PROMPT_HZ, "duration_ms": 1500},
                "options": {
                    "1": {"type": "user", "user_id": users["102"]},
                    "2": {"type": "user", "user_id": users["201"]},
                },
                "timeout_s": 8,
                "max_retries": 0,
            },
        )
        route_main_number(api, {"type": "ivr", "ivr_menu_id": menu["id"]})
    wait_for_reload(platform)


def test_the_caller_hears_the_ivr_prompt_and_a_key_press_reaches_the_chosen_person(
    platform: RunningPlatform, baresip_factory: BaresipFactory
) -> None:
    maria = agent(baresip_factory, platform, "102")
    boris = agent(baresip_factory, platform, "201")
    ivr_on_main_number(platform)
    caller = recording_caller(baresip_factory, platform)

    caller.dial(f"sip:{ACME_MAIN}@{platform.host}")
    caller.wait_call_state("ESTABLISHED", timeout=15)  # the menu answers
    time.sleep(1.8)  # the whole prompt
    caller.send_digits("2")  # RFC 4733 telephone-event
    boris.wait_call_state("ESTABLISHED", timeout=15)
    time.sleep(1.0)
    caller.hangup()
    boris.wait_no_calls(timeout=10)

    assert incoming(maria) == 0
    [record] = settled_calls(platform, 1)
    assert (record["answered_by"], record["end_reason"]) == ("201", "completed")
    caller.wait_no_calls(timeout=5)
    [heard] = caller.heard()
    frequency, share = dominant_hz(heard, 0.3, 1.0)
    assert abs(frequency - PROMPT_HZ) < 15, (frequency, share)
    assert share > 0.5, (frequency, share)


def test_a_key_pressed_by_sip_info_chooses_the_ivr_option(
    platform: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    maria = agent(baresip_factory, platform, "102")
    ivr_on_main_number(platform)

    result = carrier_call(
        sipp_factory, platform, "uac_dtmf_info.xml", pause_ms=4000, variables={"digit": "1"}
    ).run()

    assert result.all_succeeded, result.describe() + platform.log()[-3000:]
    assert incoming(maria) == 1
    [record] = settled_calls(platform, 1)
    assert record["answered_by"] == "102"


def test_a_key_pressed_as_an_inband_tone_chooses_the_ivr_option(
    platform: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    boris = agent(baresip_factory, platform, "201")
    ivr_on_main_number(platform)
    caller = carrier_call(sipp_factory, platform, "uac_dtmf_inband.xml", pause_ms=5000)
    # Half a second of silence, the key 2 for 120 ms, then silence: what a phone without
    # telephone-event sends.
    audio = tones.silence(4000)
    audio.extend(tones.dtmf("2", 120))
    audio.extend(tones.silence(8000))
    caller.workdir.mkdir(parents=True, exist_ok=True)
    (caller.workdir / "dtmf-inband.pcmu").write_bytes(g711.Codec.PCMU.encode(audio))

    result = caller.run()

    assert result.all_succeeded, result.describe() + platform.log()[-3000:]
    assert incoming(boris) == 1
    [record] = settled_calls(platform, 1)
    assert record["answered_by"] == "201"


# --- HTTP decisions ---------------------------------------------------------------


class DecisionServer:
    """The tenant's back office: answers each decision request with the next planned reply."""

    def __init__(self) -> None:
        self.replies: list[tuple[float, bytes]] = []  # (delay, body) per request
        self.requests: list[tuple[dict[str, str], bytes]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                server.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                delay, reply = server.replies.pop(0) if server.replies else (0.0, b"{}")
                time.sleep(delay)
                with contextlib.suppress(OSError):  # the node may have given up already
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(reply)))
                    self.end_headers()
                    self.wfile.write(reply)

            def log_message(self, format: str, *args: object) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/route"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> DecisionServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_an_http_decision_routes_the_call_and_any_failure_takes_the_fallback(
    platform: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    agent(baresip_factory, platform, "102")
    agent(baresip_factory, platform, "201")
    with DecisionServer() as back_office:
        with admin_api(platform) as api:
            users = ids_by_extension(api)
            secret = api.post("/v1/route-plans/decision-secret").json()["secret"]
            plan = created(
                api,
                "/v1/route-plans",
                {
                    "name": one_off("back office"),
                    "steps": [
                        {
                            "type": "http-decision",
                            "url": back_office.url,
                            "timeout_ms": 800,
                            "fallback": {"type": "user", "user_id": users["102"]},
                        }
                    ],
                },
            )
            route_main_number(api, {"type": "route-plan", "route_plan_id": plan["id"]})
        wait_for_reload(platform)

        back_office.replies = [
            (0.0, b'{"action": "ring", "targets": ["201"], "ring_timeout_s": 20}'),
            (2.0, b'{"action": "ring", "targets": ["201"]}'),  # too late: 800 ms
            (0.0, b"<html>not a decision</html>"),
        ]
        for _ in range(3):
            result = carrier_call(sipp_factory, platform, pause_ms=300).run()
            assert result.all_succeeded, result.describe() + platform.log()[-3000:]

    answered = [record["answered_by"] for record in settled_calls(platform, 3)]
    assert answered == ["201", "102", "102"]
    headers, body = back_office.requests[0]
    assert verify(secret, headers["x-vpbx-signature"], body)
    request = json.loads(body)
    assert (request["tenant"], request["number"], request["caller"]) == ("acme", ACME_MAIN, CALLER)


# --- queues -----------------------------------------------------------------------


def rms(path: Path, start_s: float, seconds: float) -> float:
    with wave.open(str(path)) as wav:
        rate = wav.getframerate()
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    piece = frames[int(start_s * rate) : int((start_s + seconds) * rate)].astype(np.float64)
    return float(np.sqrt(np.mean(piece**2))) if len(piece) else 0.0


def test_a_second_caller_waits_with_music_and_gets_the_agent_when_the_first_call_ends(
    platform: RunningPlatform, sipp_factory: SippFactory, baresip_factory: BaresipFactory
) -> None:
    agent(baresip_factory, platform, "101")
    with admin_api(platform) as api:
        team = group_of_its_own(api, ["101"])
        plan = created(
            api,
            "/v1/route-plans",
            {
                "name": one_off("queue"),
                "steps": [
                    {"type": "queue", "group_id": team["id"], "max_wait_s": 60},
                    {"type": "hangup", "reason": "unavailable"},
                ],
            },
        )
        route_main_number(api, {"type": "route-plan", "route_plan_id": plan["id"]})
    wait_for_reload(platform)
    first = carrier_call(sipp_factory, platform, pause_ms=5000)
    second = recording_caller(baresip_factory, platform)

    first.start()
    time.sleep(1.5)  # the agent talks to the first caller
    second.dial(f"sip:{ACME_MAIN}@{platform.host}")
    second.wait_call_state("ESTABLISHED", timeout=15)  # the queue answers
    first_result = first.wait()
    time.sleep(3.0)  # the agent is offered the second caller and answers
    second.hangup()
    second.wait_no_calls(timeout=10)

    assert first_result.all_succeeded, first_result.describe() + platform.log()[-3000:]
    records = settled_calls(platform, 2)
    assert [record["answered_by"] for record in records] == ["101", "101"]
    assert int(records[1]["answer_ms"]) >= int(records[0]["end_ms"])  # after the first ended
    [heard] = second.heard()
    waited_s = (int(records[1]["answer_ms"]) - int(records[1]["start_ms"])) / 1000
    # While waiting: music (quiet, below the agent's tone), not silence and not the agent.
    music_hz, _ = dominant_hz(heard, 0.5, 1.0)
    assert rms(heard, 0.5, 1.0) > 100
    assert music_hz < 500, music_hz
    # Then the agent's 1 kHz tone.
    agent_hz, _ = dominant_hz(heard, waited_s + 0.5, 0.5)
    assert abs(agent_hz - 1000) < 15, (agent_hz, waited_s)


def speech_windows(path: Path, start_s: float, end_s: float) -> list[float]:
    """Start times of the 0.5 s windows that sound like speech: loud, with their energy
    spread over many frequencies (the hold music is one quiet sine at a time)."""
    found = []
    at = start_s
    while at + 0.5 <= end_s:
        _, share = dominant_hz(path, at, 0.5)
        if rms(path, at, 0.5) > 400 and share < 0.35:
            found.append(at)
        at += 0.25
    return found


def test_a_queued_caller_hears_their_place_and_leaves_with_the_exit_digit(
    platform: RunningPlatform, baresip_factory: BaresipFactory
) -> None:
    agent(baresip_factory, platform, "101")
    boris = agent(baresip_factory, platform, "201")
    with admin_api(platform) as api:
        team = group_of_its_own(api, ["101"])
        users = ids_by_extension(api)
        # The queue's only member is on do-not-disturb: the caller waits.
        dnd = api.put(f"/v1/users/{users['101']}/presence", json={"presence": "do-not-disturb"})
        assert dnd.status_code == 200, dnd.text
        plan = created(
            api,
            "/v1/route-plans",
            {
                "name": one_off("queue"),
                "steps": [
                    {
                        "type": "queue",
                        "group_id": team["id"],
                        "max_wait_s": 120,
                        "announce_position": True,
                        "announce_every_s": 60,
                        "exit_digit": "1",
                    },
                    {"type": "user", "user_id": users["201"]},
                ],
            },
        )
        route_main_number(api, {"type": "route-plan", "route_plan_id": plan["id"]})
    wait_for_reload(platform)
    caller = recording_caller(baresip_factory, platform)

    caller.dial(f"sip:{ACME_MAIN}@{platform.host}")
    caller.wait_call_state("ESTABLISHED", timeout=15)  # the queue answers
    time.sleep(12.0)  # the phrases are rendered (first time), the announcement is said
    caller.send_digits("1")
    boris.wait_call_state("ESTABLISHED", timeout=15)
    time.sleep(1.0)
    caller.hangup()
    boris.wait_no_calls(timeout=10)

    [record] = settled_calls(platform, 1)
    assert record["answered_by"] == "201", platform.log()[-3000:]
    details = [step["detail"] for step in record["route"]]
    # Nobody answered from this queue yet: two minutes per caller, one member.
    assert "announced place 1, about 2 min" in details, details
    assert "left: caller pressed 1" in details, details
    caller.wait_no_calls(timeout=5)
    [heard] = caller.heard()
    answered_s = (int(record["answer_ms"]) - int(record["start_ms"])) / 1000
    speech = speech_windows(heard, 0.0, answered_s - 1.0)
    # About 3 s of speech or more (five phrases), then the music again.
    assert len(speech) >= 8, speech
    music = [
        at
        for at in np.arange(speech[-1] + 1.0, answered_s - 1.5, 0.5)
        if dominant_hz(heard, float(at), 0.4)[1] > 0.5
        and dominant_hz(heard, float(at), 0.4)[0] < 500
    ]
    assert music, (speech, answered_s)
    assert max(speech) - min(speech) < 12, speech
