"""The edge routing table against a real redis-server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import redis.asyncio

from vpbx_common.routing import (
    DomainRoute,
    NumberRoute,
    RejectedNumber,
    RejectionReason,
    RoutingSnapshot,
    RoutingTable,
    RoutingTableError,
)


def as_text(key: bytes | str) -> str:
    return key.decode() if isinstance(key, bytes) else key


def number_route(
    e164: str, tenant: str = "acme", city: str = "msk", **extra: object
) -> NumberRoute:
    return NumberRoute.model_validate(
        {
            "number": e164,
            "tenant": tenant,
            "city": city,
            "node": f"vpbx-node-{tenant}-{city}",
            "address": "127.0.0.1:5071",
            "entry": "sales",
            **extra,
        }
    )


def domain_route(domain: str, tenant: str, suspended: bool = False) -> DomainRoute:
    return DomainRoute(
        domain=domain,
        tenant=tenant,
        suspended=suspended,
        nodes={"msk": "127.0.0.1:5071", "ekb": "127.0.0.1:5072"},
        extensions={"101": "msk", "201": "ekb"},
        default_city="msk",
    )


def snapshot(*numbers: NumberRoute, domains: tuple[DomainRoute, ...] = ()) -> RoutingSnapshot:
    return RoutingSnapshot(
        numbers={route.number: route for route in numbers},
        domains={route.domain: route for route in domains},
    )


@pytest.fixture
async def client(flushed_redis: str) -> AsyncIterator[redis.asyncio.Redis]:
    connection = redis.asyncio.Redis.from_url(flushed_redis)
    yield connection
    await connection.aclose()


@pytest.fixture
def table(client: redis.asyncio.Redis) -> RoutingTable:
    return RoutingTable(client)


async def test_replace_then_lookup(table: RoutingTable) -> None:
    labelled = number_route("+74950000002", label="yandex-direct", channels=4)
    await table.replace(
        snapshot(
            number_route("+74950000001"),
            labelled,
            domains=(domain_route("acme.vpbx.local", "acme"),),
        )
    )
    assert await table.lookup_number("+74950000002") == labelled
    found = await table.lookup_number("+74950000001")
    assert found is not None
    assert (found.tenant, found.node, found.address) == (
        "acme",
        "vpbx-node-acme-msk",
        "127.0.0.1:5071",
    )
    domain = await table.lookup_domain("acme.vpbx.local")
    assert domain == domain_route("acme.vpbx.local", "acme")
    assert domain is not None
    assert domain.address_for("201") == "127.0.0.1:5072"


async def test_unknown_entries_are_none(table: RoutingTable) -> None:
    assert await table.lookup_number("+74950000001") is None
    await table.replace(snapshot(number_route("+74950000001")))
    assert await table.lookup_number("+74950000003") is None
    assert await table.lookup_domain("initech.vpbx.local") is None


async def test_domain_lookup_ignores_case_and_trailing_dot(table: RoutingTable) -> None:
    await table.replace(snapshot(domains=(domain_route("Acme.VPBX.local", "acme"),)))
    for spelling in ("acme.vpbx.local", "ACME.vpbx.LOCAL", "acme.vpbx.local."):
        found = await table.lookup_domain(spelling)
        assert found is not None
        assert found.tenant == "acme"
    assert await table.domains() == {"acme.vpbx.local"}


async def test_replace_removes_stale_entries_and_updates_changed_ones(
    table: RoutingTable, client: redis.asyncio.Redis
) -> None:
    await table.replace(
        snapshot(
            number_route("+74950000001"),
            number_route("+74950000002"),
            domains=(
                domain_route("acme.vpbx.local", "acme"),
                domain_route("globex.vpbx.local", "globex"),
            ),
        )
    )
    moved = number_route("+74950000001", city="ekb")
    await table.replace(
        snapshot(
            moved,
            number_route("+74950000009", tenant="globex"),
            domains=(domain_route("globex.vpbx.local", "globex", suspended=True),),
        )
    )
    assert await table.lookup_number("+74950000001") == moved
    assert await table.lookup_number("+74950000002") is None
    assert await table.lookup_number("+74950000009") is not None
    assert await table.lookup_domain("acme.vpbx.local") is None
    globex = await table.lookup_domain("globex.vpbx.local")
    assert globex is not None
    assert globex.suspended is True
    assert await table.numbers() == {"+74950000001", "+74950000009"}
    keys = {as_text(key) for key in await client.keys("vpbx:route:*")}
    assert keys == {
        "vpbx:route:number:+74950000001",
        "vpbx:route:number:+74950000009",
        "vpbx:route:domain:globex.vpbx.local",
        "vpbx:route:index:numbers",
        "vpbx:route:index:domains",
    }


async def test_empty_snapshot_empties_the_table(
    table: RoutingTable, client: redis.asyncio.Redis
) -> None:
    await table.replace(
        snapshot(number_route("+74950000001"), domains=(domain_route("acme.vpbx.local", "acme"),))
    )
    await table.replace(RoutingSnapshot())
    assert await table.lookup_number("+74950000001") is None
    assert await table.lookup_domain("acme.vpbx.local") is None
    assert await client.keys("vpbx:route:*") == []


async def test_replace_after_flushall_restores_routes(
    table: RoutingTable, client: redis.asyncio.Redis
) -> None:
    routes = snapshot(
        number_route("+74950000001"), domains=(domain_route("acme.vpbx.local", "acme"),)
    )
    await table.replace(routes)
    await client.flushall()
    assert await table.lookup_number("+74950000001") is None
    await table.replace(routes)
    assert await table.lookup_number("+74950000001") == routes.numbers["+74950000001"]
    assert await table.lookup_domain("acme.vpbx.local") == routes.domains["acme.vpbx.local"]


async def test_rejected_numbers_are_not_written(
    table: RoutingTable, client: redis.asyncio.Redis
) -> None:
    routes = RoutingSnapshot(
        rejected=[
            RejectedNumber(
                name="lost",
                number="+74950000005",
                reason=RejectionReason.TENANT_NOT_FOUND,
                message="tenant 'initech' does not exist",
            )
        ]
    )
    await table.replace(routes)
    assert await table.lookup_number("+74950000005") is None
    assert await client.keys("*") == []


async def test_prefixes_keep_tables_apart(client: redis.asyncio.Redis) -> None:
    staging = RoutingTable(client, prefix="staging:route")
    production = RoutingTable(client)
    await staging.replace(snapshot(number_route("+74950000001")))
    await production.replace(snapshot(number_route("+74950000002")))
    await staging.replace(snapshot(number_route("+74950000003")))
    assert await production.lookup_number("+74950000002") is not None
    assert await production.lookup_number("+74950000001") is None
    assert await staging.lookup_number("+74950000003") is not None
    assert await staging.lookup_number("+74950000001") is None


async def test_works_with_decoded_responses(flushed_redis: str) -> None:
    connection = redis.asyncio.Redis.from_url(flushed_redis, decode_responses=True)
    try:
        table = RoutingTable(connection)
        await table.replace(snapshot(number_route("+74950000001")))
        await table.replace(snapshot(number_route("+74950000002")))
        assert await table.lookup_number("+74950000001") is None
        assert await table.lookup_number("+74950000002") is not None
    finally:
        await connection.aclose()


async def test_corrupt_entry_is_an_error_not_a_miss(
    table: RoutingTable, client: redis.asyncio.Redis
) -> None:
    await client.set("vpbx:route:number:+74950000001", b"{not json")
    with pytest.raises(RoutingTableError, match=r"\+74950000001"):
        await table.lookup_number("+74950000001")
    await client.set("vpbx:route:domain:acme.vpbx.local", b'{"domain": "acme.vpbx.local"}')
    with pytest.raises(RoutingTableError, match=r"acme\.vpbx\.local"):
        await table.lookup_domain("acme.vpbx.local")


def test_domain_route_needs_a_node_in_its_default_city() -> None:
    with pytest.raises(ValueError, match="default city 'nsk' has no node"):
        DomainRoute(
            domain="acme.vpbx.local",
            tenant="acme",
            nodes={"msk": "127.0.0.1:5071"},
            default_city="nsk",
        )


def test_routes_round_trip_through_json() -> None:
    routes = snapshot(
        number_route("+74950000001", label="2gis"),
        domains=(domain_route("acme.vpbx.local", "acme"),),
    )
    assert RoutingSnapshot.model_validate_json(routes.model_dump_json()) == routes


async def test_concurrent_replaces_leave_one_whole_snapshot(flushed_redis: str) -> None:
    first = snapshot(number_route("+74950000001"), number_route("+74950000002"))
    second = snapshot(number_route("+74950000003"), number_route("+74950000004"))
    connections = [redis.asyncio.Redis.from_url(flushed_redis) for _ in range(2)]
    try:
        tables = [RoutingTable(connection) for connection in connections]
        for _ in range(10):
            await asyncio.wait_for(
                asyncio.gather(tables[0].replace(first), tables[1].replace(second)), timeout=5
            )
            held = await tables[0].numbers()
            assert held in ({"+74950000001", "+74950000002"}, {"+74950000003", "+74950000004"})
            stored = {as_text(key) for key in await connections[0].keys("vpbx:route:number:*")}
            assert stored == {f"vpbx:route:number:{number}" for number in held}
    finally:
        for connection in connections:
            await connection.aclose()


async def test_the_home_directory_sends_a_phone_to_its_users_city(
    table: RoutingTable, client: redis.asyncio.Redis
) -> None:
    route = domain_route("acme.vpbx.local", "acme")
    async with client.pipeline(transaction=True) as pipe:
        table.replace_homes(pipe, "acme", {"301": "ekb", "olga-desk": "ekb", "101": "ekb"})
        await pipe.execute()
    olga = await table.home_city("acme", "olga-desk")
    assert olga == "ekb"
    assert route.address_for("olga-desk", olga) == "127.0.0.1:5072"
    # The directory (live, from the control API) wins over the platform file's users.
    assert route.address_for("101", await table.home_city("acme", "101")) == "127.0.0.1:5072"
    # Not in the directory: the platform file, then the tenant's first city.
    assert await table.home_city("acme", "201") is None
    assert route.address_for("201", None) == "127.0.0.1:5072"
    assert route.address_for("999", await table.home_city("acme", "999")) == "127.0.0.1:5071"
    # A city the tenant no longer serves falls back to the first city too.
    assert route.address_for("x", "nsk") == "127.0.0.1:5071"
    assert await table.home_city("globex", "olga-desk") is None

    async with client.pipeline(transaction=True) as pipe:
        table.replace_homes(pipe, "acme", {"301": "msk"})
        await pipe.execute()
    assert await table.home_city("acme", "olga-desk") is None
    assert await table.home_city("acme", "301") == "msk"


async def test_a_domain_and_its_users_home_come_in_one_lookup(
    table: RoutingTable, client: redis.asyncio.Redis
) -> None:
    acme = domain_route("acme.vpbx.local", "acme")
    await table.replace(snapshot(domains=(acme, domain_route("globex.vpbx.local", "globex"))))
    async with client.pipeline(transaction=True) as pipe:
        table.replace_homes(pipe, "acme", {"olga-desk": "ekb"})
        await pipe.execute()

    assert await table.lookup_domain_user("ACME.vpbx.local", "olga-desk") == (acme, "ekb")
    assert await table.lookup_domain_user("acme.vpbx.local", "101") == (acme, None)
    assert await table.lookup_domain_user("acme.vpbx.local", None) == (acme, None)
    # Another tenant's directory is never consulted.
    globex, home = await table.lookup_domain_user("globex.vpbx.local", "olga-desk")
    assert (globex is not None, home) == (True, None)
    assert await table.lookup_domain_user("initech.vpbx.local", "olga-desk") == (None, None)

    await client.set("vpbx:route:domain:broken.vpbx.local", "{not json")
    with pytest.raises(RoutingTableError):
        await table.lookup_domain_user("broken.vpbx.local", "101")


async def test_a_changed_domain_route_is_seen_at_the_next_lookup(
    table: RoutingTable, client: redis.asyncio.Redis
) -> None:
    await table.replace(snapshot(domains=(domain_route("acme.vpbx.local", "acme"),)))
    first, _ = await table.lookup_domain_user("acme.vpbx.local", "101")
    again, _ = await table.lookup_domain_user("acme.vpbx.local", "101")
    assert first == again
    assert first is not None
    assert not first.suspended

    suspended = domain_route("acme.vpbx.local", "acme", suspended=True)
    await table.replace(snapshot(domains=(suspended,)))
    assert await table.lookup_domain_user("acme.vpbx.local", "101") == (suspended, None)
    await table.replace(snapshot())
    assert await table.lookup_domain_user("acme.vpbx.local", "101") == (None, None)
    # Another edge (another table object) holding nothing gets the route in full too.
    await table.replace(snapshot(domains=(suspended,)))
    assert await RoutingTable(client).lookup_domain_user("acme.vpbx.local", "x") == (
        suspended,
        None,
    )


# --- carriers: where calls to numbers may come from ------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_a_number_is_called_from_platform_carriers_and_its_own_tenants_only(
    client: redis.asyncio.Redis,
) -> None:
    table = RoutingTable(client)
    routes = snapshot(number_route("+74950000001"), number_route("+74950000009", tenant="globex"))
    await table.replace(
        routes.model_copy(update={"carriers": ["198.51.100.0/24", "2001:db8::/32"]})
    )
    async with client.pipeline(transaction=True) as pipe:
        table.replace_tenant_carriers(pipe, "acme", ["203.0.113.7/32"])
        await pipe.execute()
    assert await table.platform_carriers() == ["198.51.100.0/24", "2001:db8::/32"]
    assert await table.tenant_carriers("acme") == ["203.0.113.7/32"]

    acme, globex = routes.numbers["+74950000001"], routes.numbers["+74950000009"]
    # A platform carrier calls any number; IPv6, and IPv4 as a dual-stack socket shows it.
    for source in ("198.51.100.20", "2001:db8::5", "::ffff:198.51.100.20"):
        assert await table.lookup_number_from("+74950000001", source) == (acme, True)
        assert await table.lookup_number_from("+74950000009", source) == (globex, True)
    # A tenant's own trunk calls that tenant's numbers only.
    assert await table.lookup_number_from("+74950000001", "203.0.113.7") == (acme, True)
    assert await table.lookup_number_from("+74950000009", "203.0.113.7") == (globex, False)
    # Anybody else calls nothing; an unknown number says whether the source is a carrier.
    assert await table.lookup_number_from("+74950000001", "192.0.2.1") == (acme, False)
    assert await table.lookup_number_from("+74950000002", "192.0.2.1") == (None, False)
    assert await table.lookup_number_from("+74950000002", "198.51.100.1") == (None, True)
    assert await table.lookup_number_from("+74950000001", "not-an-address") == (acme, False)

    # No own trunks left: the entry goes.
    async with client.pipeline(transaction=True) as pipe:
        table.replace_tenant_carriers(pipe, "acme", [])
        await pipe.execute()
    assert await client.exists(table.tenant_carriers_key("acme")) == 0
    assert await table.lookup_number_from("+74950000001", "203.0.113.7") == (acme, False)


async def test_platform_carriers_are_read_at_most_every_few_seconds(
    client: redis.asyncio.Redis,
) -> None:
    clock = Clock()
    writer = RoutingTable(client)
    edge = RoutingTable(client, carriers_ttl_s=5.0, clock=clock)
    await writer.replace(
        snapshot(number_route("+74950000001")).model_copy(update={"carriers": ["198.51.100.0/24"]})
    )
    assert (await edge.lookup_number_from("+74950000001", "198.51.100.1"))[1] is True
    # The carrier moves: the edge goes by its copy for up to carriers_ttl_s.
    await writer.replace(
        snapshot(number_route("+74950000001")).model_copy(update={"carriers": ["192.0.2.0/24"]})
    )
    clock.now += 4.9
    assert (await edge.lookup_number_from("+74950000001", "198.51.100.1"))[1] is True
    clock.now += 0.2
    assert (await edge.lookup_number_from("+74950000001", "198.51.100.1"))[1] is False
    assert (await edge.lookup_number_from("+74950000001", "192.0.2.9"))[1] is True
    # No platform carriers at all: the key is gone, and nobody is one.
    await writer.replace(snapshot(number_route("+74950000001")))
    assert await client.exists(writer.carriers_key) == 0
    clock.now += 10
    assert (await edge.lookup_number_from("+74950000001", "192.0.2.9"))[1] is False


async def test_a_carrier_lookup_is_one_round_trip(client: redis.asyncio.Redis) -> None:
    """The edge's per-call cost: one command to Redis, whoever the source is."""
    clock = Clock()
    table = RoutingTable(client, clock=clock)
    await table.replace(
        snapshot(number_route("+74950000001")).model_copy(update={"carriers": ["198.51.100.0/24"]})
    )
    await client.script_flush()
    # The first call loads the script into Redis (once per Redis, not per call).
    await table.lookup_number_from("+74950000001", "192.0.2.1")
    sent: list[tuple[object, ...]] = []
    original = client.execute_command

    async def counting(*args: object, **options: object) -> object:
        sent.append(args)
        return await original(*args, **options)

    client.execute_command = counting  # type: ignore[method-assign]
    try:
        for source in ("198.51.100.1", "198.51.100.1", "192.0.2.1"):
            clock.now += 10  # each time with the platform's copy stale, the worst case
            sent.clear()
            await table.lookup_number_from("+74950000001", source)
            assert len(sent) == 1, sent
        sent.clear()
        await table.lookup_number_from("+74950000001", "198.51.100.1")  # copy fresh
        assert [args[0] for args in sent] == ["GET"]
    finally:
        client.execute_command = original  # type: ignore[method-assign]


async def test_unreadable_carrier_networks_make_nobody_a_carrier(
    table: RoutingTable, client: redis.asyncio.Redis
) -> None:
    await table.replace(snapshot(number_route("+74950000001")))
    await client.set(table.carriers_key, b"{not json")
    await client.set(table.tenant_carriers_key("acme"), b'["203.0.113.0/24", "nonsense"]')
    assert (await table.lookup_number_from("+74950000001", "198.51.100.1"))[1] is False
    # A bad entry is skipped, the good ones still count.
    assert (await table.lookup_number_from("+74950000001", "203.0.113.4"))[1] is True
