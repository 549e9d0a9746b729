"""The Tenant and Number CustomResourceDefinitions (crds/).

Offline tests check the CRD files themselves and that they agree with the
pydantic models the operator, the CLI and the local launcher use; a document one
side accepts and the other refuses would be a platform that works locally and
fails in a cluster (or the reverse). Integration tests install the CRDs into a
real kube-apiserver and check what a platform operator sees from kubectl.
"""

from __future__ import annotations

import copy
import enum
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import annotated_types
import jsonschema  # type: ignore[import-untyped]  # no stubs published
import pytest
import yaml
from pydantic import AfterValidator, BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from tests.services.kube import KubeAPI
from vpbx_common import manifests
from vpbx_common.manifests import (
    CityPlacement,
    ManifestError,
    NumberSpec,
    Plan,
    Recording,
    TenantSpec,
    parse_manifest,
)

REPO = Path(__file__).resolve().parent.parent
CRD_DIR = REPO / "crds"
TENANT_CRD_FILE = CRD_DIR / "tenants.vpbx.io.yaml"
NUMBER_CRD_FILE = CRD_DIR / "numbers.vpbx.io.yaml"
DEMO_FILE = REPO / "examples" / "demo.yaml"
K8S_EXAMPLES = REPO / "examples" / "k8s"

Document = dict[str, Any]
Schema = dict[str, Any]

# Constraint keywords compared between the CRD schema and the pydantic models.
CONSTRAINT_KEYS = ("minimum", "maximum", "minLength", "maxLength", "minItems", "maxItems")

# Where the CRD is deliberately stricter than the model: bounds that keep a typo
# (seats: 1000000) from reaching the cluster. Listed so that a new difference
# is a decision, not an accident; docs/kubernetes.md lists them too.
CRD_ONLY_CONSTRAINTS: dict[str, set[str]] = {
    "spec.plan.seats": {"maximum"},
    "spec.plan.concurrentCalls": {"maximum"},
    "spec.plan.recordingStorageGiB": {"maximum"},
    "spec.cities": {"maxItems"},
    "spec.cities[].replicas": {"maximum"},
}

# What each of the models' string validators allows, in CRD keywords. The
# patterns are the models' own regular expressions where they have one, so a
# change on one side without the other fails here.
VALIDATOR_CONSTRAINTS: dict[Callable[[str], str], dict[str, Any]] = {
    manifests._dns_label: {"pattern": manifests.DNS_LABEL.pattern, "maxLength": 63},
    manifests._sip_domain: {
        "pattern": manifests._DNS_SUBDOMAIN.pattern,
        "minLength": 1,
        "maxLength": 253,
    },
    # The model also asks phonenumbers whether the length fits the country,
    # which no schema can; the syntax is the E.164 one in both.
    manifests._e164: {"pattern": r"^\+[1-9][0-9]{6,14}$", "maxLength": 16},
}


# --- loading -------------------------------------------------------------------


def load_crd(path: Path) -> Document:
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(document, dict):
        raise TypeError(f"{path}: not a YAML mapping")
    return document


@pytest.fixture(scope="module")
def tenant_crd() -> Document:
    return load_crd(TENANT_CRD_FILE)


@pytest.fixture(scope="module")
def number_crd() -> Document:
    return load_crd(NUMBER_CRD_FILE)


def crd_version(crd: Mapping[str, Any]) -> dict[str, Any]:
    versions = crd["spec"]["versions"]
    if len(versions) != 1:
        raise ValueError("expected exactly one version")
    version: dict[str, Any] = versions[0]
    return version


def openapi_schema(crd: Mapping[str, Any]) -> Schema:
    schema: Schema = crd_version(crd)["schema"]["openAPIV3Schema"]
    return schema


def yaml_documents(path: Path) -> list[Document]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


def platform_documents(kind: str) -> list[Document]:
    """The documents of one kind in the demo file and in examples/k8s."""
    paths = [DEMO_FILE, *sorted(K8S_EXAMPLES.glob("*.yaml"))]
    return [d for path in paths for d in yaml_documents(path) if d.get("kind") == kind]


def schema_nodes(schema: Schema, path: str = "") -> Iterator[tuple[str, Schema]]:
    """Every schema node with its field path (``[]`` for list items, ``{}`` for map values)."""
    yield path or "(root)", schema
    for name, child in schema.get("properties", {}).items():
        yield from schema_nodes(child, f"{path}.{name}" if path else name)
    items = schema.get("items")
    if isinstance(items, dict):
        yield from schema_nodes(items, f"{path}[]")
    values = schema.get("additionalProperties")
    if isinstance(values, dict):
        yield from schema_nodes(values, f"{path}{{}}")


def subschema(schema: Schema, path: str) -> Schema:
    node = schema
    for part in re.findall(r"[^.\[\]]+|\[\]", path):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


