"""/v1/prompts: the tenant's prompt library; queue music and users' voicemail greetings
that name its prompts, as the node config carries them."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select
from tests.services.control_api import ApiHarness
from tests.wavs import amplitude, pcm16_wav, read_wav

from vpbx_control.auth.principal import Role
from vpbx_control.ivr.models import PromptRow
from vpbx_control.ivr.speech import SpeechEngine


def _fields(response: Any) -> list[str]:
    return [detail["field"] for detail in response.json()["details"]]


def _upload(data: bytes, filename: str = "music.wav", **form: str) -> dict[str, Any]:
    return {"files": {"file": (filename, data, "audio/wav")}, "data": form}


async def _acme(api: ApiHarness) -> dict[str, str]:
    await api.add_tenant("acme")
    return await api.as_role("acme")


async def _upload_prompt(
    api: ApiHarness, admin: dict[str, str], frequency: float = 440.0, **form: str
) -> dict[str, Any]:
    response = await api.client.post(
        "/v1/prompts", headers=admin, **_upload(pcm16_wav(16000, 2, 1.0, frequency), **form)
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def _group(api: ApiHarness, admin: dict[str, str]) -> str:
    user = await api.add_user("acme", extension="101", name="Anna")
    created = await api.client.post(
        "/v1/groups",
        json={"name": "support", "strategy": "ring-all", "members": [{"user_id": str(user.id)}]},
        headers=admin,
    )
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def _node_config(api: ApiHarness, tenant: str = "acme") -> dict[str, Any]:
    response = await api.client.get(f"/internal/v1/node-config/{tenant}/msk", headers=api.node)
    assert response.status_code == 200, response.text
    config: dict[str, Any] = response.json()
    return config


# --- the library -------------------------------------------------------------------------


async def test_upload_list_read_and_download(api: ApiHarness) -> None:
    admin = await _acme(api)
    music = await _upload_prompt(api, admin, 440.0, name="hold music")
    assert music["kind"] == "audio"
    assert music["name"] == "hold music"
    assert music["library"] is True
    assert abs(music["duration_ms"] - 1000) <= 1
    assert (music["sample_rate"], music["channels"]) == (8000, 1)
    assert music["audio_url"] == f"/v1/prompts/{music['id']}/audio"
    # Without a name, the file's name.
    other = await api.client.post(
        "/v1/prompts", headers=admin, **_upload(pcm16_wav(8000, 1, 0.5), "jingle.wav")
    )
    assert other.status_code == 201, other.text
    assert other.headers["Location"] == f"/v1/prompts/{other.json()['id']}"
    assert other.json()["name"] == "jingle.wav"

    # Agents read the library (to pick their greeting) and hear it.
    agent = await api.as_role("acme", Role.AGENT)
    listed = await api.client.get("/v1/prompts", headers=agent)
    assert listed.status_code == 200, listed.text
    assert [item["name"] for item in listed.json()["items"]] == ["hold music", "jingle.wav"]
    assert listed.json()["total"] == 2
    page = await api.client.get("/v1/prompts?limit=1&offset=1", headers=agent)
    assert [item["name"] for item in page.json()["items"]] == ["jingle.wav"]
    assert page.json()["total"] == 2
    named = await api.client.get("/v1/prompts?name=HOLD", headers=agent)
    assert [item["id"] for item in named.json()["items"]] == [music["id"]]
    read = await api.client.get(f"/v1/prompts/{music['id']}", headers=agent)
    assert read.json() == music

    # The audio round trip: 8 kHz mono 16-bit, the same tone.
    audio = await api.client.get(music["audio_url"], headers=agent)
    assert audio.status_code == 200, audio.text
    assert audio.headers["content-type"] == "audio/wav"
    rate, channels, width, samples = read_wav(audio.content)
    assert (rate, channels, width) == (8000, 1, 2)
    assert amplitude(samples, 440.0, rate) > 5 * amplitude(samples, 1000.0, rate)
    assert audio.headers["ETag"] == f'"{music["sha256"]}"'
    unchanged = await api.client.get(
        music["audio_url"], headers={**agent, "If-None-Match": audio.headers["ETag"]}
    )
    assert unchanged.status_code == 304
    # The media nodes fetch the same audio.
    node = await api.client.get(f"/internal/v1/prompts/acme/{music['id']}", headers=api.node)
    assert node.content == audio.content

    # Uploading is the tenant admin's.
    refused = await api.client.post("/v1/prompts", headers=agent, **_upload(pcm16_wav(8000, 1, 1)))
    assert refused.status_code == 403


async def test_music_may_run_ten_minutes(api: ApiHarness) -> None:
    """Longer than an IVR menu's prompt may be (5 minutes); beyond 10 minutes is refused."""
    admin = await _acme(api)
    long_music = pcm16_wav(8000, 1, 360.0)  # 6 minutes, 5.8 MB
    uploaded = await api.client.post("/v1/prompts", headers=admin, **_upload(long_music))
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["duration_ms"] == 360_000
    menu = await api.client.post("/v1/ivr-menus", json={"name": "main"}, headers=admin)
    as_menu_prompt = await api.client.post(
        f"/v1/ivr-menus/{menu.json()['id']}/prompt", headers=admin, **_upload(long_music)
    )
    assert as_menu_prompt.status_code == 422
    too_long = await api.client.post(
        "/v1/prompts", headers=admin, **_upload(pcm16_wav(4000, 1, 601.0))
    )
    assert too_long.status_code == 422, too_long.text
    assert _fields(too_long) == ["file"]
    assert "600" in too_long.json()["message"]


