"""Platform manifests: loading, schema errors, cross-document checks, node config."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from vpbx_common.manifests import (
    ManifestError,
    Number,
    PbxConfig,
    PlatformFile,
    RecordingPolicy,
    RingStrategy,
    Tenant,
    load_platform_file,
    parse_manifest,
    parse_platform_documents,
    parse_platform_yaml,
    validate_platform,
)
from vpbx_common.nodeconfig import GroupTarget, NodeConfig, UnroutedTarget, manifest_source
from vpbx_common.nodeconfig import compile_node_config as compile_from
from vpbx_common.sipauth import DigestAlgorithm, ha1

DEMO = Path(__file__).resolve().parents[3] / "examples" / "demo.yaml"


def tenant_doc(name: str = "acme", cities: tuple[str, ...] = ("msk", "ekb")) -> dict[str, Any]:
    return {
        "apiVersion": "vpbx.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": name},
        "spec": {
            "displayName": name.title(),
            "sipDomain": f"{name}.vpbx.local",
            "cities": [{"name": city} for city in cities],
        },
    }


def number_doc(
    name: str, number: str, tenant: str = "acme", city: str = "msk", entry: str = "sales"
) -> dict[str, Any]:
    return {
        "apiVersion": "vpbx.io/v1alpha1",
        "kind": "Number",
        "metadata": {"name": name},
        "spec": {"number": number, "tenant": tenant, "city": city, "entry": entry},
    }


def config_doc(tenant: str = "acme") -> dict[str, Any]:
    return {
        "apiVersion": "config.vpbx.io/v1alpha1",
        "kind": "PbxConfig",
        "metadata": {"name": tenant},
        "spec": {
            "users": [
                {"extension": "101", "name": "Ivan", "city": "msk", "sipPassword": "secret-101"},
                {"extension": "201", "name": "Olga", "city": "ekb", "sipPassword": "secret-201"},
            ],
            "groups": [{"name": "sales", "members": ["101", "201"]}],
        },
    }


def schema_error(document: dict[str, Any], index: int = 1) -> ManifestError:
    with pytest.raises(ManifestError) as caught:
        parse_platform_documents([None] * (index - 1) + [document])
    return caught.value


# --- the demo file --------------------------------------------------------------


def test_demo_file_loads_and_has_no_problems() -> None:
    platform = load_platform_file(DEMO)
    assert [t.name for t in platform.tenants] == ["acme", "globex"]
    assert [c.tenant for c in platform.configs] == ["acme", "globex"]
    assert sorted(n.spec.number for n in platform.numbers) == [
        "+73430000001",
        "+74950000001",
        "+74950000002",
        "+74950000009",
    ]
    assert validate_platform(platform) == []


def test_demo_file_content() -> None:
    platform = load_platform_file(DEMO)
    acme = platform.tenants[0]
    assert acme.spec.display_name == "Acme Logistics"
    assert acme.spec.sip_domain == "acme.vpbx.local"
    assert acme.spec.city_names == ["msk", "ekb"]
    assert acme.spec.suspended is False
    assert acme.spec.recording.policy is RecordingPolicy.OFF
    acme_config = platform.configs[0]
    users = {
        u.extension: (u.city, u.sip_password.get_secret_value()) for u in acme_config.spec.users
    }
    assert users == {
        "101": ("msk", "acme-101-secret"),
        "102": ("msk", "acme-102-secret"),
        "201": ("ekb", "acme-201-secret"),
    }
    (sales,) = acme_config.spec.groups
    assert (sales.name, sales.strategy, sales.members, sales.ring_timeout_seconds) == (
        "sales",
        RingStrategy.RING_ALL,
        ["101", "102", "201"],
        30,
    )
    labelled = [n for n in platform.numbers if n.spec.label is not None]
    assert [(n.spec.number, n.spec.label) for n in labelled] == [("+74950000002", "yandex-direct")]
    globex_number = next(n for n in platform.numbers if n.spec.tenant == "globex")
    assert (globex_number.spec.number, globex_number.spec.entry) == ("+74950000009", "101")


# --- schema ---------------------------------------------------------------------


def test_defaults_are_filled_in() -> None:
    tenant = parse_manifest(tenant_doc())
    assert isinstance(tenant, Tenant)
    assert tenant.spec.plan.seats == 0
    assert tenant.spec.plan.concurrent_calls == 0
    assert tenant.spec.cities[0].replicas == 1
    assert tenant.spec.cities[0].resources is None
    assert tenant.spec.suspended is False
    assert tenant.spec.recording.policy is RecordingPolicy.OFF
    number = parse_manifest(number_doc("acme-main", "+74950000001"))
    assert isinstance(number, Number)
    assert (number.spec.channels, number.spec.label) == (0, None)
    config = parse_manifest(config_doc())
    assert isinstance(config, PbxConfig)
    assert config.spec.groups[0].ring_timeout_seconds == 30
    assert config.spec.groups[0].strategy is RingStrategy.RING_ALL


def test_camel_case_fields_and_kubernetes_metadata_are_read() -> None:
    document = tenant_doc()
    document["metadata"].update(
        {"creationTimestamp": "2024-05-01T10:00:00Z", "uid": "u-1", "resourceVersion": "7"}
    )
    document["spec"]["plan"] = {"seats": 5, "concurrentCalls": 3, "recordingStorageGiB": 20}
    document["spec"]["recording"] = {"policy": "on-demand"}
    document["spec"]["cities"][0]["resources"] = {"requests": {"cpu": "500m"}}
    document["status"] = {"conditions": []}
    tenant = parse_manifest(document)
    assert isinstance(tenant, Tenant)
    assert tenant.metadata.creation_timestamp is not None
    assert tenant.metadata.creation_timestamp.isoformat() == "2024-05-01T10:00:00+00:00"
    assert (tenant.spec.plan.seats, tenant.spec.plan.concurrent_calls) == (5, 3)
    assert tenant.spec.plan.recording_storage_gib == 20
    assert tenant.spec.recording.policy is RecordingPolicy.ON_DEMAND
    assert tenant.spec.cities[0].resources == {"requests": {"cpu": "500m"}}


def test_sip_domain_is_stored_lowercase() -> None:
    document = tenant_doc()
    document["spec"]["sipDomain"] = "Acme.VPBX.local."
    tenant = parse_manifest(document)
    assert isinstance(tenant, Tenant)
    assert tenant.spec.sip_domain == "acme.vpbx.local"


def test_bad_number_error_names_document_kind_name_and_field() -> None:
    error = schema_error(number_doc("acme-main", "+7 495 000-00-01"), index=3)
    assert str(error).startswith("document 3 (Number/acme-main): spec.number: not an E.164 number")
    assert "+74950000001" in str(error)
    assert (error.document_index, error.kind, error.name) == (3, "Number", "acme-main")


def test_all_problems_of_a_document_are_listed_with_list_indexes() -> None:
    document = config_doc()
    document["spec"]["users"][1]["extension"] = "2"
    document["spec"]["users"][0]["sipPassword"] = "short"
    document["spec"]["groups"][0]["strategy"] = "random"
    error = schema_error(document, index=2)
    assert error.problems == [
        "spec.users[0].sipPassword: a SIP password needs at least 8 characters",
        "spec.users[1].extension: an extension is 2 to 6 digits",
        "spec.groups[0].strategy: Input should be 'ring-all', 'sequential', 'round-robin', "
        "'escalating', 'least-recently-called' or 'by-rank'",
    ]
    assert str(error).startswith("document 2 (PbxConfig/acme): ")
    # The offending password itself must not end up in logs.
    assert "short" not in str(error)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["metadata"].update(name="Acme_Corp"), "metadata.name: not a DNS-1123 label"),
        (lambda d: d["spec"].pop("sipDomain"), "spec.sipDomain: Field required"),
        (lambda d: d["spec"].update(cities=[]), "spec.cities: List should have at least 1 item"),
        (
            lambda d: d["spec"].update(cities=[{"name": "msk"}, {"name": "msk"}]),
            "spec.cities: city listed more than once: msk",
        ),
        (
            lambda d: d["spec"]["cities"][0].update(name="Moscow"),
            "spec.cities[0].name: not a DNS-1123 label",
        ),
        (
            lambda d: d["spec"]["cities"][0].update(replicas=0),
            "spec.cities[0].replicas: Input should be greater than or equal to 1",
        ),
        (lambda d: d["spec"].update(sipDomain="acme vpbx"), "spec.sipDomain: not a domain name"),
        (
            lambda d: d["spec"].update(displayname="typo"),
            "spec.displayname: Extra inputs are not permitted",
        ),
        (
            lambda d: d["spec"].update(recording={"policy": "sometimes"}),
            "spec.recording.policy: Input should be 'off', 'all' or 'on-demand'",
        ),
        (
            lambda d: d.update(apiVersion="vpbx.io/v1"),
            "apiVersion: Input should be 'vpbx.io/v1alpha1'",
        ),
    ],
)
def test_tenant_schema_errors(change: Any, expected: str) -> None:
    document = copy.deepcopy(tenant_doc())
    change(document)
    error = schema_error(document)
    assert any(problem.startswith(expected) for problem in error.problems), error.problems


@pytest.mark.parametrize(
    ("spec_change", "expected"),
    [
        ({"channels": -1}, "spec.channels: Input should be greater than or equal to 0"),
        ({"entry": ""}, "spec.entry: String should have at least 1 character"),
        ({"number": "74950000001"}, "spec.number: not an E.164 number (write it as +74950000001)"),
        ({"number": "+7495"}, "spec.number: not an E.164 number"),
        ({"tenant": "ACME"}, "spec.tenant: not a DNS-1123 label"),
    ],
)
def test_number_schema_errors(spec_change: dict[str, Any], expected: str) -> None:
    document = number_doc("acme-main", "+74950000001")
    document["spec"].update(spec_change)
    error = schema_error(document)
    assert any(problem.startswith(expected) for problem in error.problems), error.problems


def test_group_name_made_of_digits_is_rejected_so_entries_stay_unambiguous() -> None:
    document = config_doc()
    document["spec"]["groups"][0]["name"] = "101"
    error = schema_error(document)
    assert error.problems[0].startswith("spec.groups[0].name: a group name starts with a letter")


def test_unquoted_numbers_in_yaml_get_a_hint_to_quote_them() -> None:
    text = (
        "apiVersion: vpbx.io/v1alpha1\nkind: Number\nmetadata: {name: main}\n"
        "spec: {number: +74950000001, tenant: acme, city: msk, entry: 101}\n"
        "---\napiVersion: config.vpbx.io/v1alpha1\nkind: PbxConfig\nmetadata: {name: acme}\n"
        "spec: {users: [{extension: 0101, name: A, city: msk, sipPassword: secret-0101}]}\n"
    )
    with pytest.raises(ManifestError) as caught:
        parse_platform_yaml(text)
    assert caught.value.problems == [
        "spec.number: write it as a quoted string (YAML read 74950000001 as a number)",
        "spec.entry: write it as a quoted string (YAML read 101 as a number)",
    ]
    with pytest.raises(
        ManifestError, match=r"extension: write it as a quoted string \(YAML read 65 "
    ):
        parse_platform_yaml(text.split("---\n")[1])


def test_unknown_kind_and_non_mapping_documents() -> None:
    error = schema_error({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, 2)
    assert str(error).startswith("document 2 (ConfigMap/x): kind: unknown kind 'ConfigMap'")
    with pytest.raises(ManifestError, match=r"^document 1: a manifest must be a mapping, got list"):
        parse_platform_documents([["not", "a", "manifest"]])


def test_invalid_yaml_is_a_manifest_error() -> None:
    with pytest.raises(ManifestError, match="not valid YAML"):
        parse_platform_yaml("kind: Tenant\n  metadata: [unclosed\n")


def test_load_platform_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "platform.yaml"
    path.write_text(
        "---\n# only a comment\n---\napiVersion: vpbx.io/v1alpha1\nkind: Number\n"
        "metadata: {name: bad}\nspec: {number: '+7', tenant: acme, city: msk, entry: x}\n"
    )
    with pytest.raises(ManifestError) as caught:
        load_platform_file(path)
    assert str(caught.value).startswith(f"{path}: document 2 (Number/bad): spec.number:")
    with pytest.raises(ManifestError, match="cannot read"):
        load_platform_file(tmp_path / "missing.yaml")


# --- validate_platform ----------------------------------------------------------


def platform(*documents: dict[str, Any]) -> PlatformFile:
    return parse_platform_documents(documents)


def test_consistent_platform_has_no_problems() -> None:
    good = platform(tenant_doc(), config_doc(), number_doc("acme-main", "+74950000001"))
    assert validate_platform(good) == []


def test_number_problems() -> None:
    problems = validate_platform(
        platform(
            tenant_doc(),
            config_doc(),
            number_doc("orphan", "+74950000001", tenant="initech"),
            number_doc("far-away", "+73830000001", city="nsk"),
            number_doc("no-group", "+74950000003", entry="support"),
            number_doc("no-user", "+74950000004", entry="999"),
        )
    )
    assert problems == [
        "Number/orphan: tenant 'initech' does not exist",
        "Number/far-away: city 'nsk' is not served by tenant 'acme'",
        "Number/no-group: entry 'support' is not a group of tenant 'acme'",
        "Number/no-user: entry '999' is not an extension of tenant 'acme'",
    ]


def test_entry_needs_a_pbx_config() -> None:
    problems = validate_platform(platform(tenant_doc(), number_doc("main", "+74950000001")))
    assert problems == ["Number/main: entry 'sales' is not a group of tenant 'acme'"]


def test_duplicate_numbers_and_names_are_reported() -> None:
    problems = validate_platform(
        platform(
            tenant_doc(),
            config_doc(),
            number_doc("first", "+74950000001"),
            number_doc("second", "+74950000001"),
            number_doc("first", "+74950000002"),
        )
    )
    assert problems == [
        "Number/first: defined twice",
        "number +74950000001 is claimed by several Numbers: first, second",
    ]


def test_config_problems() -> None:
    config = config_doc()
    config["spec"]["users"].append(
        {"extension": "101", "name": "Clone", "city": "nsk", "sipPassword": "secret-clone"}
    )
    config["spec"]["groups"][0]["members"] = ["101", "301", "101"]
    config["spec"]["groups"].append({"name": "sales", "members": ["201"]})
    problems = validate_platform(platform(tenant_doc(), config, config_doc("initech")))
    assert problems == [
        "PbxConfig/acme: extension 101 is defined twice",
        "PbxConfig/acme: group 'sales' is defined twice",
        "PbxConfig/acme: user 101 is in city 'nsk', which tenant 'acme' does not serve",
        "PbxConfig/acme: group 'sales' member 301 is not a defined extension",
        "PbxConfig/acme: group 'sales' lists member 101 twice",
        "PbxConfig/initech: tenant 'initech' does not exist",
    ]


def test_tenant_level_problems() -> None:
    twin = tenant_doc("globex")
    twin["spec"]["sipDomain"] = "acme.vpbx.local"
    small = tenant_doc()
    small["spec"]["plan"] = {"seats": 1}
    problems = validate_platform(platform(small, tenant_doc(), twin, config_doc()))
    assert problems == [
        "Tenant/acme: defined twice",
        "sipDomain acme.vpbx.local is used by several tenants: acme, acme, globex",
        "PbxConfig/acme: 2 users exceed the plan's 1 seats",
    ]


# --- compiled node config -------------------------------------------------------


def compile_node_config(
    tenant: Tenant, city: str, numbers: list[Number], config: PbxConfig | None
) -> NodeConfig:
    return compile_from(manifest_source(tenant, numbers, config), city)


def demo_parts() -> tuple[Tenant, list[Number], PbxConfig]:
    demo = load_platform_file(DEMO)
    return demo.tenants[0], demo.numbers, demo.configs[0]


def test_node_config_carries_ha1_not_passwords() -> None:
    tenant, numbers, config = demo_parts()
    node = compile_node_config(tenant, "ekb", numbers, config)
    assert (node.tenant, node.city, node.sip_domain) == ("acme", "ekb", "acme.vpbx.local")
    assert node.display_name == "Acme Logistics"
    user = node.user("201")
    assert user is not None
    assert user.city == "ekb"
    assert user.ha1_md5 == ha1("201", "acme.vpbx.local", "acme-201-secret", DigestAlgorithm.MD5)
    assert user.ha1_sha256 == ha1(
        "201", "acme.vpbx.local", "acme-201-secret", DigestAlgorithm.SHA256
    )
    assert "acme-201-secret" not in node.to_json()  # HA1s only, never the password


def test_node_config_has_all_users_groups_and_only_own_numbers() -> None:
    tenant, numbers, config = demo_parts()
    node = compile_node_config(tenant, "msk", numbers, config)
    assert [u.extension for u in node.users] == ["101", "102", "201"]
    group = node.group("sales")
    assert group is not None
    assert (group.members, group.ring_timeout_s, group.strategy) == (
        ["101", "102", "201"],
        30,
        RingStrategy.RING_ALL,
    )
    assert [(n.number, n.city, n.label) for n in node.numbers] == [
        ("+73430000001", "ekb", None),
        ("+74950000001", "msk", None),
        ("+74950000002", "msk", "yandex-direct"),
    ]
    assert node.numbers[0].target == GroupTarget(name="sales")


def test_node_config_json_round_trip() -> None:
    tenant, numbers, config = demo_parts()
    node = compile_node_config(tenant, "msk", numbers, config)
    again = NodeConfig.from_json(node.to_json())
    assert again == node
    assert NodeConfig.from_json(node.to_json().encode()) == node


def test_version_follows_content_only() -> None:
    tenant, numbers, config = demo_parts()
    node = compile_node_config(tenant, "msk", numbers, config)
    assert node.version.startswith("sha256:")
    assert compile_node_config(tenant, "msk", list(reversed(numbers)), config).version == (
        node.version
    )
    assert compile_node_config(tenant, "ekb", numbers, config).version != node.version
    suspended = tenant.model_copy(
        update={"spec": tenant.spec.model_copy(update={"suspended": True})}
    )
    changed = compile_node_config(suspended, "msk", numbers, config)
    assert changed.suspended is True
    assert changed.version != node.version
    fewer = compile_node_config(tenant, "msk", numbers[:1], config)
    assert fewer.version != node.version


def test_node_config_without_pbx_config_is_empty_but_usable() -> None:
    tenant, numbers, _ = demo_parts()
    node = compile_node_config(tenant, "msk", numbers, None)
    assert (node.users, node.groups) == ([], [])
    assert len(node.numbers) == 3
    # Nothing to ring: the number's group is not there, and the node is told so.
    assert node.numbers[0].target == UnroutedTarget(missing="group:sales")


def test_node_config_refuses_wrong_city_or_config() -> None:
    tenant, numbers, config = demo_parts()
    with pytest.raises(ValueError, match="does not serve city 'nsk'"):
        compile_node_config(tenant, "nsk", numbers, config)
    other = parse_manifest(config_doc("globex"))
    assert isinstance(other, PbxConfig)
    with pytest.raises(ValueError, match="not the config of 'acme'"):
        compile_node_config(tenant, "msk", numbers, other)