# --- an offline stand-in for the API server's schema validation ------------------


def _closed(schema: Schema, path: str = "") -> Schema:
    """The schema with unknown fields refused, as kubectl's strict field validation does.

    metadata stays open: the CRD only restricts its name, the API server knows
    the rest of ObjectMeta.
    """
    closed = copy.deepcopy(schema)
    properties = closed.get("properties")
    if properties is not None and path != "metadata" and "additionalProperties" not in closed:
        closed["additionalProperties"] = False
    if properties is not None:
        closed["properties"] = {
            name: _closed(child, f"{path}.{name}" if path else name)
            for name, child in properties.items()
        }
    if isinstance(closed.get("items"), dict):
        closed["items"] = _closed(closed["items"], f"{path}[]")
    return closed


def _list_map_duplicates(schema: Schema, value: object, path: str) -> list[str]:
    """x-kubernetes-list-type=map: no two items with the same key (jsonschema cannot say this)."""
    problems: list[str] = []
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        keys = schema.get("x-kubernetes-list-map-keys")
        if schema.get("x-kubernetes-list-type") == "map" and keys:
            seen: set[tuple[object, ...]] = set()
            for index, item in enumerate(value):
                if not isinstance(item, dict):
                    continue
                key = tuple(json.dumps(item.get(k)) for k in keys)
                if key in seen:
                    problems.append(f"{path}[{index}]: Duplicate value")
                seen.add(key)
        for index, item in enumerate(value):
            problems += _list_map_duplicates(schema["items"], item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for name, child in schema.get("properties", {}).items():
            if name in value:
                problems += _list_map_duplicates(child, value[name], f"{path}.{name}".lstrip("."))
    return problems


def schema_problems(crd: Mapping[str, Any], document: Mapping[str, Any]) -> list[str]:
    """Why the API server's schema validation would refuse ``document``; empty if it would not.

    CEL rules are not evaluated here; the integration tests cover them.
    """
    schema = copy.deepcopy(openapi_schema(crd))
    # The API server knows ObjectMeta whether or not the CRD mentions it.
    schema["properties"].setdefault("metadata", {"type": "object"})
    validator = jsonschema.Draft4Validator(_closed(schema))
    problems = [
        f"{'.'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in validator.iter_errors(document)
    ]
    return problems + _list_map_duplicates(schema, document, "")


def model_accepts(document: Mapping[str, Any]) -> bool:
    try:
        parse_manifest(document)
    except ManifestError:
        return False
    return True


# --- the CRD files ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "kind", "plural", "short_names"),
    [
        (TENANT_CRD_FILE, "Tenant", "tenants", {"vt"}),
        (NUMBER_CRD_FILE, "Number", "numbers", {"vn", "num"}),
    ],
)
def test_crd_identity(path: Path, kind: str, plural: str, short_names: set[str]) -> None:
    crd = load_crd(path)
    assert crd["apiVersion"] == "apiextensions.k8s.io/v1"
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["metadata"]["name"] == f"{plural}.vpbx.io"
    spec = crd["spec"]
    assert spec["group"] == "vpbx.io"
    assert spec["scope"] == "Cluster"
    assert spec["names"]["kind"] == kind
    assert spec["names"]["plural"] == plural
    assert spec["names"]["singular"] == kind.lower()
    assert short_names <= set(spec["names"]["shortNames"])
    version = crd_version(crd)
    assert version["name"] == "v1alpha1"
    assert version["served"] is True
    assert version["storage"] is True
    assert version["subresources"] == {"status": {}}
    assert f"vpbx.io/{crd_version(crd)['name']}" == manifests.PLATFORM_API_VERSION


@pytest.mark.parametrize("path", [TENANT_CRD_FILE, NUMBER_CRD_FILE], ids=lambda p: p.name)
def test_every_field_has_a_description(path: Path) -> None:
    """`kubectl explain` shows these; a field without one teaches nothing."""
    missing = [
        field_path
        for field_path, node in schema_nodes(openapi_schema(load_crd(path)))
        # The API server refuses a description on metadata (only name and
        # generateName may be restricted there); kubectl explains ObjectMeta itself.
        if field_path != "metadata" and not str(node.get("description", "")).strip()
    ]
    assert missing == []


@pytest.mark.parametrize("path", [TENANT_CRD_FILE, NUMBER_CRD_FILE], ids=lambda p: p.name)
def test_schema_is_structural(path: Path) -> None:
    """Every node has a type (or is int-or-string); nothing keeps unknown fields."""
    untyped = [
        field_path
        for field_path, node in schema_nodes(openapi_schema(load_crd(path)))
        if "type" not in node and not node.get("x-kubernetes-int-or-string")
    ]
    open_ended = [
        field_path
        for field_path, node in schema_nodes(openapi_schema(load_crd(path)))
        if node.get("x-kubernetes-preserve-unknown-fields")
    ]
    assert untyped == []
    assert open_ended == []


