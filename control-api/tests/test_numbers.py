"""/v1/numbers against the local number store: provisioning from the pool, entry routes,
labels, release, plan limits, concurrency and tenant isolation."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import select
from tests.services.control_api import ApiHarness

from vpbx_common.manifests import Number, parse_platform_yaml
from vpbx_control.auth.principal import Role
from vpbx_control.errors import Conflict
from vpbx_control.groups.models import GroupRow
from vpbx_control.numbers.models import PoolNumberRow
from vpbx_control.references import refuse_if_referenced


async def add_pool(api: ApiHarness, *numbers: str, city: str = "msk") -> None:
    async with api.context.database.session() as session:
        session.add_all(PoolNumberRow(number=n, city=city, tenant_id=None) for n in numbers)
        await session.commit()


async def pool_holders(api: ApiHarness) -> dict[str, str | None]:
    async with api.context.database.session() as session:
        rows = (await session.execute(select(PoolNumberRow))).scalars().all()
    return {row.number: row.tenant_id for row in rows}


async def add_group(api: ApiHarness, tenant: str, name: str = "sales") -> uuid.UUID:
    row = GroupRow(id=uuid.uuid4(), tenant_id=tenant, name=name, strategy="ring-all", revision=1)
    async with api.context.database.session() as session:
        session.add(row)
        await session.commit()
    return row.id


def stored_numbers(api: ApiHarness) -> dict[str, Number]:
    """The Number manifests as `vpbx up` reads them from the local store's file."""
    path = api.settings.local_numbers_file
    if not path.exists():
        return {}
    return {n.name: n for n in parse_platform_yaml(path.read_text()).numbers}


def fields(response: Any) -> list[str]:
    return [detail["field"] for detail in response.json()["details"]]


