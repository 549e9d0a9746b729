"""Calls out and between people, with real peers: transfers, a conference room, pickup,
park, follow-me and click-to-call, each proven by what the people hear.

One `vpbx up` (examples/demo.yaml) serves the whole module; each test sets the routing
it needs through the control API. Every person is a baresip phone sending a sine tone
of its own pitch and recording what each of its calls heard; the spectrum of those
recordings says who talked to whom after each action. "Outside" people (the caller
of a carrier, a mobile) are baresip too: the caller sends to the edge from loopback
(the demo's platform carrier allows it), the mobile answers behind a tenant trunk that
points at it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from tests.services.baresip import Baresip, BaresipFactory
from tests.services.platform import RunningPlatform, start_platform
from tests.services.ports import free_port
from tests.services.sipp import Sipp, SippFactory
from tests.test_call_media import CALLER_HZ, caller_phone, peak_hz, wav_channels
from tests.test_call_routing import (
    ACME,
    ACME_MAIN,
    PASSWORDS,
    admin_api,
    created,
    ids_by_extension,
    route_main_number,
    wait_for_reload,
)
from tests.test_calls_out import add_trunk

pytestmark = pytest.mark.integration

# Each person's own pitch (the carrier's caller sends CALLER_HZ, 600 Hz).
TONES = {"101": 900, "102": 1300, "103": 1700}
MOBILE_HZ = 2100
SIPP_HZ = 1000  # sipp's tone file
MOBILE = "+79161234567"
ROOM = "800"
# A band's share of a recording's energy: a voice heard has a good part of it, one not
# heard nothing but G.711 noise and window leakage.
HEARD, NOT_HEARD = 0.15, 0.02


@dataclass
class Pbx:
    """The module's platform and the people it knows, all in Moscow: 101 and 102 of the
    demo (both in the sales group), and 103, added through the control API."""

    platform: RunningPlatform
    passwords: dict[str, str] = field(default_factory=dict)
    users: dict[str, str] = field(default_factory=dict)  # extension -> user id


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory, module_flushed_redis: str) -> Iterator[Pbx]:
    platform = start_platform(tmp_path_factory.mktemp("pbx"), module_flushed_redis)
    try:
        passwords = {extension: PASSWORDS[extension] for extension in ("101", "102")}
        with admin_api(platform) as api:
            olga = created(
                api,
                "/v1/users",
                {
                    "email": "olga@acme.example",
                    "name": "Olga",
                    "role": "agent",
                    "extension": "103",
                    "city": "msk",
                },
            )
            device = created(api, f"/v1/users/{olga['id']}/devices", {"name": "softphone"})
            passwords["103"] = device["password"]
            users = ids_by_extension(api)
        wait_for_reload(platform)
        yield Pbx(platform, passwords, users)
    finally:
        platform.stop()


def person(factory: BaresipFactory, pbx: Pbx, extension: str, *, answers: bool = True) -> Baresip:
    """A registered desk phone sending its person's tone and recording its calls."""
    phone = factory(
        extension,
        pbx.passwords[extension],
        ACME,
        proxy=(pbx.platform.host, pbx.platform.sip_port),
        auto_answer=answers,
        tone_hz=TONES[extension],
        record=True,
    )
    phone.start()
    phone.wait_registered(timeout=15)
    return phone


def mobile_phone(factory: BaresipFactory, number: str = MOBILE) -> Baresip:
    """A phone out in the world, behind the carrier: it answers what reaches its address."""
    phone = factory(number, None, "127.0.0.1", tone_hz=MOBILE_HZ, record=True)
    phone.start()
    return phone


@contextmanager
def trunk_to(pbx: Pbx, phone: Baresip) -> Iterator[None]:
    """The tenant's carrier trunk, for the test's length, pointing at ``phone``."""
    with admin_api(pbx.platform) as api:
        trunk_id = add_trunk(api, "carrier", phone.local_port, 1)
    wait_for_reload(pbx.platform)
    try:
        yield
    finally:
        with admin_api(pbx.platform) as api:
            removed = api.delete(f"/v1/trunks/{trunk_id}")
            assert removed.status_code == 204, removed.text
        wait_for_reload(pbx.platform)