def _printer_columns(crd: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    return {column["name"]: column for column in crd_version(crd)["additionalPrinterColumns"]}


READY_PATH = '.status.conditions[?(@.type=="Ready")].status'


def test_tenant_printer_columns(tenant_crd: Document) -> None:
    columns = _printer_columns(tenant_crd)
    default_view = [name for name, c in columns.items() if c.get("priority", 0) == 0]
    assert default_view == ["Cities", "Numbers", "Ready", "Suspended", "Age"]
    assert columns["Ready"]["jsonPath"] == READY_PATH
    assert columns["Suspended"]["jsonPath"] == ".spec.suspended"
    # A column shows only the first value of a list, hence a joined status field.
    assert columns["Cities"]["jsonPath"] == ".status.cityNames"
    assert columns["Numbers"]["jsonPath"] == ".status.numbers"


def test_number_printer_columns(number_crd: Document) -> None:
    columns = _printer_columns(number_crd)
    default_view = [name for name, c in columns.items() if c.get("priority", 0) == 0]
    assert default_view == ["Number", "Tenant", "City", "Channels", "Label", "Ready", "Age"]
    assert columns["Ready"]["jsonPath"] == READY_PATH


@pytest.mark.parametrize(
    ("path", "condition_types"),
    [
        (TENANT_CRD_FILE, ["Ready", "Degraded", "Suspended"]),
        (NUMBER_CRD_FILE, ["Ready"]),
    ],
    ids=["Tenant", "Number"],
)
def test_status_conditions_have_the_standard_shape(path: Path, condition_types: list[str]) -> None:
    conditions = subschema(openapi_schema(load_crd(path)), "status.conditions")
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    item = conditions["items"]
    assert set(item["properties"]) == {
        "type",
        "status",
        "reason",
        "message",
        "observedGeneration",
        "lastTransitionTime",
    }
    assert set(item["required"]) == {"type", "status", "reason", "message", "lastTransitionTime"}
    assert item["properties"]["type"]["enum"] == condition_types
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]


def test_operator_status_fits_the_schema(tenant_crd: Document, number_crd: Document) -> None:
    """The status documents the operator writes are what the schema keeps.

    The status subresource prunes fields the schema does not know, silently; a
    name mismatch would make the status look empty to every user.
    """
    conditions = pytest.importorskip("vpbx_operator.conditions")
    routing = pytest.importorskip("vpbx_common.routing")
    tenant_status = conditions.tenant_status(
        generation=3,
        suspended=False,
        cities=[
            conditions.CityObservation("msk", "acme-msk", 1, 1, "acme-msk.vpbx.svc:5060"),
            conditions.CityObservation("ekb", "acme-ekb", 1, 0, None),
        ],
        numbers=2,
        previous=[],
    )
    number_status = conditions.number_status(
        name="acme-msk-main",
        number="+74950000001",
        generation=1,
        snapshot=routing.RoutingSnapshot(),
        previous=[],
    )
    tenant = {"apiVersion": "vpbx.io/v1alpha1", "kind": "Tenant", "status": tenant_status}
    number = {"apiVersion": "vpbx.io/v1alpha1", "kind": "Number", "status": number_status}
    tenant["spec"] = platform_documents("Tenant")[0]["spec"]
    tenant["metadata"] = {"name": "acme"}
    number["spec"] = platform_documents("Number")[0]["spec"]
    number["metadata"] = {"name": "acme-msk-main"}
    assert schema_problems(tenant_crd, tenant) == []
    assert schema_problems(number_crd, number) == []


# --- agreement with the pydantic models ----------------------------------------------


def _alias(name: str, info: FieldInfo) -> str:
    return info.alias or name


def _expected_constraints(info: FieldInfo, crd_type: str) -> dict[str, Any]:
    expected: dict[str, Any] = {}
    sized = "Items" if crd_type == "array" else "Length"
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            expected["minimum"] = item.ge
        elif isinstance(item, annotated_types.Le):
            expected["maximum"] = item.le
        elif isinstance(item, annotated_types.MinLen):
            expected[f"min{sized}"] = item.min_length
        elif isinstance(item, annotated_types.MaxLen):
            expected[f"max{sized}"] = item.max_length
        elif isinstance(item, AfterValidator) and item.func in VALIDATOR_CONSTRAINTS:
            expected.update(VALIDATOR_CONSTRAINTS[item.func])
    return expected


def _expected_default(info: FieldInfo) -> object:
    """The CRD default that gives the same object the model's default gives."""
    if info.default_factory is not None:
        # An empty object, completed by the nested fields' own defaults.
        return {}
    if info.default is PydanticUndefined or info.default is None:
        return PydanticUndefined
    if isinstance(info.default, enum.Enum):
        return info.default.value
    return info.default