async def test_provision_read_update_release(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    sales = await add_group(api, "acme")
    await add_pool(api, "+74950000002", "+74950000001")

    created = await api.client.post(
        "/v1/numbers",
        json={
            "city": "msk",
            "entry": {"type": "group", "group_id": str(sales)},
            "label": "yandex-direct",
            "channels": 2,
        },
        headers=admin,
    )
    assert created.status_code == 201, created.text
    number = created.json()
    assert number == {
        "id": "acme-74950000001",
        "number": "+74950000001",
        "city": "msk",
        "label": "yandex-direct",
        "entry": {"type": "group", "group_id": str(sales)},
        "channels": 2,
        "greeting": None,
        "record": None,
        "status": {"ready": None, "node": None, "conditions": []},
    }
    assert created.headers["Location"] == "/v1/numbers/acme-74950000001"
    # The Number resource is what the edge routes by; its entry is the stable reference.
    spec = stored_numbers(api)["acme-74950000001"].spec
    assert (spec.number, spec.tenant, spec.city, spec.entry) == (
        "+74950000001",
        "acme",
        "msk",
        f"group:{sales}",
    )
    assert (await pool_holders(api))["+74950000001"] == "acme"

    read = await api.client.get("/v1/numbers/acme-74950000001", headers=admin)
    assert read.status_code == 200
    assert read.json() == number
    etag = read.headers["ETag"]

    changed = await api.client.patch(
        "/v1/numbers/acme-74950000001",
        json={"label": "google-ads", "entry": None},
        headers={**admin, "If-Match": etag},
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["label"] == "google-ads"
    assert changed.json()["entry"] is None
    assert changed.json()["channels"] == 2
    assert changed.headers["ETag"] != etag
    spec = stored_numbers(api)["acme-74950000001"].spec
    assert (spec.label, spec.entry) == ("google-ads", "unrouted")

    stale = await api.client.patch(
        "/v1/numbers/acme-74950000001",
        json={"label": "lost-update"},
        headers={**admin, "If-Match": etag},
    )
    assert stale.status_code == 412
    assert stale.json()["error_id"] == "precondition-failed"

    listed = await api.client.get("/v1/numbers", params={"label": "google-ads"}, headers=admin)
    assert [item["id"] for item in listed.json()["items"]] == ["acme-74950000001"]
    other_city = await api.client.get("/v1/numbers", params={"city": "ekb"}, headers=admin)
    assert other_city.json()["total"] == 0

    released = await api.client.delete("/v1/numbers/acme-74950000001", headers=admin)
    assert released.status_code == 204
    assert (await api.client.get("/v1/numbers/acme-74950000001", headers=admin)).status_code == 404
    assert stored_numbers(api) == {}
    assert (await pool_holders(api))["+74950000001"] is None


async def test_provision_by_city_pattern_and_specific_number(api: ApiHarness) -> None:
    await api.add_tenant("acme", cities=("msk", "ekb"))
    admin = await api.as_role("acme")
    await add_pool(api, "+74950000001", "+74951110777", "+74990000002")
    await add_pool(api, "+73430000001", city="ekb")
    await add_pool(api, "+78120000001", city="spb")

    async def provision(body: dict[str, Any]) -> Any:
        return await api.client.post("/v1/numbers", json=body, headers=admin)

    by_prefix = await provision({"city": "msk", "pattern": "7499*"})
    assert by_prefix.status_code == 201, by_prefix.text
    assert by_prefix.json()["number"] == "+74990000002"
    contains = await provision({"city": "msk", "pattern": "777"})
    assert contains.json()["number"] == "+74951110777"
    # A specific number needs no city: it is the pool number's own.
    specific = await provision({"number": "8 (343) 000-00-01"})
    assert specific.status_code == 201, specific.text
    assert (specific.json()["number"], specific.json()["city"]) == ("+73430000001", "ekb")
    by_city = await provision({"city": "msk"})
    assert by_city.json()["number"] == "+74950000001"

    taken = await provision({"number": "+73430000001"})
    assert taken.status_code == 409
    assert taken.json()["error_id"] == "no-number-available"
    assert fields(taken) == ["body.number"]
    exhausted = await provision({"city": "msk", "pattern": "+7495*"})
    assert exhausted.status_code == 409
    assert exhausted.json()["error_id"] == "no-number-available"
    assert fields(exhausted) == ["body.pattern"]
    nothing_in_city = await provision({"city": "ekb"})
    assert nothing_in_city.status_code == 409
    assert fields(nothing_in_city) == ["body.city"]

    not_served = await provision({"city": "spb"})
    assert not_served.status_code == 422
    assert fields(not_served) == ["body.city"]
    not_served_number = await provision({"number": "+78120000001"})
    assert not_served_number.status_code == 422
    assert fields(not_served_number) == ["body.number"]
    both = await provision({"city": "msk", "pattern": "7*", "number": "+74950000001"})
    assert both.status_code == 422
    assert fields(both) == ["body.pattern"]
    no_city = await provision({"pattern": "7*"})
    assert no_city.status_code == 422
    assert fields(no_city) == ["body.city"]
    bad_pattern = await provision({"city": "msk", "pattern": "+7 495%"})
    assert bad_pattern.status_code == 422
    assert fields(bad_pattern) == ["body.pattern"]
    bad_number = await provision({"number": "12"})
    assert bad_number.status_code == 422
    assert fields(bad_number) == ["body.number"]
    assert (await pool_holders(api))["+78120000001"] is None


async def test_concurrent_provisions_never_share_a_number(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    acme = await api.as_role("acme")
    globex = await api.as_role("globex")
    pool = [f"+7495000000{i}" for i in range(1, 6)]
    await add_pool(api, *pool)

    responses = await asyncio.gather(
        *(
            api.client.post("/v1/numbers", json={"city": "msk"}, headers=headers)
            for headers in [acme, globex] * 5
        )
    )

    statuses = Counter(r.status_code for r in responses)
    assert statuses == {201: 5, 409: 5}, [r.text for r in responses]
    assert {r.json()["error_id"] for r in responses if r.status_code == 409} == {
        "no-number-available"
    }
    won = sorted(r.json()["number"] for r in responses if r.status_code == 201)
    assert won == pool
    stored = stored_numbers(api)
    assert sorted(n.spec.number for n in stored.values()) == pool
    holders = await pool_holders(api)
    assert all(holders[n.spec.number] == n.spec.tenant for n in stored.values())


async def test_plan_limit_on_numbers(api: ApiHarness) -> None:
    await api.add_tenant("acme", numbers=2)
    admin = await api.as_role("acme")
    await add_pool(api, "+74950000001", "+74950000002", "+74950000003")
    for _ in range(2):
        ok = await api.client.post("/v1/numbers", json={"city": "msk"}, headers=admin)
        assert ok.status_code == 201
    refused = await api.client.post("/v1/numbers", json={"city": "msk"}, headers=admin)
    assert refused.status_code == 409
    assert refused.json()["error_id"] == "plan-limit-reached"
    assert (await pool_holders(api))["+74950000003"] is None

    assert (await api.client.delete("/v1/numbers/acme-74950000001", headers=admin)).is_success
    again = await api.client.post("/v1/numbers", json={"city": "msk"}, headers=admin)
    assert again.status_code == 201


async def test_another_tenants_numbers_and_objects_are_not_found(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    await api.add_tenant("globex")
    acme = await api.as_role("acme")
    globex_key = await api.api_key("globex")
    globex_group = await add_group(api, "globex")
    await add_pool(api, "+74950000001")
    created = await api.client.post("/v1/numbers", json={"city": "msk"}, headers=acme)
    number_id = created.json()["id"]

    for method in ("GET", "PATCH", "DELETE"):
        response = await api.client.request(
            method,
            f"/v1/numbers/{number_id}",
            json={"label": "stolen"} if method == "PATCH" else None,
            headers=globex_key,
        )
        assert response.status_code == 404, method
    assert (await api.client.get("/v1/numbers", headers=globex_key)).json()["total"] == 0
    assert stored_numbers(api)[number_id].spec.label is None

    foreign_entry = await api.client.patch(
        f"/v1/numbers/{number_id}",
        json={"entry": {"type": "group", "group_id": str(globex_group)}},
        headers=acme,
    )
    assert foreign_entry.status_code == 404
    assert foreign_entry.json()["error_id"] == "reference-not-found"
    assert fields(foreign_entry) == ["body.entry.group_id"]
    assert stored_numbers(api)[number_id].spec.entry == "unrouted"


async def test_agents_read_numbers_but_do_not_provision(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    agent = await api.as_role("acme", Role.AGENT)
    await add_pool(api, "+74950000001")
    refused = await api.client.post("/v1/numbers", json={"city": "msk"}, headers=agent)
    assert refused.status_code == 403
    assert (await pool_holders(api))["+74950000001"] is None
    assert (await api.client.get("/v1/numbers", headers=agent)).status_code == 200


async def test_entry_forms(api: ApiHarness) -> None:
    """Hand-written entries show as legacy; only call-entry targets are accepted."""
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    # A number written in a platform file (like examples/demo.yaml), not from the pool.
    await api.context.numbers.create_number(
        Number.model_validate(
            {
                "apiVersion": "vpbx.io/v1alpha1",
                "kind": "Number",
                "metadata": {"name": "acme-msk-main"},
                "spec": {"number": "+74950000009", "tenant": "acme", "city": "msk", "entry": "101"},
            }
        )
    )
    read = await api.client.get("/v1/numbers/acme-msk-main", headers=admin)
    assert read.json()["entry"] == {"type": "legacy", "name": "101"}

    voicemail = await api.client.patch(
        "/v1/numbers/acme-msk-main", json={"entry": {"type": "voicemail"}}, headers=admin
    )
    assert voicemail.status_code == 422
    assert any(f.startswith("body.entry") for f in fields(voicemail))

    user = await api.add_user("acme", extension="101")
    routed = await api.client.patch(
        "/v1/numbers/acme-msk-main",
        json={"entry": {"type": "user", "user_id": str(user.id)}},
        headers=admin,
    )
    assert routed.json()["entry"] == {"type": "user", "user_id": str(user.id)}
    assert stored_numbers(api)["acme-msk-main"].spec.entry == f"user:{user.id}"

    # Released, a number that never came from the pool joins it.
    assert (await api.client.delete("/v1/numbers/acme-msk-main", headers=admin)).is_success
    assert (await pool_holders(api)) == {"+74950000009": None}


async def test_a_store_failure_leaves_the_number_in_the_pool(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    await add_pool(api, "+74950000001")
    # The local store writes through a temporary file; a directory in its place
    # makes every write fail, as a full or read-only disk would.
    blocker = api.settings.local_numbers_file.with_suffix(".tmp")
    blocker.mkdir(parents=True)
    failed = await api.client.post("/v1/numbers", json={"city": "msk"}, headers=admin)
    assert failed.status_code == 503
    assert failed.json()["error_id"] == "number-store-unavailable"
    assert (await pool_holders(api))["+74950000001"] is None

    blocker.rmdir()
    retried = await api.client.post("/v1/numbers", json={"city": "msk"}, headers=admin)
    assert retried.status_code == 201
    assert retried.json()["number"] == "+74950000001"


async def test_number_changes_are_announced_to_the_tenants_nodes(api: ApiHarness) -> None:
    assert api.context.redis is not None
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    await add_pool(api, "+74950000001")
    async with api.context.redis.pubsub() as pubsub:
        await pubsub.subscribe("vpbx:config:acme")
        await pubsub.get_message(timeout=1)  # the subscribe confirmation
        await api.client.post("/v1/numbers", json={"city": "msk"}, headers=admin)
        provisioned = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
        await api.client.patch("/v1/numbers/acme-74950000001", json={"label": "tv"}, headers=admin)
        relabelled = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5)
    assert provisioned is not None
    assert provisioned["data"] == b"acme"
    assert relabelled is not None


async def test_an_entry_route_in_use_cannot_be_deleted(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    sales = await add_group(api, "acme")
    unused = await add_group(api, "acme", "support")
    await add_pool(api, "+74950000001")
    await api.client.post(
        "/v1/numbers",
        json={"city": "msk", "entry": {"type": "group", "group_id": str(sales)}},
        headers=admin,
    )
    async with api.context.database.session() as session:
        with pytest.raises(Conflict) as refused:
            await refuse_if_referenced(session, "acme", sales, "group", numbers=api.context.numbers)
        assert "+74950000001" in refused.value.message
        await refuse_if_referenced(session, "acme", unused, "group", numbers=api.context.numbers)
        # Without the store the old behaviour holds: only database referrers count.
        await refuse_if_referenced(session, "acme", sales, "group")


async def _acme_number(api: ApiHarness) -> tuple[dict[str, str], str]:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    await add_pool(api, "+74950000001")
    created = await api.client.post("/v1/numbers", json={"city": "msk"}, headers=admin)
    assert created.status_code == 201, created.text
    return admin, created.json()["id"]


async def _node_greeting(api: ApiHarness) -> Any:
    response = await api.client.get("/internal/v1/node-config/acme/msk", headers=api.node)
    assert response.status_code == 200, response.text
    return response.json()["numbers"][0]["greeting"]


async def test_a_spoken_greeting_is_rendered_stored_and_compiled(api: ApiHarness) -> None:
    admin, number_id = await _acme_number(api)
    assert await _node_greeting(api) is None
    before = stored_numbers(api)[number_id].metadata.resource_version
    changed = await api.client.patch(
        f"/v1/numbers/{number_id}",
        json={"greeting": {"kind": "tts", "text": "Welcome to Acme", "language": "en-US"}},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    greeting = changed.json()["greeting"]
    assert (greeting["kind"], greeting["text"], greeting["language"]) == (
        "tts",
        "Welcome to Acme",
        "en-US",
    )
    # Kept in the database: the Number resource is not rewritten for a greeting.
    assert stored_numbers(api)[number_id].metadata.resource_version == before
    read = await api.client.get(f"/v1/numbers/{number_id}", headers=admin)
    assert read.json()["greeting"] == greeting
    listed = await api.client.get("/v1/numbers", headers=admin)
    assert listed.json()["items"][0]["greeting"] == greeting

    compiled = await _node_greeting(api)
    assert compiled == {"kind": "audio", "prompt_id": greeting["prompt_id"]}
    audio = await api.client.get(
        f"/internal/v1/prompts/acme/{greeting['prompt_id']}", headers=api.node
    )
    assert audio.status_code == 200
    assert audio.content.startswith(b"RIFF")
    # The tenant's spoken prompts say which language the platform speaks to its callers.
    response = await api.client.get("/internal/v1/node-config/acme/msk", headers=api.node)
    assert response.json()["language"] == "en-US"


async def test_a_tone_greeting_with_other_changes_and_its_removal(api: ApiHarness) -> None:
    admin, number_id = await _acme_number(api)
    changed = await api.client.patch(
        f"/v1/numbers/{number_id}",
        json={"greeting": {"kind": "tone", "frequency_hz": 600}, "label": "radio"},
        headers=admin,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["label"] == "radio"
    assert changed.json()["greeting"] == {"kind": "tone", "frequency_hz": 600, "duration_ms": 500}
    assert await _node_greeting(api) == {"kind": "tone", "frequency_hz": 600, "duration_ms": 500}
    # Leaving the greeting out keeps it; null removes it.
    kept = await api.client.patch(f"/v1/numbers/{number_id}", json={"channels": 3}, headers=admin)
    assert kept.json()["greeting"] is not None
    removed = await api.client.patch(
        f"/v1/numbers/{number_id}", json={"greeting": None}, headers=admin
    )
    assert removed.json()["greeting"] is None
    assert await _node_greeting(api) is None


async def test_a_spoken_greeting_outlives_menu_changes_and_goes_with_the_number(
    api: ApiHarness,
) -> None:
    admin, number_id = await _acme_number(api)
    changed = await api.client.patch(
        f"/v1/numbers/{number_id}",
        json={"greeting": {"kind": "tts", "text": "Здравствуйте"}},
        headers=admin,
    )
    prompt_id = changed.json()["greeting"]["prompt_id"]
    # Saving an IVR menu prunes the prompts nothing plays: the greeting's is kept.
    menu = await api.client.post(
        "/v1/ivr-menus", json={"name": "main", "prompt": {"kind": "tone"}}, headers=admin
    )
    assert menu.status_code == 201, menu.text
    audio = await api.client.get(f"/internal/v1/prompts/acme/{prompt_id}", headers=api.node)
    assert audio.status_code == 200
    released = await api.client.delete(f"/v1/numbers/{number_id}", headers=admin)
    assert released.status_code == 204
    _, again = await _reprovision(api, admin)
    read = await api.client.get(f"/v1/numbers/{again}", headers=admin)
    assert read.json()["greeting"] is None


async def _reprovision(api: ApiHarness, admin: dict[str, str]) -> tuple[dict[str, str], str]:
    created = await api.client.post("/v1/numbers", json={"city": "msk"}, headers=admin)
    assert created.status_code == 201, created.text
    return admin, created.json()["id"]


@pytest.mark.parametrize(
    ("greeting", "field"),
    [
        ({"kind": "tts", "text": "  "}, "body.greeting.tts.text"),
        ({"kind": "tts", "text": "hi", "language": "xx-XX"}, "body.greeting.language"),
        ({"kind": "tone", "frequency_hz": 5}, "body.greeting.tone.frequency_hz"),
        ({"kind": "audio", "prompt_id": str(uuid.uuid4())}, "body.greeting.prompt_id"),
        ({"kind": "video"}, "body.greeting"),
    ],
)
async def test_invalid_greetings_are_named(
    api: ApiHarness, greeting: dict[str, Any], field: str
) -> None:
    admin, number_id = await _acme_number(api)
    response = await api.client.patch(
        f"/v1/numbers/{number_id}", json={"greeting": greeting}, headers=admin
    )
    assert response.status_code in (404, 422), response.text
    assert any(f.startswith(field) for f in fields(response)), response.json()
    assert await _node_greeting(api) is None
