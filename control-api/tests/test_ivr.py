"""/v1/ivr-menus: menus, their targets and cycles, isolation, roles, prompt uploads and
text to speech."""

from __future__ import annotations

import math
import uuid
from array import array
from typing import Any

import pytest
from sqlalchemy import func, select
from tests.services.control_api import ApiHarness
from tests.wavs import amplitude, pcm16_wav, read_wav, riff

from vpbx_common.manifests import PLATFORM_API_VERSION, Number
from vpbx_control.auth.principal import Role
from vpbx_control.groups.models import GroupRow
from vpbx_control.ivr.models import IvrMenuRow, PromptRow
from vpbx_control.ivr.speech import SpeechEngine


def _fields(response: Any) -> list[str]:
    return [detail["field"] for detail in response.json()["details"]]


async def _add_group(api: ApiHarness, tenant: str, name: str, **values: Any) -> str:
    row = GroupRow(
        id=uuid.uuid4(),
        tenant_id=tenant,
        name=name,
        strategy="ring-all",
        ring_timeout_s=30,
        escalation_interval_s=10,
        revision=1,
        **values,
    )
    async with api.context.database.session() as session:
        session.add(row)
        await session.commit()
    return str(row.id)


async def _acme(api: ApiHarness) -> tuple[dict[str, str], str, str]:
    """Tenant acme: its admin's headers, a user id and a group id."""
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    user = await api.add_user("acme", extension="101", name="Operator")
    group = await _add_group(api, "acme", "sales")
    return admin, str(user.id), group


def _menu(user: str, group: str) -> dict[str, Any]:
    return {
        "name": "main menu",
        "prompt": {
            "kind": "tts",
            "text": "Press 1 for sales, 0 for the operator.",
            "language": "en-US",
        },
        "options": {
            "1": {"type": "group", "group_id": group},
            "0": {"type": "user", "user_id": user},
            "#": {"type": "external", "number": "+7 (495) 123-45-67"},
        },
        "timeout_s": 8,
        "timeout_target": {"type": "user", "user_id": user},
        "invalid_target": {"type": "hangup"},
        "max_retries": 3,
    }


def _upload(data: bytes, name: str = "greeting.wav") -> dict[str, Any]:
    return {"files": {"file": (name, data, "audio/wav")}}


# --- the menu resource -------------------------------------------------------------------


async def test_create_read_update_delete(api: ApiHarness) -> None:
    admin, user, group = await _acme(api)
    created = await api.client.post("/v1/ivr-menus", json=_menu(user, group), headers=admin)
    assert created.status_code == 201, created.text
    menu = created.json()
    assert created.headers["Location"] == f"/v1/ivr-menus/{menu['id']}"
    assert menu["options"]["#"] == {"type": "external", "number": "+74951234567"}
    assert menu["options"]["1"] == {"type": "group", "group_id": group}
    assert menu["prompt"] == {
        "kind": "tts",
        "text": "Press 1 for sales, 0 for the operator.",
        "language": "en-US",
        "prompt_id": menu["prompt"]["prompt_id"],  # the rendered speech
    }
    assert (menu["timeout_s"], menu["max_retries"]) == (8, 3)

    read = await api.client.get(f"/v1/ivr-menus/{menu['id']}", headers=admin)
    assert read.json() == menu
    etag = read.headers["ETag"]

    changed = await api.client.patch(
        f"/v1/ivr-menus/{menu['id']}",
        json={
            "options": {"2": {"type": "voicemail"}},
            "timeout_target": None,
            "prompt": {"kind": "tone", "frequency_hz": 425, "duration_ms": 1000},
        },
        headers={**admin, "If-Match": etag},
    )
    assert changed.status_code == 200, changed.text
    after = changed.json()
    assert after["options"] == {"2": {"type": "voicemail", "user_id": None}}
    assert after["timeout_target"] is None
    assert after["invalid_target"] == {"type": "hangup"}  # left out: unchanged
    assert after["prompt"] == {"kind": "tone", "frequency_hz": 425, "duration_ms": 1000}
    assert changed.headers["ETag"] != etag
    async with api.context.database.session() as session:  # the speech is not kept
        assert await session.scalar(select(func.count()).select_from(PromptRow)) == 0

    stale = await api.client.patch(
        f"/v1/ivr-menus/{menu['id']}", json={"timeout_s": 9}, headers={**admin, "If-Match": etag}
    )
    assert stale.status_code == 412

    listed = await api.client.get("/v1/ivr-menus", params={"name": "MAIN"}, headers=admin)
    assert [item["id"] for item in listed.json()["items"]] == [menu["id"]]
    assert (await api.client.get("/v1/ivr-menus", params={"name": "x"}, headers=admin)).json()[
        "total"
    ] == 0

    again = await api.client.post("/v1/ivr-menus", json=_menu(user, group), headers=admin)
    assert again.status_code == 409
    assert again.json()["error_id"] == "ivr-menu-name-taken"

    deleted = await api.client.delete(f"/v1/ivr-menus/{menu['id']}", headers=admin)
    assert deleted.status_code == 204
    assert (await api.client.get(f"/v1/ivr-menus/{menu['id']}", headers=admin)).status_code == 404