MODEL_SCHEMAS: list[tuple[type[BaseModel], Path, str]] = [
    (TenantSpec, TENANT_CRD_FILE, "spec"),
    (Plan, TENANT_CRD_FILE, "spec.plan"),
    (CityPlacement, TENANT_CRD_FILE, "spec.cities[]"),
    (Recording, TENANT_CRD_FILE, "spec.recording"),
    (NumberSpec, NUMBER_CRD_FILE, "spec"),
]


@pytest.mark.parametrize(
    ("model", "path", "schema_path"), MODEL_SCHEMAS, ids=[m[0].__name__ for m in MODEL_SCHEMAS]
)
def test_schema_fields_match_the_model(
    model: type[BaseModel], path: Path, schema_path: str
) -> None:
    node = subschema(openapi_schema(load_crd(path)), schema_path)
    fields = {_alias(name, info): info for name, info in model.model_fields.items()}
    assert set(node["properties"]) == set(fields)
    assert set(node.get("required", [])) == {a for a, info in fields.items() if info.is_required()}
    for alias, info in fields.items():
        child = node["properties"][alias]
        field_path = f"{schema_path}.{alias}"
        assert child.get("default", PydanticUndefined) == _expected_default(info), field_path
        crd_only = CRD_ONLY_CONSTRAINTS.get(field_path, set())
        actual = {
            key: child[key]
            for key in (*CONSTRAINT_KEYS, "pattern")
            if key in child and key not in crd_only
        }
        assert actual == _expected_constraints(info, child.get("type", "")), field_path
        if isinstance(info.annotation, type) and issubclass(info.annotation, enum.Enum):
            assert child["enum"] == [member.value for member in info.annotation], field_path


def test_crd_only_constraints_are_the_listed_ones(tenant_crd: Document) -> None:
    """Each documented CRD-only bound exists, so the list cannot rot."""
    schema = openapi_schema(tenant_crd)
    for field_path, keys in CRD_ONLY_CONSTRAINTS.items():
        assert keys <= set(subschema(schema, field_path)), field_path


def test_tenant_name_is_a_dns_label(tenant_crd: Document) -> None:
    """Numbers refer to a Tenant by name and node names contain it, as in manifests.LabelMeta."""
    name = subschema(openapi_schema(tenant_crd), "metadata.name")
    assert name["pattern"] == manifests.DNS_LABEL.pattern
    assert name["maxLength"] == 63


def _tenant(**spec_changes: object) -> Document:
    spec: dict[str, Any] = {
        "displayName": "Acme Logistics",
        "sipDomain": "acme.vpbx.example",
        "cities": [{"name": "msk"}, {"name": "ekb", "replicas": 2}],
    }
    spec.update(spec_changes)
    return {
        "apiVersion": "vpbx.io/v1alpha1",
        "kind": "Tenant",
        "metadata": {"name": "acme"},
        "spec": {k: v for k, v in spec.items() if v is not None},
    }


def _number(**spec_changes: object) -> Document:
    spec: dict[str, Any] = {
        "number": "+74950000001",
        "tenant": "acme",
        "city": "msk",
        "entry": "sales",
    }
    spec.update(spec_changes)
    return {
        "apiVersion": "vpbx.io/v1alpha1",
        "kind": "Number",
        "metadata": {"name": "acme-msk-main"},
        "spec": {k: v for k, v in spec.items() if v is not None},
    }