async def test_bad_files_are_refused_naming_the_field(api: ApiHarness) -> None:
    admin = await _acme(api)
    not_audio = await api.client.post(
        "/v1/prompts", headers=admin, **_upload(b"ID3\x03 an mp3, really", "song.mp3")
    )
    assert not_audio.status_code == 422, not_audio.text
    assert not_audio.json()["error_id"] == "invalid-audio"
    assert _fields(not_audio) == ["file"]
    no_file = await api.client.post("/v1/prompts", headers=admin, data={"name": "x"})
    assert no_file.status_code == 422
    assert _fields(no_file) == ["body.file"]
    blank_name = await api.client.post(
        "/v1/prompts", headers=admin, **_upload(pcm16_wav(8000, 1, 0.5), name=" ")
    )
    assert blank_name.status_code == 422
    assert _fields(blank_name) == ["body.name"]
    too_big = await api.client.post(
        "/v1/prompts", headers=admin, **_upload(b"\x00" * (20 * 1024 * 1024 + 1))
    )
    assert too_big.status_code == 413
    assert _fields(too_big) == ["file"]
    assert (await api.client.get("/v1/prompts", headers=admin)).json()["total"] == 0


async def test_text_is_spoken_into_the_library(api: ApiHarness) -> None:
    admin = await _acme(api)
    spoken = await api.client.post(
        "/v1/prompts/speech",
        json={
            "name": "closed",
            "text": "We are closed, please call tomorrow.",
            "language": "en-US",
        },
        headers=admin,
    )
    assert spoken.status_code == 201, spoken.text
    prompt = spoken.json()
    assert (prompt["name"], prompt["kind"], prompt["library"]) == ("closed", "audio", True)
    assert (prompt["text"], prompt["language"]) == (
        "We are closed, please call tomorrow.",
        "en-US",
    )
    assert prompt["duration_ms"] > 500
    unknown = await api.client.post(
        "/v1/prompts/speech", json={"text": "Hallo", "language": "xx-YY"}, headers=admin
    )
    assert unknown.status_code == 422, unknown.text
    assert _fields(unknown) == ["body.language"]
    api.context.speech = SpeechEngine("/nonexistent/espeak-ng")
    unavailable = await api.client.post("/v1/prompts/speech", json={"text": "Hi"}, headers=admin)
    assert unavailable.status_code == 503
    assert (await api.client.get("/v1/prompts", headers=admin)).json()["total"] == 1


