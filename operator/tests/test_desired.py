"""Desired state: which media nodes exist and what the edge routing table holds."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from vpbx_common.manifests import Number, PbxConfig, Tenant, load_platform_file, parse_manifest
from vpbx_common.routing import RejectionReason
from vpbx_operator.desired import (
    accept_numbers,
    desired_nodes,
    desired_routes,
    node_name,
    placed_routes,
)

DEMO = Path(__file__).resolve().parents[2] / "examples" / "demo.yaml"
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def address(tenant: str, city: str) -> str:
    ports = {("acme", "msk"): 5071, ("acme", "ekb"): 5072, ("globex", "msk"): 5073}
    return f"127.0.0.1:{ports.get((tenant, city), 5099)}"


def tenant(
    name: str, cities: tuple[str, ...] = ("msk",), created: str | None = None, **spec: Any
) -> Tenant:
    metadata: dict[str, Any] = {"name": name}
    if created is not None:
        metadata["creationTimestamp"] = created
    parsed = parse_manifest(
        {
            "apiVersion": "vpbx.io/v1alpha1",
            "kind": "Tenant",
            "metadata": metadata,
            "spec": {
                "displayName": name,
                "sipDomain": f"{name}.vpbx.local",
                "cities": [{"name": city} for city in cities],
                **spec,
            },
        }
    )
    assert isinstance(parsed, Tenant)
    return parsed


def number(
    name: str,
    e164: str,
    owner: str = "acme",
    city: str = "msk",
    created: str | None = None,
) -> Number:
    metadata: dict[str, Any] = {"name": name}
    if created is not None:
        metadata["creationTimestamp"] = created
    parsed = parse_manifest(
        {
            "apiVersion": "vpbx.io/v1alpha1",
            "kind": "Number",
            "metadata": metadata,
            "spec": {"number": e164, "tenant": owner, "city": city, "entry": "sales"},
        }
    )
    assert isinstance(parsed, Number)
    return parsed


# --- node names ------------------------------------------------------------------


def test_node_name_is_readable_when_short() -> None:
    assert node_name("acme", "msk") == "vpbx-node-acme-msk"


def test_long_node_names_are_cut_with_a_hash_and_stay_distinct() -> None:
    long_tenant = "a" * 60
    first = node_name(long_tenant, "msk")
    second = node_name(long_tenant, "ekb")
    assert len(first) <= 63
    assert len(second) <= 63
    assert first != second
    assert first.startswith("vpbx-node-aaaa")
    assert DNS_1035_LABEL.fullmatch(first)
    assert node_name(long_tenant, "msk") == first


def test_node_name_with_characters_dns_does_not_allow_is_made_safe() -> None:
    name = node_name("Acme_Corp", "msk")
    assert DNS_1035_LABEL.fullmatch(name)
    assert name != node_name("acme-corp", "msk")


# --- the demo --------------------------------------------------------------------


def test_demo_gives_three_nodes_and_four_number_routes() -> None:
    demo = load_platform_file(DEMO)
    nodes = desired_nodes(demo.tenants, demo.numbers, demo.configs)
    assert [(n.name, n.tenant, n.city) for n in nodes] == [
        ("vpbx-node-acme-msk", "acme", "msk"),
        ("vpbx-node-acme-ekb", "acme", "ekb"),
        ("vpbx-node-globex-msk", "globex", "msk"),
    ]
    assert [len(n.config.users) for n in nodes] == [3, 3, 1]
    assert all(n.replicas == 1 for n in nodes)

    routes = desired_routes(demo.tenants, demo.numbers, address, demo.configs)
    assert routes.rejected == []
    summary = {
        e164: (r.tenant, r.city, r.node, r.address, r.entry, r.label)
        for e164, r in routes.numbers.items()
    }
    assert summary == {
        "+74950000001": ("acme", "msk", "vpbx-node-acme-msk", "127.0.0.1:5071", "sales", None),
        "+73430000001": ("acme", "ekb", "vpbx-node-acme-ekb", "127.0.0.1:5072", "sales", None),
        "+74950000002": (
            "acme",
            "msk",
            "vpbx-node-acme-msk",
            "127.0.0.1:5071",
            "sales",
            "yandex-direct",
        ),
        "+74950000009": ("globex", "msk", "vpbx-node-globex-msk", "127.0.0.1:5073", "101", None),
    }


def test_demo_domain_routes_send_users_to_their_home_city() -> None:
    demo = load_platform_file(DEMO)
    routes = desired_routes(demo.tenants, demo.numbers, address, demo.configs)
    acme = routes.domains["acme.vpbx.local"]
    assert acme.nodes == {"msk": "127.0.0.1:5071", "ekb": "127.0.0.1:5072"}
    assert acme.extensions == {"101": "msk", "102": "msk", "201": "ekb"}
    assert acme.default_city == "msk"
    assert acme.address_for("201") == "127.0.0.1:5072"
    assert acme.address_for("102") == "127.0.0.1:5071"
    assert acme.address_for("999") == "127.0.0.1:5071"
    assert acme.address_for(None) == "127.0.0.1:5071"
    assert routes.domains["globex.vpbx.local"].address_for("101") == "127.0.0.1:5073"


def test_without_configs_users_register_in_the_first_city() -> None:
    demo = load_platform_file(DEMO)
    routes = desired_routes(demo.tenants, demo.numbers, address)
    acme = routes.domains["acme.vpbx.local"]
    assert acme.extensions == {}
    assert acme.address_for("201") == "127.0.0.1:5071"


def test_node_configs_only_hold_routed_numbers() -> None:
    acme = tenant("acme")
    nodes = desired_nodes(
        [acme],
        [
            number("kept", "+74950000001", created="2024-01-01T00:00:00Z"),
            number("dup", "+74950000001", created="2024-02-01T00:00:00Z"),
            number("far", "+73430000001", city="ekb"),
        ],
        [],
    )
    (node,) = nodes
    assert [n.number for n in node.config.numbers] == ["+74950000001"]


# --- suspension ------------------------------------------------------------------


def test_suspended_tenant_keeps_nodes_and_routes_marked_suspended() -> None:
    suspended = tenant("acme", ("msk", "ekb"), suspended=True)
    nodes = desired_nodes([suspended], [number("main", "+74950000001")], [])
    assert [n.name for n in nodes] == ["vpbx-node-acme-msk", "vpbx-node-acme-ekb"]
    assert all(n.config.suspended for n in nodes)
    routes = desired_routes([suspended], [number("main", "+74950000001")], address)
    assert routes.numbers["+74950000001"].suspended is True
    assert routes.domains["acme.vpbx.local"].suspended is True


# --- placement -------------------------------------------------------------------


def test_only_tenants_with_every_city_placed_get_routes() -> None:
    """A tenant one of whose nodes has no address yet gets no route at all."""
    tenants = [tenant("acme", ("msk", "ekb")), tenant("globex")]
    numbers = [number("acme-main", "+74950000001"), number("gx", "+74950000009", "globex")]

    def partly(name: str, city: str) -> str:
        return "" if (name, city) == ("acme", "ekb") else address(name, city)

    routes = placed_routes(desired_routes(tenants, numbers, partly), tenants, partly)
    assert set(routes.numbers) == {"+74950000009"}
    assert set(routes.domains) == {"globex.vpbx.local"}
    every = placed_routes(desired_routes(tenants, numbers, address), tenants, address)
    assert set(every.numbers) == {"+74950000001", "+74950000009"}
    assert set(every.domains) == {"acme.vpbx.local", "globex.vpbx.local"}


# --- rejected numbers ------------------------------------------------------------


def test_number_of_missing_tenant_is_rejected() -> None:
    routes = desired_routes(
        [tenant("acme")], [number("lost", "+74950000001", owner="initech")], address
    )
    assert routes.numbers == {}
    (rejection,) = routes.rejected
    assert (rejection.name, rejection.reason) == ("lost", RejectionReason.TENANT_NOT_FOUND)
    assert rejection.reason == "TenantNotFound"
    assert "initech" in rejection.message


def test_number_in_a_city_the_tenant_does_not_serve_is_rejected() -> None:
    routes = desired_routes(
        [tenant("acme")], [number("ekb-main", "+73430000001", city="ekb")], address
    )
    assert routes.numbers == {}
    (rejection,) = routes.rejected
    assert (rejection.name, rejection.reason) == ("ekb-main", RejectionReason.CITY_NOT_SERVED)
    assert rejection.message == "tenant 'acme' serves msk, not 'ekb'"


def test_older_number_keeps_a_duplicated_e164_whatever_the_input_order() -> None:
    newer = number("aaa-newer", "+74950000001", created="2024-06-01T00:00:00Z")
    older = number("zzz-older", "+74950000001", created="2024-01-01T00:00:00+03:00")
    for order in ([newer, older], [older, newer]):
        routes = desired_routes([tenant("acme")], order, address)
        assert list(routes.numbers) == ["+74950000001"]
        (rejection,) = routes.rejected
        assert (rejection.name, rejection.reason) == ("aaa-newer", RejectionReason.DUPLICATE_NUMBER)
        assert "zzz-older" in rejection.message


def test_duplicate_with_equal_timestamps_goes_to_the_name_first_in_order() -> None:
    same = "2024-01-01T00:00:00Z"
    accepted, rejected = accept_numbers(
        [tenant("acme")],
        [
            number("beta", "+74950000001", created=same),
            number("alpha", "+74950000001", created=same),
        ],
    )
    assert [n.name for n in accepted] == ["alpha"]
    assert [(r.name, r.reason) for r in rejected] == [("beta", RejectionReason.DUPLICATE_NUMBER)]


def test_numbers_from_the_api_are_older_than_hand_written_ones() -> None:
    accepted, rejected = accept_numbers(
        [tenant("acme")],
        [
            number("aaa-local", "+74950000001"),
            number("zzz-api", "+74950000001", created="2030-01-01T00:00:00Z"),
        ],
    )
    assert [n.name for n in accepted] == ["zzz-api"]
    assert [r.name for r in rejected] == ["aaa-local"]


def test_broken_older_number_does_not_block_a_good_newer_one() -> None:
    routes = desired_routes(
        [tenant("acme")],
        [
            number("old-typo", "+74950000001", owner="acmee", created="2024-01-01T00:00:00Z"),
            number("new-good", "+74950000001", created="2024-02-01T00:00:00Z"),
        ],
        address,
    )
    assert routes.numbers["+74950000001"].node == "vpbx-node-acme-msk"
    assert [(r.name, r.reason) for r in routes.rejected] == [
        ("old-typo", RejectionReason.TENANT_NOT_FOUND)
    ]


def test_rejections_of_every_kind_together() -> None:
    routes = desired_routes(
        [tenant("acme"), tenant("globex")],
        [
            number("a-ok", "+74950000001"),
            number("b-dup", "+74950000001"),
            number("c-city", "+73430000001", city="ekb"),
            number("d-tenant", "+74950000005", owner="initech"),
            number("e-globex", "+74950000009", owner="globex"),
        ],
        address,
    )
    assert sorted(routes.numbers) == ["+74950000001", "+74950000009"]
    assert [(r.name, r.reason.value) for r in routes.rejected] == [
        ("b-dup", "DuplicateNumber"),
        ("c-city", "CityNotServed"),
        ("d-tenant", "TenantNotFound"),
    ]


def test_older_tenant_keeps_a_shared_sip_domain() -> None:
    newer = tenant("newer", created="2024-06-01T00:00:00Z", sipDomain="shared.vpbx.local")
    older = tenant("older", created="2024-01-01T00:00:00Z", sipDomain="shared.vpbx.local")
    for order in ([newer, older], [older, newer]):
        routes = desired_routes(order, [], address)
        assert list(routes.domains) == ["shared.vpbx.local"]
        assert routes.domains["shared.vpbx.local"].tenant == "older"


def test_desired_state_is_deterministic() -> None:
    demo = load_platform_file(DEMO)
    configs: list[PbxConfig] = list(demo.configs)
    first = desired_nodes(demo.tenants, demo.numbers, configs)
    second = desired_nodes(list(reversed(demo.tenants)), list(reversed(demo.numbers)), configs)
    assert [(n.name, n.config.version) for n in first] == [
        (n.name, n.config.version) for n in second
    ]
    assert desired_routes(demo.tenants, demo.numbers, address, configs) == desired_routes(
        list(reversed(demo.tenants)), list(reversed(demo.numbers)), address, configs
    )