# (id, document, accepted by both). A None value removes the field.
AGREEMENT_CASES: list[tuple[str, Document, bool]] = [
    ("tenant-minimal", _tenant(), True),
    (
        "tenant-full",
        _tenant(
            plan={"seats": 5, "concurrentCalls": 3, "recordingStorageGiB": 1},
            suspended=True,
            recording={"policy": "on-demand"},
        ),
        True,
    ),
    (
        "tenant-resources",
        _tenant(
            cities=[
                {
                    "name": "msk",
                    "resources": {
                        "requests": {"cpu": "250m", "memory": "256Mi"},
                        "limits": {"cpu": 1},
                    },
                }
            ]
        ),
        True,
    ),
    ("tenant-uppercase-city", _tenant(cities=[{"name": "Msk"}]), False),
    ("tenant-city-leading-dash", _tenant(cities=[{"name": "-msk"}]), False),
    ("tenant-city-too-long", _tenant(cities=[{"name": "c" * 64}]), False),
    ("tenant-duplicate-city", _tenant(cities=[{"name": "msk"}, {"name": "msk"}]), False),
    ("tenant-no-cities", _tenant(cities=[]), False),
    ("tenant-missing-cities", _tenant(cities=None), False),
    ("tenant-missing-sip-domain", _tenant(sipDomain=None), False),
    ("tenant-sip-domain-with-space", _tenant(sipDomain="acme vpbx.example"), False),
    ("tenant-missing-display-name", _tenant(displayName=None), False),
    ("tenant-empty-display-name", _tenant(displayName=""), False),
    ("tenant-zero-replicas", _tenant(cities=[{"name": "msk", "replicas": 0}]), False),
    ("tenant-negative-seats", _tenant(plan={"seats": -1}), False),
    ("tenant-negative-storage", _tenant(plan={"recordingStorageGiB": -1}), False),
    ("tenant-unknown-policy", _tenant(recording={"policy": "sometimes"}), False),
    ("tenant-misspelt-field", _tenant(sipdomain="x.example"), False),
    ("tenant-misspelt-plan-field", _tenant(plan={"seat": 5}), False),
    ("tenant-uppercase-name", {**_tenant(), "metadata": {"name": "Acme"}}, False),
    ("number-minimal", _number(), True),
    ("number-full", _number(channels=2, label="yandex-direct", entry="101"), True),
    ("number-unlimited-channels", _number(channels=0), True),
    ("number-without-plus", _number(number="74950000001"), False),
    ("number-leading-zero-country", _number(number="+04950000001"), False),
    ("number-with-spaces", _number(number="+7 495 000 00 01"), False),
    ("number-too-long", _number(number="+7495000000123456"), False),
    ("number-unquoted-in-yaml", _number(number=74950000001), False),
    ("number-negative-channels", _number(channels=-1), False),
    ("number-empty-label", _number(label=""), False),
    ("number-label-too-long", _number(label="l" * 64), False),
    ("number-missing-entry", _number(entry=None), False),
    ("number-empty-entry", _number(entry=""), False),
    ("number-entry-unquoted-in-yaml", _number(entry=101), False),
    ("number-uppercase-tenant", _number(tenant="Acme"), False),
    ("number-uppercase-city", _number(city="MSK"), False),
    ("number-missing-tenant", _number(tenant=None), False),
]


@pytest.mark.parametrize(
    ("document", "accepted"),
    [(d, a) for _, d, a in AGREEMENT_CASES],
    ids=[case_id for case_id, _, _ in AGREEMENT_CASES],
)
def test_crd_and_model_agree(
    document: Document, accepted: bool, tenant_crd: Document, number_crd: Document
) -> None:
    crd = tenant_crd if document["kind"] == "Tenant" else number_crd
    problems = schema_problems(crd, document)
    assert (problems == []) is accepted, problems
    assert model_accepts(document) is accepted


# Documents the CRD refuses although the model would take them: the cluster
# insists on the one spelling the model would normalise to, and on sane bounds.
CRD_STRICTER_CASES: list[tuple[str, Document]] = [
    ("uppercase-sip-domain", _tenant(sipDomain="Acme.vpbx.example")),
    ("sip-domain-trailing-dot", _tenant(sipDomain="acme.vpbx.example.")),
    ("seats-beyond-plan-limit", _tenant(plan={"seats": 100_001})),
    ("replicas-beyond-limit", _tenant(cities=[{"name": "msk", "replicas": 101}])),
    (
        "resources-unknown-quantity",
        _tenant(cities=[{"name": "msk", "resources": {"requests": {"cpu": "a lot"}}}]),
    ),
    (
        "resources-unknown-resource",
        _tenant(cities=[{"name": "msk", "resources": {"limits": {"nvidia.com/gpu": 1}}}]),
    ),
    (
        "resources-negative-quantity",
        _tenant(cities=[{"name": "msk", "resources": {"requests": {"memory": "-1Gi"}}}]),
    ),
]


@pytest.mark.parametrize(
    "document", [d for _, d in CRD_STRICTER_CASES], ids=[i for i, _ in CRD_STRICTER_CASES]
)
def test_crd_is_stricter_where_documented(document: Document, tenant_crd: Document) -> None:
    assert schema_problems(tenant_crd, document) != []


@pytest.mark.parametrize(
    ("path", "field_path"),
    [
        (TENANT_CRD_FILE, "spec.sipDomain"),
        (NUMBER_CRD_FILE, "spec.number"),
        (NUMBER_CRD_FILE, "spec.tenant"),
    ],
)
def test_identity_fields_are_immutable(path: Path, field_path: str) -> None:
    node = subschema(openapi_schema(load_crd(path)), field_path)
    rules = [rule["rule"] for rule in node.get("x-kubernetes-validations", [])]
    assert rules == ["self == oldSelf"]
    # A transition rule on an optional field would let a client drop and re-add it.
    parent, _, name = field_path.rpartition(".")
    assert name in subschema(openapi_schema(load_crd(path)), parent)["required"]


