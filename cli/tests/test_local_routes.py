"""`vpbx up` plays the operator for numbers: the edge routes follow the local number store."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import redis.asyncio as redis

from vpbx_cli.local import LocalLayout, RouteSync, plan_platform
from vpbx_common.manifests import Number, parse_manifest
from vpbx_common.routing import NumberRoute, RoutingTable
from vpbx_control.numbers.local import LocalNumberStore

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
T = TypeVar("T")


def number(name: str, e164: str) -> Number:
    manifest = parse_manifest(
        {
            "apiVersion": "vpbx.io/v1alpha1",
            "kind": "Number",
            "metadata": {"name": name},
            "spec": {"number": e164, "tenant": "acme", "city": "ekb", "entry": "unrouted"},
        }
    )
    assert isinstance(manifest, Number)
    return manifest


def test_routes_follow_numbers_the_api_provisions_and_releases(
    tmp_path: Path, flushed_redis: str
) -> None:
    layout = LocalLayout(var_dir=tmp_path / "var", node_port_base=5170)
    local = plan_platform(DEMO, layout)
    local.redis_url = flushed_redis

    def with_redis(action: Callable[[redis.Redis], Awaitable[T]]) -> T:
        """Run one async action on a fresh connection (the launcher's loop is synchronous)."""

        async def run() -> T:
            client = redis.Redis.from_url(flushed_redis)
            try:
                return await action(client)
            finally:
                await client.aclose()

        return asyncio.run(run())

    def store(client: redis.Redis) -> LocalNumberStore:
        return LocalNumberStore(layout.numbers_file, client)

    def routed() -> set[str]:
        return with_redis(lambda client: RoutingTable(client).numbers())

    def route(e164: str) -> NumberRoute | None:
        return with_redis(lambda client: RoutingTable(client).lookup_number(e164))

    layout.numbers_file.parent.mkdir(parents=True)
    with_redis(lambda c: store(c).create_number(number("acme-ekb-sales", "+73430000002")))
    routes = RouteSync(local)
    try:
        routes.wait(0)  # start: subscribe, then write what the store holds
        assert routed() == {"+73430000002"}
        found = route("+73430000002")
        assert found is not None
        assert (found.tenant, found.city, found.address) == ("acme", "ekb", "127.0.0.1:5171")

        with_redis(lambda c: store(c).create_number(number("acme-ekb-support", "+73430000003")))
        routes.wait(2)
        assert routed() == {"+73430000002", "+73430000003"}

        with_redis(lambda c: store(c).delete_number("acme-ekb-sales"))
        routes.wait(2)
        assert routed() == {"+73430000003"}
        assert route("+73430000002") is None
        # The domains of the platform file's tenants stay routed throughout.
        domains = with_redis(lambda client: RoutingTable(client).domains())
        assert domains == {"acme.vpbx.local", "globex.vpbx.local"}
    finally:
        routes.close()
