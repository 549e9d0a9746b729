"""What the node keeps of a call, with real peers: voice messages and call recordings.

`vpbx up` in a subprocess (recordings and voice messages in a local directory),
baresip phones that send tones of known pitch, the control API to list and fetch
what was kept.

The voicemail tests share one `vpbx up` (each starts from the demo's routing and
greetings: the ``platform`` fixture puts them back); the recording tests start their
own, one with its recordings in S3, the other to kill its node.
"""

from __future__ import annotations

import io
import os
import signal
import time
import wave
from typing import Any

import httpx
import numpy as np
import pytest

from tests.services.baresip import Baresip, BaresipFactory
from tests.services.platform import RunningPlatform
from tests.services.seaweedfs import SeaweedS3
from tests.test_call_routing import (
    ACME_MAIN,
    CALLER,
    admin_api,
    agent,
    ids_by_extension,
    route_as_in_the_demo,
    route_main_number,
    sales_group,
    set_sales,
    settled_calls,
    wait_for_reload,
)
from tests.wavs import pcm16_wav

pytestmark = pytest.mark.integration

CALLER_HZ = 600  # the caller's tone; the agents send 1 kHz


def caller_phone(
    factory: BaresipFactory, platform: RunningPlatform, number: str = CALLER
) -> Baresip:
    """A carrier's caller sending a 600 Hz tone and recording what it hears (and
    answering what reaches its address)."""
    phone = factory(
        number,
        None,
        platform.host,
        proxy=(platform.host, platform.sip_port),
        regint=0,
        record=True,
        tone_hz=CALLER_HZ,
    )
    phone.start()
    return phone


def wav_channels(data: bytes) -> tuple[int, list[np.ndarray]]:
    """(sample rate, one float array per channel) of a 16-bit WAV."""
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getsampwidth() == 2
        rate, channels = wav.getframerate(), wav.getnchannels()
        frames = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    shaped = frames.reshape(-1, channels).astype(np.float64)
    return rate, [shaped[:, index] for index in range(channels)]


def peak_hz(samples: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / rate)[int(np.argmax(spectrum[1:])) + 1])


def loud_frames(samples: np.ndarray, rate: int) -> list[int]:
    """Indexes of the 20 ms frames with sound in them (at least one)."""
    frame = rate // 50
    levels = [np.abs(samples[i : i + frame]).max() for i in range(0, len(samples) - frame, frame)]
    loud = [index for index, level in enumerate(levels) if level > 1000]
    assert loud, "no sound at all"
    return loud


def loud_part(samples: np.ndarray, rate: int) -> np.ndarray:
    """The samples from the first 20 ms frame with sound to the last, to measure a tone
    without the silence around it."""
    frame = rate // 50
    loud = loud_frames(samples, rate)
    return samples[loud[0] * frame : (loud[-1] + 1) * frame]


@pytest.fixture
def platform(shared_platform: RunningPlatform) -> RunningPlatform:
    """The module's platform routed as in the demo, Maria (102) with the platform's own
    voicemail greeting again, its calls() those of this test."""
    route_as_in_the_demo(shared_platform)
    with admin_api(shared_platform) as api:
        maria = ids_by_extension(api)["102"]
        greeting = {"settings": {"voicemail_greeting": None}}
        changed = api.patch(f"/v1/users/{maria}", json=greeting)
        assert changed.status_code == 200, changed.text
    wait_for_reload(shared_platform)
    return shared_platform.for_one_test()


def fetched(api: httpx.Client, path: str, timeout: float = 30) -> httpx.Response:
    """GET ``path`` until it answers 200 (the audio is stored a moment after the call)."""
    deadline = time.monotonic() + timeout
    while True:
        response = api.get(path)
        if response.status_code == 200 or time.monotonic() > deadline:
            return response
        time.sleep(0.3)