def main_number_rings(pbx: Pbx, extension: str) -> None:
    with admin_api(pbx.platform) as api:
        route_main_number(api, {"type": "user", "user_id": pbx.users[extension]})
    wait_for_reload(pbx.platform)


def dial(phone: Baresip, target: str) -> None:
    """What the person keys in: an extension, a feature code or a number."""
    phone.dial(f"sip:{target}@{ACME}")


def call_from_outside(factory: BaresipFactory, pbx: Pbx) -> Baresip:
    """A carrier's caller (600 Hz, recording) dialling the main number."""
    caller = caller_phone(factory, pbx.platform)
    caller.dial(f"sip:{ACME_MAIN}@{pbx.platform.host}")
    return caller


def hang_up(phone: Baresip, *others: Baresip) -> None:
    """``phone`` ends its call; the others' calls end with it."""
    phone.hangup()
    for each in (phone, *others):
        each.wait_no_calls(timeout=10)


NewCalls = Callable[[int], list[dict[str, Any]]]


@pytest.fixture
def new_calls(pbx: Pbx) -> NewCalls:
    """``new_calls(n)``: the CDRs of the ``n`` calls the test made, oldest first (the
    platform keeps those of the module's earlier tests)."""
    before = {record["call_id"] for record in pbx.platform.calls(100)}

    def settled(count: int, timeout: float = 40) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            records = [r for r in pbx.platform.calls(100) if r["call_id"] not in before]
            if len(records) >= count or time.monotonic() > deadline:
                assert len(records) == count, records
                return sorted(records, key=lambda record: int(record["start_ms"]))
            time.sleep(0.5)

    return settled


def transfer_steps(record: dict[str, Any]) -> list[tuple[str, str]]:
    """(outcome, member) of the transfer steps on a call's route."""
    return [(s["outcome"], s["member"]) for s in record["route"] if s["subject"] == "transfer"]


# --- what people heard --------------------------------------------------------------


def heard(phone: Baresip, call: int = -1) -> tuple[int, np.ndarray]:
    """(rate, samples) of what ``phone`` heard on one of its calls (the last by default)."""
    recordings = phone.heard()
    assert recordings, f"{phone.aor} recorded no call"
    rate, channels = wav_channels(recordings[call].read_bytes())
    return rate, channels[0]


def piece(recording: tuple[int, np.ndarray], start_s: float, seconds: float) -> np.ndarray:
    """``seconds`` of a recording from ``start_s`` (negative: from the end)."""
    rate, samples = recording
    begin = int(start_s * rate) if start_s >= 0 else len(samples) + int(start_s * rate)
    part = samples[max(begin, 0) : max(begin, 0) + int(seconds * rate)]
    assert len(part) >= int(0.4 * rate), f"{len(samples) / rate:.2f} s recorded"
    return part


def shares(samples: np.ndarray, rate: int, tones: list[int]) -> dict[int, float]:
    """Each tone's share of the energy (its band of +-15 Hz) in ``samples``."""
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples)))) ** 2
    frequencies = np.fft.rfftfreq(len(samples), 1 / rate)
    total = float(spectrum[1:].sum()) or 1.0
    return {tone: float(spectrum[np.abs(frequencies - tone) <= 15].sum()) / total for tone in tones}


def assert_hears(
    recording: tuple[int, np.ndarray],
    start_s: float,
    seconds: float,
    tones: list[int],
    not_tones: list[int] = [],  # noqa: B006 - never changed
) -> None:
    rate = recording[0]
    samples = piece(recording, start_s, seconds)
    found = shares(samples, rate, [*tones, *not_tones])
    described = f"{found} (peak {peak_hz(samples, rate):.0f} Hz)"
    for tone in tones:
        assert found[tone] > HEARD, f"{tone} Hz not heard: {described}"
    for tone in not_tones:
        assert found[tone] < NOT_HEARD, f"{tone} Hz heard: {described}"


