"""Where carriers call from: the networks of trunks (vpbx_common.carriers)."""

from __future__ import annotations

import pytest

from vpbx_common.carriers import (
    CarrierNetworks,
    encode_networks,
    networks_of,
    platform_networks,
    trunk_networks,
)
from vpbx_common.manifests import Trunk, parse_manifest


def platform_trunk(name: str, uri: str, allowed: list[str] | None = None) -> Trunk:
    spec: dict[str, object] = {"uri": uri}
    if allowed is not None:
        spec["allowedAddresses"] = allowed
    manifest = parse_manifest(
        {
            "apiVersion": "config.vpbx.io/v1alpha1",
            "kind": "Trunk",
            "metadata": {"name": name},
            "spec": spec,
        }
    )
    assert isinstance(manifest, Trunk)
    return manifest


async def test_a_trunks_networks_are_its_cidrs_else_its_hosts_addresses() -> None:
    assert [str(n) for n in await trunk_networks("sip.example", ["198.51.100.7"])] == [
        "198.51.100.7/32"
    ]
    assert [str(n) for n in await trunk_networks("203.0.113.9", [])] == ["203.0.113.9/32"]
    assert [str(n) for n in await trunk_networks("2001:db8::1", [])] == ["2001:db8::1/128"]
    assert [str(n) for n in await trunk_networks("localhost", [])] in (
        ["127.0.0.1/32"],
        ["127.0.0.1/32", "::1/128"],
        ["::1/128", "127.0.0.1/32"],
    )


async def test_a_host_that_does_not_resolve_gives_no_network(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert await trunk_networks("no-such-carrier.invalid", []) == []
    assert "no-such-carrier.invalid does not resolve" in caplog.text


async def test_the_platforms_networks_merge_every_trunk_sorted_and_once() -> None:
    trunks = [
        platform_trunk("main", "sip:198.51.100.20:5060", ["198.51.100.0/24"]),
        platform_trunk("backup", "sip:203.0.113.5;transport=tcp"),
        platform_trunk("twin", "sip:198.51.100.21", ["198.51.100.0/24"]),
    ]
    assert await platform_networks(trunks) == ["198.51.100.0/24", "203.0.113.5/32"]
    assert await networks_of([("sip:192.0.2.1", []), ("http://bad", [])]) == ["192.0.2.1/32"]
    assert encode_networks(["203.0.113.5/32", "198.51.100.0/24", "203.0.113.5/32"]) == (
        '["198.51.100.0/24","203.0.113.5/32"]'
    )


@pytest.mark.parametrize(
    ("source", "inside"),
    [
        ("198.51.100.1", True),
        ("198.51.100.255", True),
        ("198.51.101.1", False),
        ("::ffff:198.51.100.1", True),  # IPv4 as a dual-stack socket reports it
        ("2001:db8:1::5", True),
        ("[2001:db8:1::5]", True),
        ("2001:db9::5", False),
        ("fe80::1%eth0", False),
        ("carrier.example", False),
        ("", False),
    ],
)
def test_a_source_is_inside_or_not(source: str, inside: bool) -> None:
    networks = CarrierNetworks.parse(["198.51.100.0/24", "2001:db8::/32", "not a network"])
    assert networks.contains(source) is inside
    assert networks.contains(source) is inside  # remembered, same verdict


def test_networks_from_the_routing_table() -> None:
    assert not CarrierNetworks.decode(None)
    assert not CarrierNetworks.decode(b"{}")
    assert not CarrierNetworks.decode("not json")
    assert CarrierNetworks.decode(b'["10.0.0.0/8"]').contains("10.1.2.3")
