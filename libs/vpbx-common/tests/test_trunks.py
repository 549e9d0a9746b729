"""Trunk URIs (parsed, normalised, written back so they parse to the same address), and
trunks, the outbound policy and caller IDs in the compiled node config."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from vpbx_common.manifests import CONFIG_API_VERSION, OutboundPolicy, Trunk, load_platform_file
from vpbx_common.nodeconfig import SourceTrunk, compile_node_config, manifest_source
from vpbx_common.trunks import TrunkTransport, TrunkUriError, parse_trunk_uri

DEMO = Path(__file__).resolve().parents[3] / "examples" / "demo.yaml"


@pytest.mark.parametrize(
    ("text", "host", "port", "transport"),
    [
        ("sip:carrier.example", "carrier.example", 5060, TrunkTransport.UDP),
        ("sip:Carrier.Example:5080;transport=TCP", "carrier.example", 5080, TrunkTransport.TCP),
        ("sip:192.0.2.1:5062;transport=udp", "192.0.2.1", 5062, TrunkTransport.UDP),
        ("sip:[2001:db8::1]:5070;transport=tcp", "2001:db8::1", 5070, TrunkTransport.TCP),
        ("sip:[::1]", "::1", 5060, TrunkTransport.UDP),
    ],
)
def test_a_trunk_uri_round_trips(
    text: str, host: str, port: int, transport: TrunkTransport
) -> None:
    address = parse_trunk_uri(text)
    assert (address.host, address.port, address.transport) == (host, port, transport)
    assert parse_trunk_uri(str(address)) == address


@pytest.mark.parametrize(
    "text",
    [
        "http://carrier.example/",
        "sip:",
        "sip:carrier.example:70000",
        "sip:carrier.example;transport=sctp",
        "sip:carrier.example;lr",
        "sips:carrier.example",
        "sip:user@carrier.example",
    ],
)
def test_what_is_not_a_trunk_uri_says_why(text: str) -> None:
    with pytest.raises(TrunkUriError):
        parse_trunk_uri(text)


# --- compiled into the node config -------------------------------------------------------


def _trunk(name: str, **spec: object) -> Trunk:
    return Trunk.model_validate(
        {
            "apiVersion": CONFIG_API_VERSION,
            "kind": "Trunk",
            "metadata": {"name": name},
            "spec": {"uri": f"sip:{name}.example", **spec},
        }
    )


def test_trunks_outbound_policy_and_caller_ids_are_compiled() -> None:
    demo = load_platform_file(DEMO)
    tenant = demo.tenants[0]
    own = [n for n in demo.numbers if n.spec.tenant == tenant.name]
    outbound = OutboundPolicy(international=True, default_caller_id=own[0].spec.number)
    tenant = tenant.model_copy(
        update={"spec": tenant.spec.model_copy(update={"outbound": outbound})}
    )
    platform_trunks = [
        _trunk("backup", priority=50),
        _trunk("main", priority=10, register=True, username="op", password="pw"),
    ]
    source = manifest_source(tenant, demo.numbers, demo.configs[0], platform_trunks)
    mine = SourceTrunk(id="t-1", name="byoc", uri="sip:[2001:db8::1]:5070;transport=tcp")
    source = dataclasses.replace(source, trunks=[*source.trunks, mine])
    config = compile_node_config(source, tenant.spec.city_names[0])
    assert [(t.scope, t.id) for t in config.trunks] == [
        ("tenant", "t-1"),
        ("platform", "platform:main"),
        ("platform", "platform:backup"),
    ]
    assert (config.trunks[0].host, config.trunks[0].port) == ("2001:db8::1", 5070)
    assert (config.trunks[1].username, config.trunks[1].password) == ("op", "pw")
    assert config.outbound.international is True
    assert config.outbound.default_caller_id == own[0].spec.number

    # A caller ID the tenant does not hold is never compiled in.
    foreign = OutboundPolicy(default_caller_id="+79990000000")
    tenant = tenant.model_copy(
        update={"spec": tenant.spec.model_copy(update={"outbound": foreign})}
    )
    config = compile_node_config(
        manifest_source(tenant, demo.numbers, demo.configs[0]), tenant.spec.city_names[0]
    )
    assert config.outbound.default_caller_id is None
    assert config.trunks == []