def the_end(seconds: float = 1.2) -> tuple[float, float]:
    """The window of the last ``seconds`` of a call, ending shortly before the hang-up."""
    return -(seconds + 0.3), seconds


# --- transfers ----------------------------------------------------------------------


def test_a_blind_transfer_leaves_the_caller_talking_to_the_colleague(
    pbx: Pbx, baresip_factory: BaresipFactory, new_calls: NewCalls
) -> None:
    anna = person(baresip_factory, pbx, "101")
    boris = person(baresip_factory, pbx, "102")
    main_number_rings(pbx, "101")
    caller = call_from_outside(baresip_factory, pbx)
    anna.wait_call_state("ESTABLISHED", timeout=15)
    time.sleep(1.5)  # they talk

    anna.command("transfer", f"sip:102@{ACME}")  # the transfer key: a REFER
    boris.wait_call_state("ESTABLISHED", timeout=15)
    anna.wait_no_calls(timeout=10)  # the node let Anna go
    time.sleep(2.0)
    hang_up(caller, boris)

    [record] = new_calls(1)
    assert transfer_steps(record) == [("entered", "102"), ("answered", "102")], record["route"]
    before = heard(caller)
    assert_hears(before, 0.2, 1.0, [TONES["101"]], [TONES["102"]])
    assert_hears(before, *the_end(), [TONES["102"]], [TONES["101"]])
    assert_hears(heard(boris), *the_end(), [CALLER_HZ], [TONES["101"]])


def test_an_attended_transfer_joins_the_caller_and_the_consulted_colleague(
    pbx: Pbx, baresip_factory: BaresipFactory, sipp_factory: SippFactory, new_calls: NewCalls
) -> None:
    """sipp plays Anna, the transferor: baresip 1.0.0 has no attended transfer (its menu
    has `transfer`, a blind REFER, and nothing that sends Replaces). A transferor holds
    two dialogs and one sipp call follows one, so Anna is two sipp processes linked by
    sipp's twin socket: the phone that answered the caller, and the one that consults
    Boris and then tells the first which dialog the REFER replaces. Both send 1 kHz.
    The caller and Boris are baresip: their recordings tell who heard whom."""
    boris = person(baresip_factory, pbx, "102")
    main_number_rings(pbx, "101")
    host, edge = pbx.platform.host, (pbx.platform.host, pbx.platform.sip_port)
    twin = f"{host}:{free_port()}"
    anna = sipp_factory(
        "uas_transferor_attended.xml",
        keys={"target": "102", "domain": ACME},
        extra_args=["-aa", "-3pcc", twin],
        timeout=40,
    )
    anna_desk = ("101", pbx.passwords["101"])
    registered = sipp_factory(
        "register.xml",
        remote=edge,
        local_port=anna.local_port,
        keys={"domain": ACME, "user": "101", "expires": "60"},
        credentials=anna_desk,
        timeout=15,
    ).run()
    assert registered.all_succeeded, registered.describe()
    try:
        anna.start()
        caller = call_from_outside(baresip_factory, pbx)
        caller.wait_call_state("ESTABLISHED", timeout=15)
        transferred = answered_call_id(anna)
        consultation = sipp_factory(
            "uac_consult_attended.xml",
            remote=edge,
            service="102",
            keys={"domain": ACME, "caller": "101", "call1": transferred},
            credentials=anna_desk,
            pause_ms=1500,
            extra_args=["-3pcc", twin, "-cid_str", "consult-%u-%p"],
            timeout=30,
        )
        consultation.start()
        boris.wait_call_state("ESTABLISHED", timeout=15)
        consulted, answered = consultation.wait(timeout=25), anna.wait(timeout=25)
        time.sleep(2.0)  # the caller and Boris talk
        hang_up(caller, boris)
    finally:
        unregistered = sipp_factory(
            "register.xml",
            remote=edge,
            local_port=anna.local_port,
            keys={"domain": ACME, "user": "101", "expires": "0"},
            credentials=anna_desk,
            timeout=15,
        ).run()
        assert unregistered.all_succeeded, unregistered.describe()

    # Both of Anna's calls ended by the node (BYE): she is free.
    assert answered.all_succeeded, answered.describe()
    assert consulted.all_succeeded, consulted.describe()
    records = new_calls(2)
    [first] = [record for record in records if record["caller"] != "101"]
    assert transfer_steps(first) == [("answered", "102")], first["route"]
    before = heard(caller)
    assert_hears(before, 0.2, 0.8, [SIPP_HZ], [TONES["102"]])
    assert_hears(before, *the_end(), [TONES["102"]], [SIPP_HZ])
    assert_hears(heard(boris), *the_end(), [CALLER_HZ], [SIPP_HZ])