async def test_a_menu_with_defaults_plays_a_tone(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    created = await api.client.post("/v1/ivr-menus", json={"name": "bare"}, headers=admin)
    assert created.status_code == 201, created.text
    menu = created.json()
    assert menu["prompt"] == {"kind": "tone", "frequency_hz": 440, "duration_ms": 500}
    assert (menu["options"], menu["timeout_s"], menu["max_retries"]) == ({}, 5, 2)
    assert menu["timeout_target"] is None

    # A menu written straight into the database (a seed) without a prompt reads the same way.
    seeded = IvrMenuRow(id=uuid.uuid4(), tenant_id="acme", name="seeded", revision=1)
    async with api.context.database.session() as session:
        session.add(seeded)
        await session.commit()
    read = (await api.client.get(f"/v1/ivr-menus/{seeded.id}", headers=admin)).json()
    assert read["prompt"] == menu["prompt"]
    assert (read["timeout_s"], read["max_retries"]) == (5, 2)


async def test_invalid_input_names_the_field(api: ApiHarness) -> None:
    admin, user, group = await _acme(api)
    good = _menu(user, group)
    cases = [
        ({**good, "options": {"x": {"type": "hangup"}}}, "body.options.x.[key]"),
        ({**good, "options": {"10": {"type": "hangup"}}}, "body.options.10.[key]"),
        ({**good, "timeout_s": 0}, "body.timeout_s"),
        ({**good, "timeout_s": 61}, "body.timeout_s"),
        ({**good, "max_retries": 6}, "body.max_retries"),
        ({**good, "prompt": {"kind": "speech"}}, "body.prompt"),
        (
            {**good, "prompt": {"kind": "tone", "frequency_hz": 5000}},
            "body.prompt.tone.frequency_hz",
        ),
        ({**good, "prompt": {"kind": "tts", "text": ""}}, "body.prompt.tts.text"),
        (
            {**good, "options": {"5": {"type": "external", "number": "12"}}},
            "body.options.5.external.number",
        ),
        ({**good, "timeout_target": {"type": "teleport"}}, "body.timeout_target"),
        ({**good, "colour": "red"}, "body.colour"),
    ]
    for body, field in cases:
        response = await api.client.post("/v1/ivr-menus", json=body, headers=admin)
        assert response.status_code == 422, body
        assert field in _fields(response), response.json()

    menu = (await api.client.post("/v1/ivr-menus", json=good, headers=admin)).json()
    for key in ("name", "options", "timeout_s"):
        response = await api.client.patch(
            f"/v1/ivr-menus/{menu['id']}", json={key: None}, headers=admin
        )
        assert response.status_code == 422, key
        assert f"body.{key}" in _fields(response)


async def test_every_target_must_exist_in_the_tenant(api: ApiHarness) -> None:
    admin, user, group = await _acme(api)
    await api.add_tenant("globex")
    foreign_group = await _add_group(api, "globex", "sales")
    foreign_user = str((await api.add_user("globex")).id)
    good = _menu(user, group)
    cases = [
        (
            {**good, "options": {"1": {"type": "group", "group_id": foreign_group}}},
            "body.options.1.group_id",
        ),
        (
            {**good, "options": {"*": {"type": "voicemail", "user_id": foreign_user}}},
            "body.options.*.user_id",
        ),
        (
            {**good, "timeout_target": {"type": "ivr", "ivr_menu_id": str(uuid.uuid4())}},
            "body.timeout_target.ivr_menu_id",
        ),
        (
            {**good, "invalid_target": {"type": "user", "user_id": foreign_user}},
            "body.invalid_target.user_id",
        ),
        (
            {**good, "prompt": {"kind": "audio", "prompt_id": str(uuid.uuid4())}},
            "body.prompt.prompt_id",
        ),
    ]
    for body, field in cases:
        response = await api.client.post("/v1/ivr-menus", json=body, headers=admin)
        assert response.status_code == 404, body
        assert response.json()["error_id"] == "reference-not-found"
        assert _fields(response) == [field]
    assert (await api.client.get("/v1/ivr-menus", headers=admin)).json()["total"] == 0


async def test_route_cycles_through_a_group_are_refused(api: ApiHarness) -> None:
    admin, _, _ = await _acme(api)
    menu = (await api.client.post("/v1/ivr-menus", json={"name": "main"}, headers=admin)).json()
    # The "support" group overflows into the menu; the menu sending "1" to it closes a loop.
    support = await _add_group(
        api, "acme", "support", overflow={"type": "ivr", "ivr_menu_id": menu["id"]}
    )
    refused = await api.client.patch(
        f"/v1/ivr-menus/{menu['id']}",
        json={"options": {"1": {"type": "group", "group_id": support}}},
        headers=admin,
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error_id"] == "route-cycle"
    assert _fields(refused) == ["body.options.1.group_id"]
    assert (await api.client.get(f"/v1/ivr-menus/{menu['id']}", headers=admin)).json()[
        "options"
    ] == {}

    # A menu leading back to itself ("9: hear it again") waits for the caller: allowed.
    repeat = await api.client.patch(
        f"/v1/ivr-menus/{menu['id']}",
        json={"options": {"9": {"type": "ivr", "ivr_menu_id": menu["id"]}}},
        headers=admin,
    )
    assert repeat.status_code == 200, repeat.text


async def test_a_menu_still_routed_to_cannot_be_deleted(api: ApiHarness) -> None:
    admin, _, _ = await _acme(api)
    menu = (await api.client.post("/v1/ivr-menus", json={"name": "main"}, headers=admin)).json()
    sub = (
        await api.client.post(
            "/v1/ivr-menus",
            json={"name": "sub", "options": {"0": {"type": "ivr", "ivr_menu_id": menu["id"]}}},
            headers=admin,
        )
    ).json()
    refused = await api.client.delete(f"/v1/ivr-menus/{menu['id']}", headers=admin)
    assert refused.status_code == 409
    assert "IVR menu 'sub'" in refused.json()["message"]

    # A number entering the menu keeps it too.
    await api.context.numbers.create_number(
        Number.model_validate(
            {
                "apiVersion": PLATFORM_API_VERSION,
                "kind": "Number",
                "metadata": {"name": "acme-74951112233"},
                "spec": {
                    "number": "+74951112233",
                    "tenant": "acme",
                    "city": "msk",
                    "entry": f"ivr:{sub['id']}",
                },
            }
        )
    )
    by_number = await api.client.delete(f"/v1/ivr-menus/{sub['id']}", headers=admin)
    assert by_number.status_code == 409
    assert by_number.json()["error_id"] == "ivr-menu-used-by-number"
    assert "+74951112233" in by_number.json()["message"]

    # Referring to itself does not keep a menu alive.
    looped = await api.client.patch(
        f"/v1/ivr-menus/{menu['id']}",
        json={"invalid_target": {"type": "ivr", "ivr_menu_id": menu["id"]}},
        headers=admin,
    )
    assert looped.status_code == 200
    stale = await api.client.delete(
        f"/v1/ivr-menus/{menu['id']}", headers={**admin, "If-Match": '"1"'}
    )
    assert stale.status_code == 412
    await api.context.numbers.delete_number("acme-74951112233")
    assert (await api.client.delete(f"/v1/ivr-menus/{sub['id']}", headers=admin)).status_code == 204
    assert (
        await api.client.delete(f"/v1/ivr-menus/{menu['id']}", headers=admin)
    ).status_code == 204


async def test_another_tenants_menu_is_not_found(api: ApiHarness) -> None:
    admin, user, group = await _acme(api)
    menu = (await api.client.post("/v1/ivr-menus", json=_menu(user, group), headers=admin)).json()
    await api.add_tenant("globex")
    globex = await api.api_key("globex")
    url = f"/v1/ivr-menus/{menu['id']}"
    for method, path, kwargs in (
        ("GET", url, {}),
        ("PATCH", url, {"json": {"name": "stolen"}}),
        ("DELETE", url, {}),
        ("GET", f"{url}/prompt", {}),
        ("POST", f"{url}/prompt", _upload(pcm16_wav(8000, 1, 0.1))),
    ):
        response = await api.client.request(method, path, headers=globex, **kwargs)
        assert response.status_code == 404, (method, path, response.text)
    assert (await api.client.get("/v1/ivr-menus", headers=globex)).json()["total"] == 0
    assert (await api.client.get(url, headers=admin)).json()["name"] == "main menu"


async def test_agents_read_menus_but_do_not_change_them(api: ApiHarness) -> None:
    admin, user, group = await _acme(api)
    agent = await api.as_role("acme", Role.AGENT)
    menu = (await api.client.post("/v1/ivr-menus", json=_menu(user, group), headers=admin)).json()
    url = f"/v1/ivr-menus/{menu['id']}"
    assert (await api.client.get(url, headers=agent)).status_code == 200
    assert (await api.client.get("/v1/ivr-menus", headers=agent)).json()["total"] == 1
    for method, path, kwargs in (
        ("POST", "/v1/ivr-menus", {"json": {"name": "mine"}}),
        ("PATCH", url, {"json": {"name": "mine"}}),
        ("DELETE", url, {}),
        ("POST", f"{url}/prompt", _upload(pcm16_wav(8000, 1, 0.1))),
    ):
        response = await api.client.request(method, path, headers=agent, **kwargs)
        assert response.status_code == 403, (method, path)
    assert (await api.client.get(url, headers=admin)).json() == menu


async def test_a_change_is_announced_to_the_tenants_nodes(api: ApiHarness) -> None:
    assert api.context.redis is not None
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    async with api.context.redis.pubsub() as pubsub:
        await pubsub.subscribe("vpbx:config:acme")
        await pubsub.get_message(timeout=1)
        await api.client.post("/v1/ivr-menus", json={"name": "main"}, headers=admin)
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    assert message is not None
    assert message["data"] == b"acme"


# --- prompts -----------------------------------------------------------------------------


async def test_an_uploaded_prompt_is_converted_to_8khz_mono(api: ApiHarness) -> None:
    admin, _, _ = await _acme(api)
    menu = (await api.client.post("/v1/ivr-menus", json={"name": "main"}, headers=admin)).json()
    url = f"/v1/ivr-menus/{menu['id']}/prompt"
    assert (await api.client.get(url, headers=admin)).status_code == 404  # a tone: no recording

    uploaded = await api.client.post(url, headers=admin, **_upload(pcm16_wav(44100, 2, 1.5)))
    assert uploaded.status_code == 201, uploaded.text
    prompt = uploaded.json()
    assert uploaded.headers["Location"] == url
    assert prompt["name"] == "greeting.wav"
    assert prompt["ivr_menu_id"] == menu["id"]
    assert abs(prompt["duration_ms"] - 1500) <= 5
    assert (prompt["sample_rate"], prompt["channels"]) == (8000, 1)

    after = (await api.client.get(f"/v1/ivr-menus/{menu['id']}", headers=admin)).json()
    assert after["prompt"] == {"kind": "audio", "prompt_id": prompt["id"]}
    assert after["revision"] == menu["revision"] + 1

    agent = await api.as_role("acme", Role.AGENT)
    downloaded = await api.client.get(url, headers=agent)
    assert downloaded.status_code == 200
    assert downloaded.headers["content-type"] == "audio/wav"
    rate, channels, width, samples = read_wav(downloaded.content)
    assert (rate, channels, width) == (8000, 1, 2)
    assert abs(len(samples) - 12000) <= 8
    # The tone survives the conversion at its level, with nothing else in it.
    middle = samples[1000:-1000]
    assert amplitude(middle, 440, 8000) == pytest.approx(10000, rel=0.03)
    assert max(abs(value) for value in middle) < 10400
    assert downloaded.headers["ETag"] == f'"{prompt["sha256"]}"'
    unchanged = await api.client.get(
        url, headers={**admin, "If-None-Match": downloaded.headers["ETag"]}
    )
    assert unchanged.status_code == 304

    # A new upload replaces the recording; the old one is not kept.
    ulaw = bytes(0xFF if index % 2 else 0x7F for index in range(4000))  # 0.5 s, 8 kHz
    replaced = await api.client.post(
        url, headers=admin, **_upload(riff(0x0007, 1, 8000, 8, ulaw), "ulaw.wav")
    )
    assert replaced.status_code == 201, replaced.text
    assert replaced.json()["duration_ms"] == 500
    async with api.context.database.session() as session:
        kept = await session.scalar(select(func.count()).select_from(PromptRow))
    assert kept == 1

    # Back to a tone: the recording goes.
    await api.client.patch(
        f"/v1/ivr-menus/{menu['id']}", json={"prompt": {"kind": "tone"}}, headers=admin
    )
    assert (await api.client.get(url, headers=admin)).status_code == 404
    async with api.context.database.session() as session:
        assert await session.scalar(select(func.count()).select_from(PromptRow)) == 0


async def test_an_uploaded_prompt_can_be_shared_by_menus(api: ApiHarness) -> None:
    admin, _, _ = await _acme(api)
    first = (await api.client.post("/v1/ivr-menus", json={"name": "day"}, headers=admin)).json()
    prompt = (
        await api.client.post(
            f"/v1/ivr-menus/{first['id']}/prompt",
            headers=admin,
            **_upload(pcm16_wav(16000, 1, 0.5)),
        )
    ).json()
    second = await api.client.post(
        "/v1/ivr-menus",
        json={"name": "night", "prompt": {"kind": "audio", "prompt_id": prompt["id"]}},
        headers=admin,
    )
    assert second.status_code == 201, second.text
    assert (
        await api.client.delete(f"/v1/ivr-menus/{first['id']}", headers=admin)
    ).status_code == 204
    still = await api.client.get(f"/v1/ivr-menus/{second.json()['id']}/prompt", headers=admin)
    assert still.status_code == 200
    assert read_wav(still.content)[0] == 8000


async def test_uploads_that_are_not_playable_audio_are_refused(api: ApiHarness) -> None:
    admin, _, _ = await _acme(api)
    menu = (await api.client.post("/v1/ivr-menus", json={"name": "main"}, headers=admin)).json()
    url = f"/v1/ivr-menus/{menu['id']}/prompt"
    cases = [
        (b"this is not audio at all, just text", "not a WAV file"),
        (b"ID3\x03\x00\x00\x00\x00\x00\x00" + b"\x00" * 100, "MP3"),
        (b"", "empty"),
        (riff(0x0001, 1, 8000, 16, b""), "no audio"),
        (riff(0x0011, 1, 8000, 4, b"\x00" * 800), "IMA ADPCM"),
        (riff(0x0001, 6, 48000, 16, b"\x00" * 1200), "channel"),
        (riff(0x0001, 1, 8000, 12, b"\x00" * 1200), "12-bit"),
        # 301 s of 8-bit PCM at 1 kHz: small, but too long.
        (riff(0x0001, 1, 1000, 8, b"\x80" * 301_000), "at most 300 s"),
    ]
    for data, expected in cases:
        response = await api.client.post(url, headers=admin, **_upload(data))
        assert response.status_code == 422, (expected, response.text)
        body = response.json()
        assert body["error_id"] == "invalid-audio"
        assert _fields(response) == ["file"]
        assert expected in body["message"], body

    missing = await api.client.post(url, headers=admin, data={"other": "x"})
    assert missing.status_code == 422
    assert "body.file" in _fields(missing)

    huge = await api.client.post(url, headers=admin, **_upload(b"\0" * (10 * 1024 * 1024 + 1)))
    assert huge.status_code == 413
    assert _fields(huge) == ["file"]

    # Nothing was stored; the menu still plays its tone.
    after = (await api.client.get(f"/v1/ivr-menus/{menu['id']}", headers=admin)).json()
    assert after["prompt"]["kind"] == "tone"
    assert after["revision"] == menu["revision"]


# --- text to speech (real espeak-ng) -------------------------------------------------------


def _rms(samples: array[int]) -> float:
    return math.sqrt(sum(value * value for value in samples) / len(samples))


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Здравствуйте! Нажмите один для отдела продаж или ноль для оператора.", "ru-RU"),
        ("Hello! Press one for sales, or zero for the operator.", "en-US"),
    ],
    ids=["russian", "english"],
)
async def test_a_text_prompt_is_spoken_and_stored_like_an_upload(
    api: ApiHarness, text: str, language: str
) -> None:
    admin, _, _ = await _acme(api)
    created = await api.client.post(
        "/v1/ivr-menus",
        json={"name": "main", "prompt": {"kind": "tts", "text": text, "language": language}},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    menu = created.json()
    prompt_id = menu["prompt"]["prompt_id"]
    assert menu["prompt"] == {
        "kind": "tts",
        "text": text,
        "language": language,
        "prompt_id": prompt_id,
    }
    read = await api.client.get(f"/v1/ivr-menus/{menu['id']}", headers=admin)
    assert read.json() == menu
    listed = await api.client.get("/v1/ivr-menus", headers=admin)
    assert listed.json()["items"] == [menu]

    # Readable back like an upload: 8 kHz mono 16-bit speech of a plausible length, not silence.
    agent = await api.as_role("acme", Role.AGENT)
    downloaded = await api.client.get(f"/v1/ivr-menus/{menu['id']}/prompt", headers=agent)
    assert downloaded.status_code == 200, downloaded.text
    assert downloaded.headers["content-type"] == "audio/wav"
    rate, channels, width, samples = read_wav(downloaded.content)
    assert (rate, channels, width) == (8000, 1, 2)
    assert 0.5 < len(samples) / rate < 30
    assert _rms(samples) > 500  # speech; silence or a faint hiss is far below

    # Stored exactly like an uploaded prompt: a prompt row the menu refers to as audio.
    async with api.context.database.session() as session:
        row = await session.get(IvrMenuRow, uuid.UUID(menu["id"]))
        assert row is not None
        assert row.prompt == {"kind": "audio", "prompt_id": prompt_id}
        stored = await session.get(PromptRow, uuid.UUID(prompt_id))
        assert stored is not None
        assert (stored.tenant_id, stored.ivr_menu_id) == ("acme", row.id)
        assert (stored.text, stored.language) == (text, language)
        assert stored.audio == downloaded.content
        assert abs(stored.duration_ms - len(samples) * 1000 / rate) <= 1
    assert downloaded.headers["ETag"] == f'"{stored.sha256}"'


async def test_changing_the_text_renders_it_again(api: ApiHarness) -> None:
    admin, _, _ = await _acme(api)
    menu = (
        await api.client.post(
            "/v1/ivr-menus",
            json={"name": "main", "prompt": {"kind": "tts", "text": "Добрый день."}},
            headers=admin,
        )
    ).json()
    url = f"/v1/ivr-menus/{menu['id']}"
    first = (await api.client.get(f"{url}/prompt", headers=admin)).content

    longer = "Добрый день. Вы позвонили в компанию Акме. Оставайтесь на линии."
    changed = await api.client.patch(
        url, json={"prompt": {"kind": "tts", "text": longer}}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    prompt = changed.json()["prompt"]
    assert (prompt["text"], prompt["language"]) == (longer, "ru-RU")
    assert prompt["prompt_id"] != menu["prompt"]["prompt_id"]
    second = (await api.client.get(f"{url}/prompt", headers=admin)).content
    assert len(read_wav(second)[3]) > 2 * len(read_wav(first)[3])
    async with api.context.database.session() as session:  # the old rendering is gone
        assert await session.scalar(select(func.count()).select_from(PromptRow)) == 1

    # The same text again, or a change elsewhere, keeps the rendering.
    same = await api.client.patch(
        url, json={"prompt": {"kind": "tts", "text": longer}, "timeout_s": 7}, headers=admin
    )
    assert same.status_code == 200, same.text
    assert same.json()["prompt"] == prompt
    renamed = await api.client.patch(url, json={"name": "main 2"}, headers=admin)
    assert renamed.json()["prompt"] == prompt


async def test_a_language_without_a_voice_is_refused_naming_the_field(api: ApiHarness) -> None:
    admin, _, _ = await _acme(api)
    body = {"name": "main", "prompt": {"kind": "tts", "text": "Hallo", "language": "xx-YY"}}
    refused = await api.client.post("/v1/ivr-menus", json=body, headers=admin)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error_id"] == "tts-language-not-supported"
    assert _fields(refused) == ["body.prompt.language"]
    assert "xx-YY" in refused.json()["message"]

    menu = (await api.client.post("/v1/ivr-menus", json={"name": "main"}, headers=admin)).json()
    patched = await api.client.patch(
        f"/v1/ivr-menus/{menu['id']}", json={"prompt": body["prompt"]}, headers=admin
    )
    assert patched.status_code == 422
    assert _fields(patched) == ["body.prompt.language"]
    async with api.context.database.session() as session:
        assert await session.scalar(select(func.count()).select_from(PromptRow)) == 0


async def test_text_the_schema_refuses(api: ApiHarness) -> None:
    admin, _, _ = await _acme(api)
    for prompt in (
        {"kind": "tts", "text": "a" * 1001},
        {"kind": "tts", "text": " \n\t "},
        {"kind": "tts", "text": "Hello", "language": "en-" + "x" * 40},
    ):
        refused = await api.client.post(
            "/v1/ivr-menus", json={"name": "main", "prompt": prompt}, headers=admin
        )
        assert refused.status_code == 422, prompt
        assert refused.json()["error_id"] == "validation-failed"
        field = "body.prompt.tts.language" if "language" in prompt else "body.prompt.tts.text"
        assert _fields(refused) == [field]


async def test_without_espeak_ng_a_text_prompt_is_refused_and_nothing_is_stored(
    api: ApiHarness,
) -> None:
    admin, _, _ = await _acme(api)
    api.context.speech = SpeechEngine("/nonexistent/espeak-ng")
    body = {"name": "main", "prompt": {"kind": "tts", "text": "Press 1 for sales."}}
    refused = await api.client.post("/v1/ivr-menus", json=body, headers=admin)
    assert refused.status_code == 503, refused.text
    assert refused.json()["error_id"] == "tts-unavailable"
    assert "espeak-ng" in refused.json()["message"]
    assert (await api.client.get("/v1/ivr-menus", headers=admin)).json()["total"] == 0

    # Everything else still works, the tone included.
    menu = await api.client.post("/v1/ivr-menus", json={"name": "main"}, headers=admin)
    assert menu.status_code == 201
    async with api.context.database.session() as session:
        assert await session.scalar(select(func.count()).select_from(PromptRow)) == 0