@pytest.mark.parametrize("kind", ["Tenant", "Number"])
def test_demo_and_examples_fit_the_crds(
    kind: str, tenant_crd: Document, number_crd: Document
) -> None:
    crd = tenant_crd if kind == "Tenant" else number_crd
    documents = platform_documents(kind)
    assert len(documents) >= 3
    for document in documents:
        name = document["metadata"]["name"]
        assert schema_problems(crd, document) == [], name
        assert model_accepts(document), name


def test_k8s_examples_are_consistent() -> None:
    """Each example Number names an example Tenant and one of its cities."""
    tenants = {
        d["metadata"]["name"]: d
        for path in K8S_EXAMPLES.glob("*.yaml")
        for d in yaml_documents(path)
        if d["kind"] == "Tenant"
    }
    numbers = [
        d
        for path in K8S_EXAMPLES.glob("*.yaml")
        for d in yaml_documents(path)
        if d["kind"] == "Number"
    ]
    assert any(len(t["spec"]["cities"]) == 2 for t in tenants.values())
    assert any(t["spec"].get("suspended") for t in tenants.values())
    assert any(n["spec"].get("label") for n in numbers)
    assert any(n["spec"].get("channels") for n in numbers)
    for number in numbers:
        tenant = tenants[number["spec"]["tenant"]]
        cities = [c["name"] for c in tenant["spec"]["cities"]]
        assert number["spec"]["city"] in cities, number["metadata"]["name"]
    e164s = [n["spec"]["number"] for n in numbers]
    assert len(e164s) == len(set(e164s))


# --- against a real kube-apiserver ------------------------------------------------------


ESTABLISHED_TIMEOUT = "60s"
OPENAPI_PUBLISH_SECONDS = 30.0
# Objects this module creates carry the label, so cleanup finds exactly them.
TEST_LABEL = "vpbx.io/test-suite"
TEST_LABEL_VALUE = "crds"


@pytest.fixture(scope="module")
def kube(kube_api: KubeAPI) -> Iterator[KubeAPI]:
    """The test API with the CRDs installed; objects made by this module removed after."""
    kube_api.kubectl("apply", "-f", str(CRD_DIR))
    kube_api.kubectl(
        "wait",
        "--for=condition=Established",
        f"--timeout={ESTABLISHED_TIMEOUT}",
        "crd/tenants.vpbx.io",
        "crd/numbers.vpbx.io",
    )
    yield kube_api
    kube_api.kubectl(
        "delete", "tenants,numbers", "-l", f"{TEST_LABEL}={TEST_LABEL_VALUE}", "--wait=false"
    )


def _labelled(document: Document, name: str) -> Document:
    labelled = copy.deepcopy(document)
    labelled["metadata"] = {"name": name, "labels": {TEST_LABEL: TEST_LABEL_VALUE}}
    return labelled


def apply(
    kube: KubeAPI, documents: Sequence[Mapping[str, Any]], *options: str
) -> subprocess.CompletedProcess[str]:
    """`kubectl apply` of the documents; the result is returned, failure is not raised."""
    return kube.kubectl(
        "apply", *options, "-f", "-", input=yaml.safe_dump_all(documents), check=False
    )


def assert_applied(result: subprocess.CompletedProcess[str], *objects: str) -> None:
    """Each object is reported applied (created, or configured if another test made it)."""
    for name in objects:
        assert re.search(rf"^{re.escape(name)} \w+ \(server dry run\)$", result.stdout, re.M), name


def dry_run(
    kube: KubeAPI, documents: Sequence[Mapping[str, Any]]
) -> subprocess.CompletedProcess[str]:
    return apply(kube, documents, "--dry-run=server")


@pytest.mark.integration
def test_demo_documents_are_accepted(kube: KubeAPI) -> None:
    documents = [d for d in yaml_documents(DEMO_FILE) if d["kind"] in ("Tenant", "Number")]
    result = dry_run(kube, documents)
    assert result.returncode == 0, result.stderr
    assert len(documents) == 6
    assert_applied(
        result, *(f"{d['kind'].lower()}.vpbx.io/{d['metadata']['name']}" for d in documents)
    )


@pytest.mark.integration
def test_k8s_examples_are_accepted(kube: KubeAPI) -> None:
    result = kube.kubectl("apply", "--dry-run=server", "-f", str(K8S_EXAMPLES), check=False)
    assert result.returncode == 0, result.stderr
    assert_applied(
        result,
        "tenant.vpbx.io/northwind",
        "tenant.vpbx.io/initech",
        "number.vpbx.io/northwind-msk-yandex-direct",
        "number.vpbx.io/initech-ekb-main",
    )