def answered_call_id(sipp: Sipp, timeout: float = 10) -> str:
    """The Call-ID of the call a uas_transferor_attended.xml sipp answered (from its log)."""
    deadline = time.monotonic() + timeout
    log = sipp.workdir / "logs.log"
    while time.monotonic() < deadline:
        found = re.search(r"answered call-id (\S+)", log.read_text() if log.exists() else "")
        if found:
            return found.group(1)
        time.sleep(0.1)
    raise AssertionError(f"sipp never answered a call: {sipp.workdir}")


# --- conference room ----------------------------------------------------------------


def test_three_people_in_a_conference_room_each_hear_the_other_two(
    pbx: Pbx, baresip_factory: BaresipFactory, new_calls: NewCalls
) -> None:
    with admin_api(pbx.platform) as api:  # the tenant's room, no PIN
        created(api, "/v1/conference-rooms", {"extension": ROOM, "name": "All hands"})
    wait_for_reload(pbx.platform)
    phones = {extension: person(baresip_factory, pbx, extension) for extension in TONES}

    for phone in phones.values():
        dial(phone, ROOM)
        phone.wait_call_state("ESTABLISHED", timeout=15)
    time.sleep(2.5)  # all three talk at once
    for phone in phones.values():
        phone.hangup()
        phone.wait_no_calls(timeout=10)

    for extension, phone in phones.items():
        others = [tone for other, tone in TONES.items() if other != extension]
        # A party hears the mix of the others, never itself.
        assert_hears(heard(phone), *the_end(), others, [TONES[extension]])
    records = new_calls(3)
    assert {record["caller"] for record in records} == set(TONES)
    assert {record["dialled"] for record in records} == {ROOM}


# --- pickup and park ----------------------------------------------------------------


@pytest.mark.parametrize(
    "code",
    [
        pytest.param("*8", id="group"),  # Anna and Boris are both in sales
        pytest.param("**101", id="directed"),  # the call ringing 101
    ],
)
def test_a_colleague_picks_up_the_call_ringing_someone_else(
    pbx: Pbx, baresip_factory: BaresipFactory, new_calls: NewCalls, code: str
) -> None:
    anna = person(baresip_factory, pbx, "101", answers=False)
    boris = person(baresip_factory, pbx, "102")
    main_number_rings(pbx, "101")
    caller = call_from_outside(baresip_factory, pbx)
    anna.wait_call_state("INCOMING", timeout=15)  # ringing, nobody there

    dial(boris, code)  # the tenant's pickup codes (/v1/feature-codes): the defaults
    boris.wait_call_state("ESTABLISHED", timeout=15)
    anna.wait_no_calls(timeout=10)  # her phone stops ringing
    time.sleep(2.0)
    hang_up(boris, caller)

    [record] = new_calls(1)
    assert record["answered_by"] == "102", record
    assert_hears(heard(caller), *the_end(), [TONES["102"]])
    assert_hears(heard(boris), *the_end(), [CALLER_HZ])
    assert anna.heard() == []  # she never answered