def test_a_caller_leaves_a_voice_message_that_the_box_owner_lists_and_plays(
    platform: RunningPlatform, baresip_factory: BaresipFactory
) -> None:
    with admin_api(platform) as api:
        # The messages the tests before left: this test's is the one added.
        earlier = {message["id"] for message in api.get("/v1/voicemails").json()["items"]}
        users = ids_by_extension(api)
        # 102 has no phone registered: the call goes straight to 102's voicemail.
        route_main_number(api, {"type": "user", "user_id": users["102"]})
    wait_for_reload(platform)
    caller = caller_phone(baresip_factory, platform)

    caller.dial(f"sip:{ACME_MAIN}@{platform.host}")
    caller.wait_call_state("ESTABLISHED", timeout=15)  # voicemail answers
    # The spoken greeting (about 4 s, rendered by the control API on its first use, which
    # takes a while on a busy machine), the beep, then a few seconds of message.
    time.sleep(9.0)
    caller.send_digits("#")  # done: the node hangs up
    caller.wait_no_calls(timeout=10)

    [record] = settled_calls(platform, 1)
    assert record["end_reason"] == "voicemail", record
    with admin_api(platform) as api:
        deadline = time.monotonic() + 30
        while not (
            items := [
                message
                for message in api.get("/v1/voicemails").json()["items"]
                if message["id"] not in earlier
            ]
        ):
            assert time.monotonic() < deadline, platform.log()[-3000:]
            time.sleep(0.3)
        [message] = items
        assert message["call_id"] == record["call_id"]
        assert message["user_id"] == users["102"]
        assert message["caller"] == CALLER
        assert 1.0 <= message["duration_s"] <= 9.0, message
        audio = fetched(api, f"/v1/voicemails/{message['id']}/audio?format=wav")
        assert audio.status_code == 200, audio.text
    rate, [mono] = wav_channels(audio.content)
    assert abs(peak_hz(loud_part(mono, rate), rate) - CALLER_HZ) < 15
    # The caller heard the beep (1 kHz) before speaking.
    [heard] = caller.heard()
    heard_rate, heard_channels = wav_channels(heard.read_bytes())
    heard_mono = heard_channels[0]
    beeps = [
        peak_hz(heard_mono[i : i + heard_rate // 5], heard_rate)
        for i in range(0, len(heard_mono) - heard_rate // 5, heard_rate // 10)
    ]
    assert any(abs(hz - 1000) < 20 for hz in beeps), beeps


GREETING_HZ = 500  # the box owner's own greeting: a tone no other sound of the call has


def test_the_box_owners_own_greeting_is_what_the_caller_hears_before_the_beep(
    platform: RunningPlatform, baresip_factory: BaresipFactory
) -> None:
    maria_password = "maria-greets-her-callers"
    with admin_api(platform) as api:
        users = ids_by_extension(api)
        uploaded = api.post(
            "/v1/prompts",
            files={"file": ("maria.wav", pcm16_wav(16000, 1, 1.5, GREETING_HZ), "audio/wav")},
            data={"name": "Maria's greeting"},
        )
        assert uploaded.status_code == 201, uploaded.text
        given = api.patch(f"/v1/users/{users['102']}", json={"password": maria_password})
        assert given.status_code == 200, given.text
        # 102 has no phone registered: the call goes straight to 102's voicemail.
        route_main_number(api, {"type": "user", "user_id": users["102"]})
    # Maria picks her greeting herself.
    maria = platform.login("maria.sokolova@acme.example", maria_password)
    with platform.api(maria) as api:
        greeting = {"kind": "audio", "prompt_id": uploaded.json()["id"]}
        chosen = api.patch("/v1/users/me", json={"settings": {"voicemail_greeting": greeting}})
        assert chosen.status_code == 200, chosen.text
    wait_for_reload(platform)
    caller = caller_phone(baresip_factory, platform)

    caller.dial(f"sip:{ACME_MAIN}@{platform.host}")
    caller.wait_call_state("ESTABLISHED", timeout=15)  # voicemail answers
    time.sleep(4.0)  # the 1.5 s greeting, the beep, then a moment of message
    caller.send_digits("#")
    caller.wait_no_calls(timeout=10)

    [record] = settled_calls(platform, 1)
    assert record["end_reason"] == "voicemail", record
    [heard] = caller.heard()
    rate, [mono] = wav_channels(heard.read_bytes())
    # From the first sound the caller heard: one second of Maria's greeting, not the
    # platform's spoken one.
    first = loud_frames(mono, rate)[0] * (rate // 50)
    assert abs(peak_hz(mono[first : first + rate], rate) - GREETING_HZ) < 15
    # Then the beep (1 kHz), after the greeting's 1.5 s.
    beeps = [
        i
        for i in range(first, len(mono) - rate // 5, rate // 20)
        if abs(peak_hz(mono[i : i + rate // 5], rate) - 1000) < 20
    ]
    assert beeps, "no beep heard"
    assert 1.3 <= (beeps[0] - first) / rate <= 2.5, (beeps[0] - first) / rate


def record_main_number(platform: RunningPlatform) -> None:
    """Calls to the main number ring 101 (sales) and are recorded."""
    with admin_api(platform) as api:
        set_sales(api, ["101"])
        route_main_number(api, {"type": "group", "group_id": sales_group(api)["id"]})
        numbers = api.get("/v1/numbers", params={"limit": 200}).json()["items"]
        [main] = [number for number in numbers if number["number"] == ACME_MAIN]
        changed = api.patch(f"/v1/numbers/{main['id']}", json={"record": True})
        assert changed.status_code == 200, changed.text
        assert changed.json()["record"] is True
    wait_for_reload(platform)


def test_a_recorded_call_has_the_caller_on_the_left_and_the_agent_on_the_right(
    platform_factory: Any, baresip_factory: BaresipFactory, seaweedfs_s3: SeaweedS3
) -> None:
    # As in a cluster: recordings go to an S3 bucket (SeaweedFS's S3 gateway).
    platform: RunningPlatform = platform_factory(
        extra_env={
            "VPBX_STORAGE_URL": f"s3://{seaweedfs_s3.bucket}",
            "VPBX_S3_ENDPOINT": seaweedfs_s3.endpoint,
            "VPBX_S3_ACCESS_KEY": seaweedfs_s3.access_key,
            "VPBX_S3_SECRET_KEY": seaweedfs_s3.secret_key,
        }
    )
    agent(baresip_factory, platform, "101")
    record_main_number(platform)
    caller = caller_phone(baresip_factory, platform)

    caller.dial(f"sip:{ACME_MAIN}@{platform.host}")
    caller.wait_call_state("ESTABLISHED", timeout=15)
    time.sleep(3.0)
    caller.hangup()
    caller.wait_no_calls(timeout=10)

    [record] = settled_calls(platform, 1)
    assert record["answered_by"] == "101"
    with admin_api(platform) as api:
        call_id = record["call_id"]
        audio = fetched(api, f"/v1/calls/{call_id}/recording?format=wav")
        assert audio.status_code == 200, audio.text + platform.log()[-3000:]
        ogg = api.get(f"/v1/calls/{call_id}/recording")
        assert ogg.headers["content-type"].startswith("audio/ogg")
        assert ogg.content[:4] == b"OggS"
        detail = api.get(f"/v1/calls/{call_id}").json()
        assert detail["recording"] is not None, detail
    rate, channels = wav_channels(audio.content)
    assert len(channels) == 2
    left, right = channels
    assert 2.0 <= len(left) / rate <= 5.0
    middle = slice(int(0.5 * rate), int(2.0 * rate))
    assert abs(peak_hz(left[middle], rate) - CALLER_HZ) < 15
    assert abs(peak_hz(right[middle], rate) - 1000) < 15


def test_a_node_killed_mid_call_keeps_the_recording_up_to_its_last_flush(
    platform_factory: Any, baresip_factory: BaresipFactory
) -> None:
    platform: RunningPlatform = platform_factory()
    agent(baresip_factory, platform, "101")
    record_main_number(platform)
    caller = caller_phone(baresip_factory, platform)
    caller.dial(f"sip:{ACME_MAIN}@{platform.host}")
    caller.wait_call_state("ESTABLISHED", timeout=15)
    time.sleep(3.5)  # three flushes
    node_pid = platform.pid_of("vpbx-node-acme-msk")

    os.kill(node_pid, signal.SIGKILL)

    # The launcher restarts the node (as Kubernetes restarts a pod); the new node turns
    # the journal entry into a node-lost CDR and stores what the spool holds.
    [record] = settled_calls(platform, 1)
    assert record["end_reason"] == "node-lost", record
    with admin_api(platform) as api:
        audio = fetched(api, f"/v1/calls/{record['call_id']}/recording?format=wav")
        assert audio.status_code == 200, audio.text + platform.log()[-3000:]
    rate, [left, right] = wav_channels(audio.content)
    assert 2.0 <= len(left) / rate <= 4.5, len(left) / rate
    middle = slice(int(0.5 * rate), int(2.0 * rate))
    assert abs(peak_hz(left[middle], rate) - CALLER_HZ) < 15
    assert abs(peak_hz(right[middle], rate) - 1000) < 15