async def test_library_prompts_outlive_the_clean_up_of_unplayed_prompts(api: ApiHarness) -> None:
    """Changing a menu deletes the prompts nothing plays any more; never the library's."""
    admin = await _acme(api)
    music = await _upload_prompt(api, admin)
    menu = await api.client.post("/v1/ivr-menus", json={"name": "main"}, headers=admin)
    menu_id = menu.json()["id"]
    upload = await api.client.post(
        f"/v1/ivr-menus/{menu_id}/prompt", headers=admin, **_upload(pcm16_wav(8000, 1, 0.5))
    )
    own = upload.json()["id"]
    # The menu plays the library's prompt now: its own upload goes, the library's stays.
    changed = await api.client.patch(
        f"/v1/ivr-menus/{menu_id}",
        json={"prompt": {"kind": "audio", "prompt_id": music["id"]}},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    # And back to a tone: nothing plays the library's prompt; it stays all the same.
    await api.client.patch(
        f"/v1/ivr-menus/{menu_id}", json={"prompt": {"kind": "tone"}}, headers=admin
    )
    await api.client.delete(f"/v1/ivr-menus/{menu_id}", headers=admin)
    async with api.context.database.session() as session:
        kept = set(await session.scalars(select(PromptRow.id)))
    assert kept == {uuid.UUID(music["id"])}
    assert uuid.UUID(own) not in kept


async def test_a_prompt_in_use_is_not_deleted_and_the_answer_says_where(api: ApiHarness) -> None:
    admin = await _acme(api)
    music = await _upload_prompt(api, admin)
    group = await _group(api, admin)
    audio = {"kind": "audio", "prompt_id": music["id"]}
    plan = await api.client.post(
        "/v1/route-plans",
        json={"name": "support", "steps": [{"type": "queue", "group_id": group, "music": audio}]},
        headers=admin,
    )
    assert plan.status_code == 201, plan.text
    menu = await api.client.post(
        "/v1/ivr-menus", json={"name": "main", "prompt": audio}, headers=admin
    )
    assert menu.status_code == 201, menu.text
    users = await api.client.get("/v1/users?extension=101", headers=admin)
    anna = users.json()["items"][0]
    greeted = await api.client.patch(
        f"/v1/users/{anna['id']}", json={"settings": {"voicemail_greeting": audio}}, headers=admin
    )
    assert greeted.status_code == 200, greeted.text

    refused = await api.client.delete(f"/v1/prompts/{music['id']}", headers=admin)
    assert refused.status_code == 409, refused.text
    assert refused.json()["error_id"] == "prompt-in-use"
    message = refused.json()["message"]
    for user in ("IVR menu 'main'", "route plan 'support'", "voicemail greeting of Anna (101)"):
        assert user in message, message
    # The IVR menu's and the plan's clean-up never touch it either.
    await api.client.delete(f"/v1/ivr-menus/{menu.json()['id']}", headers=admin)
    await api.client.patch(
        f"/v1/route-plans/{plan.json()['id']}",
        json={"steps": [{"type": "queue", "group_id": group}]},
        headers=admin,
    )
    still = await api.client.delete(f"/v1/prompts/{music['id']}", headers=admin)
    assert still.status_code == 409
    assert "Anna (101)" in still.json()["message"]
    assert "IVR menu" not in still.json()["message"]

    await api.client.patch(
        f"/v1/users/{anna['id']}", json={"settings": {"voicemail_greeting": None}}, headers=admin
    )
    stale = await api.client.delete(
        f"/v1/prompts/{music['id']}", headers={**admin, "If-Match": '"7"'}
    )
    assert stale.status_code == 412
    deleted = await api.client.delete(f"/v1/prompts/{music['id']}", headers=admin)
    assert deleted.status_code == 204, deleted.text
    assert (await api.client.get(f"/v1/prompts/{music['id']}", headers=admin)).status_code == 404


async def test_a_number_greeting_keeps_its_prompt(api: ApiHarness) -> None:
    admin = await _acme(api)
    pool = await api.client.post(
        "/v1/platform/pool", json={"city": "msk", "numbers": ["+74950000001"]}, headers=api.platform
    )
    assert pool.status_code == 201, pool.text
    number = await api.client.post("/v1/numbers", json={"city": "msk"}, headers=admin)
    music = await _upload_prompt(api, admin)
    greeting = {"kind": "audio", "prompt_id": music["id"]}
    changed = await api.client.patch(
        f"/v1/numbers/{number.json()['id']}", json={"greeting": greeting}, headers=admin
    )
    assert changed.status_code == 200, changed.text
    refused = await api.client.delete(f"/v1/prompts/{music['id']}", headers=admin)
    assert refused.status_code == 409
    assert "greeting of number +74950000001" in refused.json()["message"]


async def test_another_tenants_prompt_is_not_found_wherever_it_is_named(api: ApiHarness) -> None:
    acme = await _acme(api)
    music = await _upload_prompt(api, acme)
    await api.add_tenant("globex")
    globex = await api.as_role("globex")
    for method, path in (
        ("GET", f"/v1/prompts/{music['id']}"),
        ("GET", f"/v1/prompts/{music['id']}/audio"),
        ("DELETE", f"/v1/prompts/{music['id']}"),
    ):
        response = await api.client.request(method, path, headers=globex)
        assert response.status_code == 404, (method, path, response.text)
    assert (await api.client.get("/v1/prompts", headers=globex)).json()["items"] == []
    node = await api.client.get(f"/internal/v1/prompts/globex/{music['id']}", headers=api.node)
    assert node.status_code == 404

    audio = {"kind": "audio", "prompt_id": music["id"]}
    user = await api.add_user("globex", extension="101", name="Boris")
    group = await api.client.post(
        "/v1/groups",
        json={"name": "support", "members": [{"user_id": str(user.id)}]},
        headers=globex,
    )
    step = {"type": "queue", "group_id": group.json()["id"], "music": audio}
    plan = await api.client.post(
        "/v1/route-plans",
        json={"name": "p", "steps": [step]},
        headers=globex,
    )
    assert plan.status_code == 404, plan.text
    assert plan.json()["error_id"] == "reference-not-found"
    assert _fields(plan) == ["body.steps[0].music.prompt_id"]
    greeting = await api.client.patch(
        f"/v1/users/{user.id}", json={"settings": {"voicemail_greeting": audio}}, headers=globex
    )
    assert greeting.status_code == 404, greeting.text
    assert _fields(greeting) == ["body.settings.voicemail_greeting.prompt_id"]
    menu = await api.client.post(
        "/v1/ivr-menus", json={"name": "m", "prompt": audio}, headers=globex
    )
    assert menu.status_code == 404
    assert _fields(menu) == ["body.prompt.prompt_id"]


# --- queue music and voicemail greetings in the node config -------------------------------


async def test_queue_music_reaches_the_node_config(api: ApiHarness) -> None:
    admin = await _acme(api)
    music = await _upload_prompt(api, admin)
    group = await _group(api, admin)
    steps = [
        {
            "type": "queue",
            "group_id": group,
            "music": {"kind": "audio", "prompt_id": music["id"]},
            "announce_position": True,
        },
        {"type": "queue", "group_id": group, "music": {"kind": "tone", "frequency_hz": 600}},
        {"type": "queue", "group_id": group},
    ]
    created = await api.client.post(
        "/v1/route-plans", json={"name": "support", "steps": steps}, headers=admin
    )
    assert created.status_code == 201, created.text
    assert created.json()["steps"][0]["music"] == {"kind": "audio", "prompt_id": music["id"]}
    assert created.json()["steps"][2]["music"] is None
    [plan] = (await _node_config(api))["route_plans"]
    assert [step["music"] for step in plan["steps"]] == [
        {"kind": "audio", "prompt_id": music["id"]},
        {"kind": "tone", "frequency_hz": 600, "duration_ms": 500},
        None,
    ]

    unknown = str(uuid.uuid4())
    refused = await api.client.patch(
        f"/v1/route-plans/{created.json()['id']}",
        json={
            "steps": [
                {
                    "type": "queue",
                    "group_id": group,
                    "music": {"kind": "audio", "prompt_id": unknown},
                }
            ]
        },
        headers=admin,
    )
    assert refused.status_code == 404, refused.text
    assert _fields(refused) == ["body.steps[0].music.prompt_id"]
    bad = await api.client.patch(
        f"/v1/route-plans/{created.json()['id']}",
        json={"steps": [{"type": "queue", "group_id": group, "music": {"kind": "mp3"}}]},
        headers=admin,
    )
    assert bad.status_code == 422
    assert _fields(bad) == ["body.steps[0].queue.music"]


async def test_a_user_sets_their_own_voicemail_greeting(api: ApiHarness) -> None:
    admin = await _acme(api)
    greeting = await _upload_prompt(api, admin, 500.0, name="Anna's greeting")
    user = await api.add_user("acme", extension="101", name="Anna", password="anna-password-1")
    anna = await api.login(user.email, "anna-password-1")
    audio = {"kind": "audio", "prompt_id": greeting["id"]}

    changed = await api.client.patch(
        "/v1/users/me", json={"settings": {"voicemail_greeting": audio}}, headers=anna
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["settings"]["voicemail_greeting"] == audio
    assert changed.json()["settings"]["voicemail"] is True
    [entry] = (await _node_config(api))["users"]
    assert entry["settings"]["voicemail_greeting"] == audio

    # Other settings leave the greeting alone; null brings back the default.
    await api.client.patch("/v1/users/me", json={"settings": {"wrap_up_s": 15}}, headers=anna)
    [entry] = (await _node_config(api))["users"]
    assert entry["settings"]["voicemail_greeting"] == audio
    assert entry["settings"]["wrap_up_s"] == 15
    reset = await api.client.patch(
        "/v1/users/me", json={"settings": {"voicemail_greeting": None}}, headers=anna
    )
    assert reset.json()["settings"]["voicemail_greeting"] is None
    [entry] = (await _node_config(api))["users"]
    assert entry["settings"]["voicemail_greeting"] is None

    # An admin may set it too, also on creating the user; a tone is a greeting as well.
    tone = {"kind": "tone", "frequency_hz": 700, "duration_ms": 1000}
    by_admin = await api.client.patch(
        f"/v1/users/{user.id}", json={"settings": {"voicemail_greeting": tone}}, headers=admin
    )
    assert by_admin.status_code == 200, by_admin.text
    created = await api.client.post(
        "/v1/users",
        json={
            "email": "boris@acme.example",
            "name": "Boris",
            "extension": "102",
            "settings": {"voicemail_greeting": audio},
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    entries = {e["extension"]: e for e in (await _node_config(api))["users"]}
    assert entries["101"]["settings"]["voicemail_greeting"] == tone
    assert entries["102"]["settings"]["voicemail_greeting"] == audio

    missing = await api.client.patch(
        "/v1/users/me",
        json={
            "settings": {"voicemail_greeting": {"kind": "audio", "prompt_id": str(uuid.uuid4())}}
        },
        headers=anna,
    )
    assert missing.status_code == 404, missing.text
    assert _fields(missing) == ["body.settings.voicemail_greeting.prompt_id"]
    malformed = await api.client.patch(
        "/v1/users/me",
        json={"settings": {"voicemail_greeting": {"kind": "audio", "prompt_id": "nope"}}},
        headers=anna,
    )
    assert malformed.status_code == 422
    assert _fields(malformed) == ["body.settings.voicemail_greeting.audio.prompt_id"]