@pytest.mark.integration
def test_server_fills_in_the_defaults(kube: KubeAPI) -> None:
    """A minimal Tenant reads back complete, with the model's defaults."""
    result = apply(kube, [_tenant(cities=[{"name": "msk"}])], "--dry-run=server", "-o", "json")
    assert result.returncode == 0, result.stderr
    spec = json.loads(result.stdout)["spec"]
    assert spec["plan"] == {
        "seats": 0,
        "numbers": 0,
        "concurrentCalls": 0,
        "recordingStorageGiB": 0,
    }
    assert spec["cities"] == [{"name": "msk", "replicas": 1}]
    assert spec["suspended"] is False
    assert spec["recording"] == {"policy": "off"}
    result = apply(kube, [_number()], "--dry-run=server", "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["spec"]["channels"] == 0


# (id, document, the field path kubectl's error must name)
REJECTED_CASES: list[tuple[str, Document, str]] = [
    ("uppercase-city", _tenant(cities=[{"name": "Msk"}]), "spec.cities[0].name"),
    ("duplicate-city", _tenant(cities=[{"name": "msk"}, {"name": "msk"}]), "spec.cities[1]"),
    ("no-cities", _tenant(cities=[]), "spec.cities"),
    ("missing-sip-domain", _tenant(sipDomain=None), "spec.sipDomain"),
    ("uppercase-sip-domain", _tenant(sipDomain="Acme.example"), "spec.sipDomain"),
    ("empty-display-name", _tenant(displayName=""), "spec.displayName"),
    ("zero-replicas", _tenant(cities=[{"name": "msk", "replicas": 0}]), "spec.cities[0].replicas"),
    ("negative-seats", _tenant(plan={"seats": -1}), "spec.plan.seats"),
    ("seats-beyond-limit", _tenant(plan={"seats": 100_001}), "spec.plan.seats"),
    ("unknown-policy", _tenant(recording={"policy": "sometimes"}), "spec.recording.policy"),
    ("misspelt-field", _tenant(sipdomain="x.example"), "spec.sipdomain"),
    ("uppercase-tenant-name", {**_tenant(), "metadata": {"name": "Acme"}}, "metadata.name"),
    (
        "limit-below-request",
        _tenant(
            cities=[
                {
                    "name": "msk",
                    "resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "512Mi"}},
                }
            ]
        ),
        "spec.cities[0].resources",
    ),
    (
        "bad-quantity",
        _tenant(cities=[{"name": "msk", "resources": {"requests": {"cpu": "lots"}}}]),
        "spec.cities[0].resources.requests.cpu",
    ),
    ("number-without-plus", _number(number="74950000001"), "spec.number"),
    ("number-too-short", _number(number="+749500"), "spec.number"),
    ("number-unquoted", _number(number=74950000001), "spec.number"),
    ("negative-channels", _number(channels=-1), "spec.channels"),
    ("uppercase-number-city", _number(city="MSK"), "spec.city"),
    ("uppercase-number-tenant", _number(tenant="Acme"), "spec.tenant"),
    ("empty-label", _number(label=""), "spec.label"),
    ("missing-entry", _number(entry=None), "spec.entry"),
]


@pytest.mark.integration
@pytest.mark.parametrize(
    ("document", "field_path"),
    [(d, f) for _, d, f in REJECTED_CASES],
    ids=[case_id for case_id, _, _ in REJECTED_CASES],
)
def test_invalid_manifest_is_rejected_naming_the_field(
    kube: KubeAPI, document: Document, field_path: str
) -> None:
    result = dry_run(kube, [document])
    assert result.returncode != 0, result.stdout
    assert field_path in result.stderr


@pytest.mark.integration
def test_sip_domain_cannot_change(kube: KubeAPI) -> None:
    tenant = _labelled(_tenant(), "crdtest-immutable-domain")
    created = apply(kube, [tenant])
    assert created.returncode == 0, created.stderr

    moved = copy.deepcopy(tenant)
    moved["spec"]["sipDomain"] = "elsewhere.vpbx.example"
    result = apply(kube, [moved])
    assert result.returncode != 0
    assert "spec.sipDomain" in result.stderr
    assert "immutable" in result.stderr

    # Everything else stays editable: suspension and cities are everyday changes.
    edited = copy.deepcopy(tenant)
    edited["spec"]["suspended"] = True
    edited["spec"]["cities"] = [{"name": "msk"}, {"name": "nsk"}]
    result = apply(kube, [edited])
    assert result.returncode == 0, result.stderr


@pytest.mark.integration
@pytest.mark.parametrize(("field", "new_value"), [("number", "+74950000099"), ("tenant", "globex")])
def test_number_and_its_tenant_cannot_change(kube: KubeAPI, field: str, new_value: str) -> None:
    number = _labelled(_number(), f"crdtest-immutable-{field}")
    created = apply(kube, [number])
    assert created.returncode == 0, created.stderr

    changed = copy.deepcopy(number)
    changed["spec"][field] = new_value
    result = apply(kube, [changed])
    assert result.returncode != 0
    assert f"spec.{field}" in result.stderr
    assert "immutable" in result.stderr

    moved = copy.deepcopy(number)
    moved["spec"]["city"] = "ekb"
    moved["spec"]["label"] = "billboard"
    result = apply(kube, [moved])
    assert result.returncode == 0, result.stderr


def _explain(kube: KubeAPI, field: str) -> str:
    """`kubectl explain`, retried while the API server publishes the CRD's OpenAPI."""
    deadline = time.monotonic() + OPENAPI_PUBLISH_SECONDS
    while True:
        result = kube.kubectl("explain", field, check=False)
        if result.returncode == 0 or time.monotonic() > deadline:
            assert result.returncode == 0, result.stderr
            return str(result.stdout)
        time.sleep(0.5)


@pytest.mark.integration
def test_explain_teaches_the_plan(kube: KubeAPI) -> None:
    text = " ".join(_explain(kube, "tenant.spec.plan").split())
    assert "KIND: Tenant" in text
    assert "The commercial limits the tenant pays for" in text
    for field in ("seats", "concurrentCalls", "recordingStorageGiB"):
        assert field in text
    assert "0 means unlimited" in text
    number_text = " ".join(_explain(kube, "number.spec.number").split())
    assert "E.164" in number_text


def _columns(header: str) -> list[str]:
    return header.split()


@pytest.mark.integration
def test_printer_columns_show_spec_and_status(kube: KubeAPI) -> None:
    tenant = _labelled(_tenant(), "crdtest-columns")
    number = _labelled(_number(tenant="crdtest-columns", label="yandex-direct"), "crdtest-columns")
    result = apply(kube, [tenant, number])
    assert result.returncode == 0, result.stderr
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "NodesReady",
        "message": "media nodes ready in 2 cities",
        "observedGeneration": 1,
        "lastTransitionTime": now,
    }
    kube.kubectl(
        "patch", "tenant", "crdtest-columns", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"numbers": 1, "cityNames": "msk,ekb", "conditions": [ready]}}),
    )  # fmt: skip
    routed = {**ready, "reason": "Routed", "message": "routed to crdtest-columns-msk"}
    kube.kubectl(
        "patch", "number", "crdtest-columns", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"node": "crdtest-columns-msk", "conditions": [routed]}}),
    )  # fmt: skip

    header, row = kube.kubectl(
        "get", "tenants", "crdtest-columns", "-o", "wide"
    ).stdout.splitlines()
    assert _columns(header) == [
        "NAME", "CITIES", "NUMBERS", "READY", "SUSPENDED", "AGE", "DOMAIN", "REASON",
    ]  # fmt: skip
    values = _columns(row)
    assert values[:5] == ["crdtest-columns", "msk,ekb", "1", "True", "false"]
    assert values[-2:] == ["acme.vpbx.example", "NodesReady"]

    header, row = kube.kubectl("get", "vn", "crdtest-columns", "-o", "wide").stdout.splitlines()
    assert _columns(header) == [
        "NAME", "NUMBER", "TENANT", "CITY", "CHANNELS", "LABEL", "READY", "AGE",
        "ENTRY", "NODE", "REASON",
    ]  # fmt: skip
    values = _columns(row)
    assert values[:7] == [
        "crdtest-columns", "+74950000001", "crdtest-columns", "msk", "0", "yandex-direct", "True",
    ]  # fmt: skip
    assert values[-3:] == ["sales", "crdtest-columns-msk", "Routed"]


@pytest.mark.integration
def test_status_is_validated_too(kube: KubeAPI) -> None:
    """An operator bug writing a malformed condition is refused, not stored."""
    tenant = _labelled(_tenant(), "crdtest-bad-status")
    assert apply(kube, [tenant]).returncode == 0
    result = kube.kubectl(
        "patch", "tenant", "crdtest-bad-status", "--subresource=status", "--type=merge",
        "-p", json.dumps({"status": {"conditions": [{"type": "Ready", "status": "yes"}]}}),
        check=False,
    )  # fmt: skip
    assert result.returncode != 0
    assert "status.conditions[0].status" in result.stderr


@pytest.mark.integration
def test_short_names_and_category(kube: KubeAPI) -> None:
    tenant = _labelled(_tenant(), "crdtest-names")
    assert apply(kube, [tenant]).returncode == 0
    for resource in ("vt", "tenant", "tenants.vpbx.io"):
        names = kube.kubectl("get", resource, "-o", "name").stdout.split()
        assert "tenant.vpbx.io/crdtest-names" in names, resource
    names = kube.kubectl("get", "vpbx", "-o", "name").stdout.split()
    assert "tenant.vpbx.io/crdtest-names" in names
