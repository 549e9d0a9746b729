"""/internal/v1/node-config and local seeding: what a media node gets from the control API."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as redis
from asgi_lifespan import LifespanManager
from sqlalchemy import func, select
from tests.services.control_api import ApiHarness, bearer

from vpbx_common.manifests import Number, load_platform_file, parse_manifest
from vpbx_common.nodeconfig import (
    AudioPrompt,
    GroupTarget,
    IvrTarget,
    NodeConfig,
    UnroutedTarget,
    UserTarget,
    config_channel,
)
from vpbx_common.nodeconfig import describe as routes_to
from vpbx_common.nodeconfig.steps import IvrStep
from vpbx_common.routing import RoutingTable
from vpbx_common.sipauth import DigestAlgorithm, ha1
from vpbx_control.app import create_app
from vpbx_control.auth.passwords import Passwords
from vpbx_control.auth.principal import Role
from vpbx_control.db.migrate import upgrade
from vpbx_control.db.session import Database
from vpbx_control.groups.models import GroupRow
from vpbx_control.nodeconfig.cache import NodeConfigCache
from vpbx_control.nodeconfig.publisher import ConfigPublisher
from vpbx_control.numbers.local import LocalNumberStore
from vpbx_control.numbers.models import PoolNumberRow
from vpbx_control.seed import seed_platform
from vpbx_control.users.models import DeviceRow, UserRow

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"


def number(name: str, e164: str, entry: str, tenant: str = "acme", city: str = "msk") -> Number:
    manifest = parse_manifest(
        {
            "apiVersion": "vpbx.io/v1alpha1",
            "kind": "Number",
            "metadata": {"name": name},
            "spec": {"number": e164, "tenant": tenant, "city": city, "entry": entry},
        }
    )
    assert isinstance(manifest, Number)
    return manifest


async def create(api: ApiHarness, path: str, body: dict[str, Any], headers: dict[str, str]) -> Any:
    response = await api.client.post(path, json=body, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()


async def node_config(api: ApiHarness, tenant: str = "acme", city: str = "msk") -> Any:
    response = await api.client.get(f"/internal/v1/node-config/{tenant}/{city}", headers=api.node)
    assert response.status_code == 200, response.text
    return response


async def test_the_tenants_pbx_compiled_for_its_node(api: ApiHarness) -> None:
    await api.add_tenant("acme", cities=("msk", "ekb"))
    await api.add_tenant("globex")
    admin = await api.as_role("acme")
    anna = await create(
        api,
        "/v1/users",
        {
            "email": "anna@acme.example",
            "name": "Anna",
            "extension": "101",
            "city": "msk",
            "rank": 70,
            "skills": ["english"],
            "mobile": "+79161234567",
        },
        admin,
    )
    boris = await create(
        api,
        "/v1/users",
        {"email": "boris@acme.example", "name": "Boris", "extension": "201", "city": "ekb"},
        admin,
    )
    desk = await create(api, f"/v1/users/{anna['id']}/devices", {"name": "desk"}, admin)
    mobile = await create(
        api, f"/v1/users/{anna['id']}/devices", {"name": "mobile", "username": "anna-m"}, admin
    )
    sales = await create(
        api,
        "/v1/groups",
        {
            "name": "sales",
            "strategy": "sequential",
            "ring_timeout_s": 20,
            "members": [{"user_id": boris["id"], "weight": 3}, {"user_id": anna["id"]}],
            "overflow": {"type": "user", "user_id": anna["id"]},
        },
        admin,
    )
    await create(
        api,
        "/v1/schedules",
        {
            "name": "office",
            "time_zone": "Europe/Moscow",
            "weekly": [{"day": "mon", "start": "09:00", "end": "18:00"}],
        },
        admin,
    )
    menu = await create(
        api,
        "/v1/ivr-menus",
        {
            "name": "main",
            "prompt": {"kind": "tts", "text": "Press 1 for sales."},
            "options": {"1": {"type": "group", "group_id": sales["id"]}},
            "timeout_target": {"type": "user", "user_id": boris["id"]},
        },
        admin,
    )
    plan = await create(
        api,
        "/v1/route-plans",
        {"name": "daytime", "steps": [{"type": "ivr", "ivr_menu_id": menu["id"]}]},
        admin,
    )
    globex_admin = await api.as_role("globex")
    await create(
        api,
        "/v1/users",
        {"email": "hank@globex.example", "name": "Hank", "extension": "777"},
        globex_admin,
    )
    store = api.context.numbers
    await store.create_number(number("acme-main", "+74950000001", f"group:{sales['id']}"))
    await store.create_number(number("acme-anna", "+74950000002", f"user:{anna['id']}"))
    await store.create_number(number("acme-legacy", "+74950000003", "101"))
    await store.create_number(number("acme-new", "+74950000004", "unrouted"))
    await store.create_number(number("acme-gone", "+74950000005", f"group:{uuid.uuid4()}"))
    await store.create_number(number("acme-ivr", "+74950000006", f"ivr:{menu['id']}"))
    await store.create_number(number("acme-plan", "+74950000007", f"route-plan:{plan['id']}"))
    await store.create_number(number("globex-main", "+74950000009", "777", tenant="globex"))

    response = await node_config(api)
    config = NodeConfig.model_validate_json(response.content)

    assert response.headers["ETag"] == f'"{config.version}"'
    assert config.version.startswith("sha256:")
    assert (config.tenant, config.city, config.sip_domain) == ("acme", "msk", "acme.vpbx.test")
    # Only people with an extension: the admin who made all this is no phone user.
    assert [(u.extension, u.name, u.city) for u in config.users] == [
        ("101", "Anna", "msk"),
        ("201", "Boris", "ekb"),
    ]
    anna_entry = config.users[0]
    assert (anna_entry.rank, anna_entry.skills, anna_entry.mobile) == (
        70,
        ["english"],
        "+79161234567",
    )
    assert (anna_entry.role, anna_entry.presence, anna_entry.id) == (
        "agent",
        "available",
        anna["id"],
    )
    assert anna_entry.ha1_md5 is None  # API users authenticate with their devices
    # Both of Anna's devices ring 101, each with its own credentials.
    assert [(d.username, d.extension, d.name) for d in config.devices] == [
        ("101", "101", "desk"),
        ("anna-m", "101", "mobile"),
    ]
    realm = "acme.vpbx.test"
    assert config.devices[0].ha1_md5 == ha1("101", realm, desk["password"], DigestAlgorithm.MD5)
    assert config.devices[1].ha1_sha256 == ha1(
        "anna-m", realm, mobile["password"], DigestAlgorithm.SHA256
    )
    assert config.extension_for("anna-m") == "101"
    assert config.extension_for("201") is None  # Boris has no device yet
    [group] = config.groups
    assert (group.name, group.strategy, group.ring_timeout_s) == ("sales", "sequential", 20)
    assert group.members == ["201", "101"]  # the order the admin gave
    assert group.weights == {"201": 3, "101": 1}
    assert group.overflow is not None
    assert group.overflow == UserTarget(extension="101", user_id=anna["id"])
    [schedule] = config.schedules
    assert (schedule.name, schedule.time_zone) == ("office", "Europe/Moscow")
    assert [(h.day, h.start, h.end) for h in schedule.weekly] == [("mon", "09:00", "18:00")]
    # The tenant's numbers only, with references resolved to what the node routes on.
    assert [(n.number, routes_to(n.target)) for n in config.numbers] == [
        ("+74950000001", "group:sales"),
        ("+74950000002", "user:101"),
        ("+74950000003", "user:101"),
        ("+74950000004", "unrouted"),
        ("+74950000005", "unrouted"),  # its group was deleted
        ("+74950000006", "ivr:main"),
        ("+74950000007", "route-plan:daytime"),
    ]
    gone = config.numbers[4].target
    assert isinstance(gone, UnroutedTarget)
    assert gone.missing is not None
    assert gone.missing.startswith("group:")
    [ivr] = config.ivr_menus
    assert (ivr.id, ivr.name) == (menu["id"], "main")
    # The text was rendered to speech when saved: the node plays it like an upload.
    assert ivr.prompt == AudioPrompt(prompt_id=menu["prompt"]["prompt_id"])
    assert {digit: routes_to(t) for digit, t in ivr.options.items()} == {"1": "group:sales"}
    assert ivr.timeout_target is not None
    assert routes_to(ivr.timeout_target) == "user:201"
    [daytime] = config.route_plans
    assert daytime.id == plan["id"]
    # Steps name what the node acts on, and keep the id of what they refer to.
    [first, *_] = daytime.steps
    assert isinstance(first, IvrStep)
    assert first.target == IvrTarget(name="main", ivr_menu_id=menu["id"])
    assert config.numbers[0].target == GroupTarget(name="sales", group_id=sales["id"])
    assert "hank" not in response.text.lower()  # nothing of globex


async def test_etag_304_and_a_change_invalidates(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    group = await create(api, "/v1/groups", {"name": "sales"}, admin)
    await api.context.numbers.create_number(
        number("acme-main", "+74950000001", f"group:{group['id']}")
    )
    first = await node_config(api)
    etag = first.headers["ETag"]
    assert (await node_config(api)).headers["ETag"] == etag  # same content, same version

    unchanged = await api.client.get(
        "/internal/v1/node-config/acme/msk", headers={**api.node, "If-None-Match": etag}
    )
    assert unchanged.status_code == 304
    assert unchanged.headers["ETag"] == etag
    assert unchanged.content == b""

    assert api.context.redis is not None
    listener = api.context.redis.pubsub()
    await listener.subscribe(config_channel("acme"))
    try:
        renamed = await api.client.patch(
            f"/v1/groups/{group['id']}", json={"name": "sales-team"}, headers=admin
        )
        assert renamed.status_code == 200, renamed.text
        message = None
        async with asyncio.timeout(5):
            while message is None:
                message = await listener.get_message(ignore_subscribe_messages=True, timeout=1)
        assert message["data"] == b"acme"
    finally:
        await listener.aclose()

    changed = await api.client.get(
        "/internal/v1/node-config/acme/msk", headers={**api.node, "If-None-Match": etag}
    )
    assert changed.status_code == 200
    assert changed.headers["ETag"] != etag
    # The number refers to the group by id: renaming the group does not break it.
    assert [n["target"]["name"] for n in changed.json()["numbers"]] == ["sales-team"]


async def test_a_change_on_another_replica_reaches_the_nodes_polling_this_one(
    api: ApiHarness,
) -> None:
    """Compiled configs are reused between polls, but never past a change made anywhere."""
    await api.add_tenant("acme")
    admin = await api.as_role("acme")
    group = await create(api, "/v1/groups", {"name": "sales"}, admin)
    await api.context.numbers.create_number(
        number("acme-main", "+74950000001", f"group:{group['id']}")
    )
    url = "/internal/v1/node-config/acme/msk"
    before = await node_config(api)
    assert (await node_config(api)).headers["ETag"] == before.headers["ETag"]

    other = create_app(api.settings, migrate=False)
    async with (
        LifespanManager(other) as running,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=running.app), base_url="http://replica-2"
        ) as replica,
    ):
        renamed = await replica.patch(
            f"/v1/groups/{group['id']}", json={"name": "support"}, headers=admin
        )
        assert renamed.status_code == 200, renamed.text

    after = await api.client.get(url, headers={**api.node, "If-None-Match": before.headers["ETag"]})
    assert after.status_code == 200, after.text
    assert [n["target"]["name"] for n in after.json()["numbers"]] == ["support"]


async def test_a_compiled_config_is_reused_until_the_revision_moves_or_it_ages(
    flushed_redis: str,
) -> None:
    client = redis.Redis.from_url(flushed_redis)
    publisher = ConfigPublisher(client)
    now = [1000.0]
    cache = NodeConfigCache(publisher, max_age_s=30, clock=lambda: now[0])
    versions = iter(range(1, 100))

    async def compile_config() -> NodeConfig:
        return NodeConfig(
            tenant="acme",
            display_name="Acme",
            sip_domain="acme.vpbx.local",
            city="msk",
            suspended=False,
            users=[],
            groups=[],
            numbers=[],
            version=f"v{next(versions)}",
        )

    try:
        first = await cache.get("acme", "msk", compile_config)
        assert (await cache.get("acme", "msk", compile_config)).etag == first.etag
        assert (await cache.get("acme", "ekb", compile_config)).etag != first.etag

        await publisher.changed("acme")  # as any replica does after a commit
        moved = await cache.get("acme", "msk", compile_config)
        assert moved.etag != first.etag
        assert (await cache.get("acme", "msk", compile_config)).etag == moved.etag

        now[0] += 31  # e.g. a Number resource edited with kubectl: no revision bump
        aged = await cache.get("acme", "msk", compile_config)
        assert aged.etag != moved.etag
        assert (cache.compiles, cache.hits) == (4, 2)
    finally:
        await client.aclose()


async def test_only_media_nodes_read_node_configs(api: ApiHarness) -> None:
    await api.add_tenant("acme")
    url = "/internal/v1/node-config/acme/msk"
    for headers in (
        await api.as_role("acme", Role.TENANT_ADMIN),
        await api.api_key("acme", Role.TENANT_ADMIN),
        api.platform,
    ):
        refused = await api.client.get(url, headers=headers)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error_id"] == "forbidden"
    assert (await api.client.get(url)).status_code == 401
    assert (await api.client.get(url, headers=bearer("not-the-token"))).status_code == 401

    for missing in ("/internal/v1/node-config/initech/msk", "/internal/v1/node-config/acme/nsk"):
        response = await api.client.get(missing, headers=api.node)
        assert response.status_code == 404
        assert response.json()["error_id"] == "node-config-not-found"
    bad = await api.client.get("/internal/v1/node-config/acme/MSK!", headers=api.node)
    assert bad.status_code == 422


async def test_demo_file_seeds_once_and_keeps_api_changes(api: ApiHarness) -> None:
    platform = load_platform_file(DEMO)
    context = api.context

    async def seed() -> list[str]:
        return await seed_platform(
            platform, context.database, context.numbers, context.passwords, context.publisher
        )

    assert await seed() == ["acme", "globex"]

    # The demo's admins log in; the demo's phones' credentials are the devices'.
    admin = await api.login("admin@acme.vpbx.local", "acme-admin-secret")
    me = await api.client.get("/v1/auth/me", headers=admin)
    assert (me.json()["tenant_id"], me.json()["role"]) == ("acme", "tenant-admin")
    await api.login("admin@globex.vpbx.local", "globex-admin-secret")
    config = NodeConfig.model_validate_json((await node_config(api, "acme", "ekb")).content)
    assert [d.username for d in config.devices] == ["101", "102", "201"]
    credentials = config.credentials("201")
    assert credentials is not None
    assert credentials.ha1_md5 == ha1(
        "201", "acme.vpbx.local", "acme-201-secret", DigestAlgorithm.MD5
    )
    assert config.groups[0].members == ["101", "102", "201"]
    assert {(n.number, routes_to(n.target)) for n in config.numbers} == {
        ("+74950000001", "group:sales"),
        ("+73430000001", "group:sales"),
        ("+74950000002", "group:sales"),
    }
    stored = {n.spec.number: n.spec.entry for n in await context.numbers.list_numbers("acme")}
    assert stored["+74950000001"].startswith("group:")  # a reference, as the API writes them
    globex = await context.numbers.list_numbers("globex")
    assert [n.spec.entry.split(":")[0] for n in globex] == ["user"]

    # An admin renames the group; starting again must neither reset nor duplicate.
    groups = await api.client.get("/v1/groups", headers=admin)
    [sales] = groups.json()["items"]
    patched = await api.client.patch(
        f"/v1/groups/{sales['id']}", json={"name": "sales-team"}, headers=admin
    )
    assert patched.status_code == 200, patched.text

    assert await seed() == []

    async with context.database.session() as session:
        users = await session.scalar(select(func.count()).select_from(UserRow))
        devices = await session.scalar(select(func.count()).select_from(DeviceRow))
        names = (await session.execute(select(GroupRow.name))).scalars().all()
        pool = await session.scalar(select(func.count()).select_from(PoolNumberRow))
    assert (users, devices, list(names), pool) == (6, 4, ["sales-team"], 4)
    assert len(await context.numbers.list_numbers()) == 4
    again = NodeConfig.model_validate_json((await node_config(api, "acme", "msk")).content)
    assert {routes_to(n.target) for n in again.numbers} == {"group:sales-team"}


async def test_migrations_and_seeding_on_sqlite(tmp_path: Path, flushed_redis: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'control.db'}"
    await upgrade(url)
    database = Database(url)
    client = redis.Redis.from_url(flushed_redis)
    store = LocalNumberStore(tmp_path / "numbers.yaml", client)
    publisher = ConfigPublisher(client)
    platform = load_platform_file(DEMO)
    try:
        passwords = Passwords(time_cost=1, memory_cost=1024)
        assert await seed_platform(platform, database, store, passwords, publisher) == [
            "acme",
            "globex",
        ]
        await upgrade(url)  # a second start: nothing to migrate
        assert await seed_platform(platform, database, store, passwords, publisher) == []
        async with database.session() as session:
            admins = (
                await session.execute(select(UserRow.email).where(UserRow.extension.is_(None)))
            ).scalars()
            assert sorted(admins) == ["admin@acme.vpbx.local", "admin@globex.vpbx.local"]
        assert publisher.published == 2  # one invalidation per seeded tenant
    finally:
        await database.dispose()
        await client.aclose()
    assert len(await store.list_numbers()) == 4


async def test_the_edge_learns_each_phones_home_city_from_every_change(api: ApiHarness) -> None:
    """REGISTERs go to the node of the user's city: the API keeps username -> city in Redis."""
    await api.add_tenant("acme", cities=("msk", "ekb"))
    admin = await api.as_role("acme")
    assert api.context.redis is not None
    table = RoutingTable(api.context.redis)
    olga = await create(
        api,
        "/v1/users",
        {"email": "olga@acme.example", "name": "Olga", "extension": "201", "city": "ekb"},
        admin,
    )
    await create(
        api, f"/v1/users/{olga['id']}/devices", {"name": "desk", "username": "olga"}, admin
    )
    assert await table.home_city("acme", "201") == "ekb"
    assert await table.home_city("acme", "olga") == "ekb"
    assert await table.home_city("globex", "olga") is None

    moved = await api.client.patch(f"/v1/users/{olga['id']}", json={"city": "msk"}, headers=admin)
    assert moved.status_code == 200, moved.text
    assert await table.home_city("acme", "olga") == "msk"

    # Redis lost its data: the next periodic pass (also run at start) writes it again.
    await api.context.redis.flushdb()
    assert api.context.homes is not None
    assert await api.context.homes.rewrite_all() == 1
    assert await table.home_city("acme", "201") == "msk"

    gone = await api.client.delete(f"/v1/users/{olga['id']}", headers=admin)
    assert gone.status_code == 204, gone.text
    assert await table.home_city("acme", "201") is None
    assert await table.home_city("acme", "olga") is None


async def test_concurrent_moves_on_two_replicas_leave_the_last_city_in_the_directory(
    api: ApiHarness,
) -> None:
    await api.add_tenant("acme", cities=("msk", "ekb", "nsk"))
    admin = await api.as_role("acme")
    assert api.context.redis is not None
    table = RoutingTable(api.context.redis)
    olga = await create(
        api,
        "/v1/users",
        {"email": "olga@acme.example", "name": "Olga", "extension": "201", "city": "ekb"},
        admin,
    )
    other = create_app(api.settings, migrate=False)
    async with (
        LifespanManager(other) as running,
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=running.app), base_url="http://replica-2"
        ) as replica,
    ):
        clients = [api.client, replica]

        async def move(index: int) -> int:
            city = ("msk", "ekb", "nsk")[index % 3]
            response = await clients[index % 2].patch(
                f"/v1/users/{olga['id']}", json={"city": city}, headers=admin
            )
            return response.status_code

        for _ in range(3):
            statuses = await asyncio.gather(*(move(index) for index in range(12)))
            assert set(statuses) == {200}
            final = (await api.client.get(f"/v1/users/{olga['id']}", headers=admin)).json()
            assert await table.home_city("acme", "201") == final["city"]