def test_a_parked_caller_is_taken_back_by_another_phone_dialling_the_slot(
    pbx: Pbx, baresip_factory: BaresipFactory, new_calls: NewCalls
) -> None:
    anna = person(baresip_factory, pbx, "101")
    boris = person(baresip_factory, pbx, "102")
    main_number_rings(pbx, "101")
    caller = call_from_outside(baresip_factory, pbx)
    anna.wait_call_state("ESTABLISHED", timeout=15)
    time.sleep(1.0)

    anna.command("transfer", f"sip:*72@{ACME}")  # park on slot 2
    anna.wait_no_calls(timeout=10)
    time.sleep(1.5)  # the caller waits on the slot
    dial(boris, "*72")
    boris.wait_call_state("ESTABLISHED", timeout=15)
    time.sleep(2.0)
    hang_up(caller, boris)

    [record] = new_calls(1)
    assert transfer_steps(record) == [("parked", "2"), ("retrieved", "102")], record["route"]
    assert_hears(heard(caller), *the_end(), [TONES["102"]], [TONES["101"]])
    assert_hears(heard(boris), *the_end(), [CALLER_HZ])


# --- calls out: follow-me and click-to-call -------------------------------------------


def test_follow_me_reaches_the_mobile_when_the_desk_phone_does_not_answer(
    pbx: Pbx, baresip_factory: BaresipFactory, new_calls: NewCalls
) -> None:
    desk = person(baresip_factory, pbx, "103", answers=False)
    mobile = mobile_phone(baresip_factory)
    with admin_api(pbx.platform) as api:
        changed = api.patch(
            f"/v1/users/{pbx.users['103']}",
            json={
                "mobile": MOBILE,
                "settings": {"forward_to_mobile": True, "forward_after_s": 5},
            },
        )
        assert changed.status_code == 200, changed.text
    main_number_rings(pbx, "103")
    try:
        with trunk_to(pbx, mobile):
            started = time.monotonic()
            caller = call_from_outside(baresip_factory, pbx)
            desk.wait_call_state("INCOMING", timeout=15)
            mobile.wait_call_state("ESTABLISHED", timeout=15)
            reached_after = time.monotonic() - started
            desk.wait_no_calls(timeout=10)  # the desk stops ringing
            time.sleep(2.0)
            hang_up(caller, mobile)
    finally:
        with admin_api(pbx.platform) as api:
            api.patch(
                f"/v1/users/{pbx.users['103']}", json={"settings": {"forward_to_mobile": False}}
            )

    assert reached_after >= 4.5, reached_after  # after the desk phone's 5 s
    [record] = new_calls(1)
    assert record["answered_by"] == "103", record
    assert_hears(heard(caller), *the_end(), [MOBILE_HZ])
    assert_hears(heard(mobile), *the_end(), [CALLER_HZ])


def test_click_to_call_rings_the_users_phone_then_connects_the_number(
    pbx: Pbx, baresip_factory: BaresipFactory, new_calls: NewCalls
) -> None:
    anna = person(baresip_factory, pbx, "101", answers=False)
    client = mobile_phone(baresip_factory)
    with trunk_to(pbx, client):
        with admin_api(pbx.platform) as api:
            placed = api.post("/v1/calls", json={"to": MOBILE, "from_user": pbx.users["101"]})
            assert placed.status_code == 202, placed.text
        anna.wait_call_state("INCOMING", timeout=15)
        time.sleep(1.0)
        assert client.calls() == []  # nothing rings out before Anna answers
        anna.command("accept")
        client.wait_call_state("ESTABLISHED", timeout=15)
        time.sleep(2.0)
        hang_up(anna, client)

    [record] = new_calls(1)
    assert record["call_id"] == placed.json()["call_id"]
    assert (record["direction"], record["dialled"]) == ("outbound", MOBILE), record
    assert record["route"][0]["subject"] == "click-to-call", record["route"]
    assert_hears(heard(anna), *the_end(), [MOBILE_HZ])
    assert_hears(heard(client), *the_end(), [TONES["101"]])
