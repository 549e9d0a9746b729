"""The Helm chart (charts/vpbx), its images and the skaffold dev loop.

helm and kubeconform are built from their Go modules by
scripts/build-go-tools.sh (cached; the first build takes minutes), so the tests
that run them are integration tests. kubeconform validates against JSON
schemas derived from the OpenAPI document of the real test kube-apiserver
(`kube_api`), since the machine cannot fetch kubeconform's published schemas;
the same rendered manifests also go through a server-side dry run there.
"""

from __future__ import annotations

import base64
import copy
import http.client
import json
import re
import shlex
import shutil
import ssl
import subprocess
import tempfile
import tomllib
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml

from tests.services.kube import KubeAPI
from vpbx_common.manifests import parse_platform_yaml

REPO = Path(__file__).resolve().parents[1]
CHART = REPO / "charts" / "vpbx"
FIXTURES = REPO / "tests" / "fixtures" / "chart"
FULL_VALUES = FIXTURES / "values-full.yaml"
PROMETHEUS_OPERATOR_KINDS = frozenset({"ServiceMonitor", "PodMonitor", "PrometheusRule"})
BUILD_GO_TOOLS = REPO / "scripts" / "build-go-tools.sh"
SYNC_CRDS = REPO / "scripts" / "sync-chart-crds.sh"
# A cold build of helm and kubeconform takes several minutes on two cores.
GO_TOOLS_BUILD_TIMEOUT = 30 * 60
COMMAND_TIMEOUT = 120
RELEASE = "vpbx"
NAMESPACE = "telephony"
# The one value an install has to give: the control API (on by default) keeps
# its data in PostgreSQL, whose URL comes from an existing Secret.
DATABASE_SECRET = "postgresql.urlSecret.name=vpbx-postgresql"
LOCAL_VALUES = CHART / "values-local.yaml"
# One platform trunk in the values (`trunks`).
TRUNK = ["trunks[0].name=main", "trunks[0].uri=sip:sip.carrier.example:5060;transport=udp"]

Manifest = dict[str, Any]

TestFunction = TypeVar("TestFunction", bound=Callable[..., object])


def integration(test: TestFunction) -> TestFunction:
    """Needs the Go tools; the first such test may have to build them (minutes)."""
    marked: TestFunction = pytest.mark.integration(
        pytest.mark.timeout(GO_TOOLS_BUILD_TIMEOUT + 300)(test)
    )
    return marked


@dataclass(frozen=True)
class GoTools:
    helm: Path
    kubeconform: Path


@pytest.fixture(scope="session")
def go_tools() -> GoTools:
    completed = subprocess.run(
        ["bash", str(BUILD_GO_TOOLS)],
        capture_output=True,
        text=True,
        timeout=GO_TOOLS_BUILD_TIMEOUT,
        check=False,
    )
    if completed.returncode != 0:
        pytest.fail(f"{BUILD_GO_TOOLS} failed:\n{completed.stderr}")
    bin_dir = Path(completed.stdout.strip().splitlines()[-1])
    return GoTools(helm=bin_dir / "helm", kubeconform=bin_dir / "kubeconform")


def run(command: Sequence[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
        **kwargs,
    )


def helm_template(
    tools: GoTools,
    *,
    values: Sequence[Path] = (),
    settings: Sequence[str] = (),
    include_crds: bool = False,
    namespace: str = NAMESPACE,
    release: str = RELEASE,
    database: bool = True,
) -> subprocess.CompletedProcess[str]:
    """`helm template`; without values files, `database` names the PostgreSQL Secret."""
    command: list[str | Path] = [tools.helm, "template", release, CHART, "--namespace", namespace]
    for path in values:
        command += ["--values", path]
    if database and not values:
        command += ["--set", DATABASE_SECRET]
    for setting in settings:
        command += ["--set", setting]
    if include_crds:
        command.append("--include-crds")
    return run(command)


def render(
    tools: GoTools,
    *,
    values: Sequence[Path] = (),
    settings: Sequence[str] = (),
    include_crds: bool = False,
    namespace: str = NAMESPACE,
    release: str = RELEASE,
    database: bool = True,
) -> list[Manifest]:
    completed = helm_template(
        tools,
        values=values,
        settings=settings,
        include_crds=include_crds,
        namespace=namespace,
        release=release,
        database=database,
    )
    assert completed.returncode == 0, completed.stderr
    return [doc for doc in yaml.safe_load_all(completed.stdout) if doc]


def by_kind(manifests: Sequence[Manifest], kind: str) -> dict[str, Manifest]:
    return {doc["metadata"]["name"]: doc for doc in manifests if doc["kind"] == kind}


def workloads(manifests: Sequence[Manifest]) -> list[Manifest]:
    return [doc for doc in manifests if doc["kind"] in ("Deployment", "DaemonSet")]


def media_node_template(manifests: Sequence[Manifest]) -> dict[str, Any]:
    (config_map,) = [
        doc
        for doc in manifests
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"].endswith("-media-node")
    ]
    template: dict[str, Any] = json.loads(config_map["data"]["media-node.json"])
    return template


def pod_specs(manifests: Sequence[Manifest]) -> dict[str, dict[str, Any]]:
    """Every pod spec the release creates, the operator's media-node template included."""
    specs = {
        doc["metadata"]["name"]: doc["spec"]["template"]["spec"] for doc in workloads(manifests)
    }
    template = media_node_template(manifests)
    specs["media-node (operator template)"] = {
        **template["pod"],
        "containers": [template["container"]],
    }
    return specs


def env_of(container: Mapping[str, Any]) -> dict[str, Any]:
    return {entry["name"]: entry for entry in container.get("env", [])}


def secret_ref(env: Mapping[str, Any], name: str) -> tuple[str, str]:
    """(Secret name, key) an environment variable is read from."""
    reference = env[name]["valueFrom"]["secretKeyRef"]
    return reference["name"], reference["key"]


def control_api_container(manifests: Sequence[Manifest]) -> dict[str, Any]:
    pod = by_kind(manifests, "Deployment")[f"{RELEASE}-control-api"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    result: dict[str, Any] = container
    return result


def selects(selector: Mapping[str, Any], labels: Mapping[str, str]) -> bool:
    """Whether a label selector with matchLabels only matches these labels."""
    assert set(selector) <= {"matchLabels"}, "these policies select by matchLabels only"
    match: Mapping[str, str] = selector.get("matchLabels", {})
    return match.items() <= labels.items()


@pytest.fixture(scope="module")
def default_manifests(go_tools: GoTools) -> list[Manifest]:
    return render(go_tools)


@pytest.fixture(scope="module")
def full_manifests(go_tools: GoTools) -> list[Manifest]:
    return render(go_tools, values=[FULL_VALUES])


# --- sources that need no tools ---------------------------------------------


def test_chart_crds_are_copies_of_the_crds() -> None:
    sources = {path.name: path.read_bytes() for path in (REPO / "crds").glob("*.yaml")}
    copies = {path.name: path.read_bytes() for path in (CHART / "crds").glob("*.yaml")}
    assert sources, "crds/ holds no CRD"
    assert copies == sources, "charts/vpbx/crds is stale: run scripts/sync-chart-crds.sh"
    assert run(["bash", SYNC_CRDS, "--check"]).returncode == 0


def _workspace_packages() -> set[str]:
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    members = root["tool"]["uv"]["workspace"]["members"]
    return {
        tomllib.loads((REPO / member / "pyproject.toml").read_text())["project"]["name"]
        for member in members
    }


def _dockerfile_lines(path: Path) -> list[str]:
    """Instructions with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n\s*", " ", path.read_text())
    return [
        line.strip()
        for line in joined.splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


DOCKERFILES = sorted((REPO / "docker").glob("Dockerfile.*"))


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_dockerfile_is_multi_stage_non_root_and_syncs_a_workspace_package(
    dockerfile: Path,
) -> None:
    lines = _dockerfile_lines(dockerfile)
    stages = [line for line in lines if line.startswith("FROM ")]
    assert len(stages) >= 2, "the image must be multi-stage"
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users, "the runtime stage must switch to a user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "USER must be numeric so Kubernetes can check runAsNonRoot"
    assert int(uid) != 0, "USER must not be root"
    syncs = [line for line in lines if "uv sync" in line]
    assert syncs
    assert all("--frozen" in line and "--no-dev" in line for line in syncs)
    packages = {
        word
        for line in syncs
        for flag, word in zip(shlex.split(line), shlex.split(line)[1:], strict=False)
        if flag == "--package"
    }
    assert packages, "uv sync must name the package(s) of the image"
    assert packages <= _workspace_packages()


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda path: path.name)
def test_dockerfile_copies_enough_for_uv_to_install_from_the_lock(
    dockerfile: Path, tmp_path: Path
) -> None:
    """Replays the builder stage's COPY and `uv sync` lines (as a dry run) in a bare tree.

    Catches a Dockerfile that leaves out the lock file, the workspace root or
    the metadata of the package it installs: uv --frozen then refuses, as it
    would inside `docker build`. uv does not notice other missing members in a
    dry run, so the sources of every member are checked to be copied too.
    """
    if shutil.which("uv") is None:
        pytest.skip("uv is not on PATH")
    lines = _dockerfile_lines(dockerfile)
    stage_starts = [i for i, line in enumerate(lines) if line.startswith("FROM ")]
    builder = lines[stage_starts[0] : stage_starts[1]]
    context = tmp_path / "src"
    context.mkdir()
    synced = 0
    for line in builder:
        words = shlex.split(line)
        if words[0] == "COPY" and not any(word.startswith("--from") for word in words):
            *sources, target = words[1:]
            for source in sources:
                origin = REPO / source
                assert origin.exists(), f"{dockerfile.name}: COPY source {source} does not exist"
                destination = context / target
                if origin.is_dir():
                    shutil.copytree(origin, context / target, dirs_exist_ok=True)
                else:
                    if target.endswith("/"):
                        destination.mkdir(parents=True, exist_ok=True)
                        destination = destination / origin.name
                    shutil.copy2(origin, destination)
        if words[0] == "RUN" and "uv sync" in line:
            command = shlex.split(line.removeprefix("RUN "))
            completed = run(
                [*command, "--dry-run", "--offline"],
                cwd=context,
                env={
                    "PATH": str(Path(shutil.which("uv") or "uv").parent) + ":/usr/bin:/bin",
                    "HOME": str(tmp_path),
                    "UV_PYTHON_DOWNLOADS": "never",
                    "UV_PROJECT_ENVIRONMENT": str(tmp_path / "venv"),
                    "UV_CACHE_DIR": str(_uv_cache_dir()),
                },
            )
            assert completed.returncode == 0, f"{line}\n{completed.stderr}"
            synced += 1
    assert synced == 2, "the builder must sync dependencies first, then the workspace"
    root = tomllib.loads((REPO / "pyproject.toml").read_text())
    for member in root["tool"]["uv"]["workspace"]["members"]:
        for needed in ("pyproject.toml", "src"):
            assert (context / member / needed).exists(), f"{member}/{needed} is not copied"


def _uv_cache_dir() -> Path:
    completed = run(["uv", "cache", "dir"])
    assert completed.returncode == 0, completed.stderr
    return Path(completed.stdout.strip())


def _has_path(values: Mapping[str, Any], dotted: str) -> bool:
    node: Any = values
    for part in dotted.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return False
        node = node[part]
    return True


def test_skaffold_builds_every_image_and_feeds_them_to_the_chart() -> None:
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    artifacts = config["build"]["artifacts"]
    assert {Path(a["docker"]["dockerfile"]).name for a in artifacts} == {
        path.name for path in DOCKERFILES
    }
    (release,) = config["deploy"]["helm"]["releases"]
    assert (REPO / release["chartPath"] / "Chart.yaml").exists()
    templates = release["setValueTemplates"]
    for artifact in artifacts:
        # Skaffold names the template variables after the image, non-alphanumerics as "_".
        key = re.sub(r"[^A-Za-z0-9]", "_", artifact["image"])
        assert any(f".IMAGE_REPO_{key}}}" in value for value in templates.values()), key
    for dotted in templates:
        assert _has_path(values, dotted), f"skaffold sets {dotted}, which values.yaml lacks"
    (local,) = [profile for profile in config["profiles"] if profile["name"] == "local"]
    set_values = next(
        patch["value"] for patch in local["patches"] if patch["path"].endswith("/setValues")
    )
    assert set_values["edge.hostNetwork"] is False
    for dotted in set_values:
        assert _has_path(values, dotted), f"the local profile sets unknown value {dotted}"


# --- helm lint and template ---------------------------------------------------


@integration
@pytest.mark.parametrize(
    ("values", "settings"),
    [((), (DATABASE_SECRET,)), ((FULL_VALUES,), ()), ((LOCAL_VALUES,), ())],
    ids=["default", "full", "local"],
)
def test_helm_lint(go_tools: GoTools, values: tuple[Path, ...], settings: tuple[str, ...]) -> None:
    command: list[str | Path] = [go_tools.helm, "lint", "--strict", CHART]
    for path in values:
        command += ["--values", path]
    for setting in settings:
        command += ["--set", setting]
    completed = run(command)
    assert completed.returncode == 0, completed.stdout + completed.stderr


@integration
def test_default_render_runs_the_operator_and_the_control_api(
    default_manifests: list[Manifest],
) -> None:
    deployments = by_kind(default_manifests, "Deployment")
    assert set(deployments) == {f"{RELEASE}-operator", f"{RELEASE}-control-api"}
    operator = deployments[f"{RELEASE}-operator"]
    assert operator["spec"]["replicas"] == 1
    assert operator["spec"]["strategy"]["type"] == "Recreate"
    (container,) = operator["spec"]["template"]["spec"]["containers"]
    assert container["command"] == ["vpbx", "operator"]
    assert container["image"] == "vpbx/operator:0.1.0"
    assert control_api_container(default_manifests)["image"] == "vpbx/control-api:0.1.0"
    # No values given for secrets: the chart generates the signing secrets and tokens.
    (secret,) = by_kind(default_manifests, "Secret").values()
    assert secret["metadata"]["name"] == f"{RELEASE}-signing"
    assert set(secret["data"]) == {
        "edge-secret",
        "nonce-secret",
        "platform-admin-token",
        "service-token",
        "token-secret",
    }
    values = [base64.b64decode(value) for value in secret["data"].values()]
    assert len(set(values)) == len(values), "every secret is generated on its own"
    assert all(len(value) >= 32 for value in values)
    assert not by_kind(default_manifests, "ServiceMonitor")


@integration
def test_full_render_has_every_component_with_secrets_from_existing_secrets(
    full_manifests: list[Manifest],
) -> None:
    deployments = by_kind(full_manifests, "Deployment")
    assert set(deployments) == {
        f"{RELEASE}-operator",
        f"{RELEASE}-edge-msk",
        f"{RELEASE}-edge-ekb",
        f"{RELEASE}-control-api",
        f"{RELEASE}-crm",
    }
    assert not by_kind(full_manifests, "Secret"), "existing Secrets were given; none is made"
    control_api = deployments[f"{RELEASE}-control-api"]["spec"]["template"]["spec"]
    (container,) = control_api["containers"]
    assert container["command"] == ["vpbx", "control-api"]
    assert container["image"] == "registry.example.com/vpbx/control-api:1.2.3"
    env = env_of(container)
    for name, secret in [
        ("VPBX_DATABASE_URL", "vpbx-connections"),
        ("VPBX_REDIS_URL", "vpbx-connections"),
        ("VPBX_CLICKHOUSE_URL", "vpbx-connections"),
        ("VPBX_S3_ACCESS_KEY", "vpbx-s3"),
        ("VPBX_S3_SECRET_KEY", "vpbx-s3"),
    ]:
        assert env[name]["valueFrom"]["secretKeyRef"]["name"] == secret
    shared = by_kind(full_manifests, "ConfigMap")[f"{RELEASE}-config"]["data"]
    assert "VPBX_REDIS_URL" not in shared
    assert shared["VPBX_STORAGE_URL"] == "s3://vpbx-recordings"
    assert shared["VPBX_S3_ENDPOINT"] == "https://s3.example.com"
    assert shared["VPBX_S3_REGION"] == "eu-central-1"
    # The CRM logs people in through the control API; the nodes ask it who is calling.
    crm = deployments[f"{RELEASE}-crm"]["spec"]["template"]["spec"]
    (crm_container,) = crm["containers"]
    assert crm_container["command"] == ["vpbx", "crm"]
    crm_env = env_of(crm_container)
    assert crm_env["VPBX_CONTROL_URL"]["value"] == (
        f"http://{RELEASE}-control-api.{NAMESPACE}.svc:8000"
    )
    assert crm_env["VPBX_SERVICE_TOKEN"]["valueFrom"]["secretKeyRef"]["key"]
    # Deal events go to the ClickHouse the nodes write CDRs to (the channels and managers
    # reports); the CRM never gets a chdb dir of its own that no report reads.
    assert crm_env["VPBX_CLICKHOUSE_URL"]["valueFrom"]["secretKeyRef"]["name"] == (
        "vpbx-connections"
    )
    assert "VPBX_CHDB_PATH" not in crm_env
    assert crm_container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    # The workspace in the browser logs in at the API's public address, from its own origin.
    assert crm_env["VPBX_CONTROL_PUBLIC_URL"]["value"] == "https://api.pbx.example.com"
    assert json.loads(env["VPBX_CORS_ORIGINS"]["value"]) == ["https://crm.pbx.example.com"]
    node_env = env_of(media_node_template(full_manifests)["container"])
    assert node_env["VPBX_CRM_URL"]["value"] == f"http://{RELEASE}-crm.{NAMESPACE}.svc:8000"
    pdbs = by_kind(full_manifests, "PodDisruptionBudget")
    assert set(pdbs) == {
        f"{RELEASE}-edge-msk",
        f"{RELEASE}-edge-ekb",
        f"{RELEASE}-control-api",
        f"{RELEASE}-crm",
    }


# --- values.schema.json and template-time checks -----------------------------


@integration
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["edge.hostNetwork=yes"], "at '/edge/hostNetwork': got string, want boolean"),
        (["edge.replicas=-1"], "at '/edge/replicas': minimum: got -1, want 0"),
        (["controlApi.replicas=-3"], "at '/controlApi/replicas': minimum: got -3, want 0"),
        (["redis.url="], "at '/redis/url': minLength: got 0, want 1"),
        (["edge.kind=StatefulSet"], "at '/edge/kind'"),
        (["edge.cities[0].name=msk"], "at '/edge/cities/0': missing property 'publicAddress'"),
        (
            ["edge.cities[0].name=Moscow City", "edge.cities[0].publicAddress=x"],
            "/edge/cities/0/name",
        ),
        (["recordings.backend=s3"], "/recordings/s3"),
        (["recordings.backend=pvc"], "at '/recordings/pvc/existingClaim'"),
        (["containerSecurityContext.privileged=true"], "/containerSecurityContext/privileged"),
        (
            ["containerSecurityContext.allowPrivilegeEscalation=true"],
            "/containerSecurityContext/allowPrivilegeEscalation",
        ),
        (["mediaNode.drain.terminationGracePeriodSeconds=0"], "terminationGracePeriodSeconds"),
        (["edgee.replicas=1"], "additional properties 'edgee' not allowed"),
        (
            ["mediaNode.drain.terminationGracePeriodSeconds=12"],
            "mediaNode.drain.terminationGracePeriodSeconds (12) leaves no time to drain calls",
        ),
        (
            ["mediaNode.drain.drainTimeoutSeconds=600"],
            "mediaNode.drain.drainTimeoutSeconds (600) must be less than",
        ),
        (
            ["mediaNode.rtpPortMin=30000", "mediaNode.rtpPortMax=29999"],
            "mediaNode.rtpPortMin..rtpPortMax (30000-29999) must hold at least 4 ports",
        ),
        (["trunks[0].name=main", "trunks[0].uri=http://x"], "at '/trunks/0/uri'"),
        (["trunks[0].name=Main", "trunks[0].uri=sip:x"], "at '/trunks/0/name'"),
        (["trunks[0].name=main", "trunks[0].uri=sip:x", "trunks[0].colour=red"], "colour"),
        (
            ["trunks[0].name=main", "trunks[0].uri=sip:x", "trunks[0].register=true"],
            "trunks[0] (main): register: true needs username and password",
        ),
        (
            [*TRUNK, "trunks[1].name=main", "trunks[1].uri=sip:y"],
            'trunks[1]: the name "main" is used twice',
        ),
        ([*TRUNK, "trunksSecret.name=carriers"], "set either trunks or trunksSecret.name"),
    ],
)
def test_bad_values_fail_with_a_message_naming_the_value(
    go_tools: GoTools, settings: list[str], message: str
) -> None:
    completed = helm_template(go_tools, settings=settings)
    assert completed.returncode != 0
    assert message in completed.stderr


@integration
@pytest.mark.parametrize(
    ("settings", "component"),
    [([], "controlApi"), (["controlApi.enabled=false", "crm.enabled=true"], "crm")],
    ids=["control-api", "crm"],
)
def test_a_component_on_without_a_database_secret_fails_saying_how_to_fix_it(
    go_tools: GoTools, settings: list[str], component: str
) -> None:
    completed = helm_template(go_tools, settings=settings, database=False)
    assert completed.returncode != 0
    assert f"{component}.enabled needs PostgreSQL" in completed.stderr
    assert 'under the key "postgresql-url" and set postgresql.urlSecret.name' in completed.stderr
    assert f"or set {component}.enabled=false" in completed.stderr


@integration
def test_without_the_control_api_no_database_is_needed_and_nodes_are_not_pointed_at_it(
    go_tools: GoTools,
) -> None:
    manifests = render(go_tools, settings=["controlApi.enabled=false"], database=False)
    assert set(by_kind(manifests, "Deployment")) == {f"{RELEASE}-operator"}
    assert [doc for doc in manifests if "control-api" in doc["metadata"]["name"]] == []
    env = env_of(media_node_template(manifests)["container"])
    assert "VPBX_CONFIG_URL" not in env
    assert "VPBX_SERVICE_TOKEN" not in env


# --- rendered objects ----------------------------------------------------------


PLATFORM_TRUNKS = [
    "trunks[0].name=main-carrier",
    "trunks[0].uri=sip:sip.carrier.example",
    "trunks[0].register=true",
    "trunks[0].username=operator",
    "trunks[0].password=carrier-password",
    "trunks[0].priority=10",
    "trunks[1].name=backup-carrier",
    "trunks[1].uri=sip:198.51.100.20:5060;transport=tcp",
    "trunks[1].allowedAddresses[0]=198.51.100.0/24",
    "trunks[1].passesCallerId=true",
]


def _trunks_volume(
    manifests: Sequence[Manifest], component: str = "control-api"
) -> tuple[str, str, Manifest]:
    """(VPBX_PLATFORM_TRUNKS_FILE, the Secret mounted there, the component's pod): the
    control API (the trunks go into node configs) or the operator (their networks go
    into the edge routing table)."""
    deployment = by_kind(manifests, "Deployment")[f"{RELEASE}-{component}"]
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    path = env_of(container)["VPBX_PLATFORM_TRUNKS_FILE"]["value"]
    [mount] = [m for m in container["volumeMounts"] if path.startswith(m["mountPath"] + "/")]
    assert mount["readOnly"] is True
    assert "subPath" not in mount, "a subPath mount would never see the Secret change"
    [volume] = [v for v in pod["spec"]["volumes"] if v["name"] == mount["name"]]
    return path, volume["secret"]["secretName"], pod


@integration
def test_platform_trunks_reach_the_control_api_from_a_secret(
    go_tools: GoTools, default_manifests: list[Manifest], full_manifests: list[Manifest]
) -> None:
    assert "VPBX_PLATFORM_TRUNKS_FILE" not in env_of(control_api_container(default_manifests))
    assert f"{RELEASE}-trunks" not in by_kind(default_manifests, "Secret")

    manifests = render(go_tools, settings=PLATFORM_TRUNKS)
    path, secret_name, pod = _trunks_volume(manifests)
    assert (path, secret_name) == ("/etc/vpbx/trunks/trunks.yaml", f"{RELEASE}-trunks")
    secret = by_kind(manifests, "Secret")[secret_name]
    text = base64.b64decode(secret["data"]["trunks.yaml"]).decode()
    # What the control API reads: Trunk manifests, as the platform file has them.
    platform = parse_platform_yaml(text)
    assert (platform.tenants, platform.numbers, platform.configs) == ([], [], [])
    main, backup = platform.trunks
    assert (main.name, main.spec.registers, main.spec.username, main.spec.priority) == (
        "main-carrier",
        True,
        "operator",
        10,
    )
    assert main.spec.password is not None
    assert main.spec.password.get_secret_value() == "carrier-password"
    assert (backup.name, backup.spec.uri, backup.spec.passes_caller_id) == (
        "backup-carrier",
        "sip:198.51.100.20:5060;transport=tcp",
        True,
    )
    assert backup.spec.allowed_addresses == ["198.51.100.0/24"]
    # The pods roll when the trunks change, and only then.
    again = _trunks_volume(render(go_tools, settings=PLATFORM_TRUNKS))[2]
    assert again["metadata"]["annotations"] == pod["metadata"]["annotations"]
    changed = _trunks_volume(render(go_tools, settings=[*PLATFORM_TRUNKS, "trunks[0].priority=5"]))
    annotations = changed[2]["metadata"]["annotations"]
    assert annotations["checksum/trunks"] != pod["metadata"]["annotations"]["checksum/trunks"]
    assert annotations["checksum/config"] == pod["metadata"]["annotations"]["checksum/config"]
    # The operator reads the same file: it writes where the carriers call from into the
    # edge routing table. It rolls with the trunks too.
    operator = _trunks_volume(manifests, "operator")
    assert operator[:2] == ("/etc/vpbx/trunks/trunks.yaml", f"{RELEASE}-trunks")
    changed_operator = _trunks_volume(
        render(go_tools, settings=[*PLATFORM_TRUNKS, "trunks[0].priority=5"]), "operator"
    )
    assert (
        changed_operator[2]["metadata"]["annotations"]["checksum/trunks"]
        != operator[2]["metadata"]["annotations"]["checksum/trunks"]
    )
    assert "VPBX_PLATFORM_TRUNKS_FILE" not in env_of(
        by_kind(default_manifests, "Deployment")[f"{RELEASE}-operator"]["spec"]["template"]["spec"][
            "containers"
        ][0]
    )

    # An existing Secret: mounted as it is, its key the file; the chart makes none.
    for component in ("control-api", "operator"):
        path, secret_name, pod = _trunks_volume(full_manifests, component)
        assert (path, secret_name) == ("/etc/vpbx/trunks/carriers.yaml", "vpbx-carriers")
        assert "checksum/trunks" not in pod["metadata"]["annotations"]


@integration
@pytest.mark.parametrize("which", ["default", "full"])
def test_every_container_has_readiness_and_liveness_probes(
    which: str, default_manifests: list[Manifest], full_manifests: list[Manifest]
) -> None:
    manifests = default_manifests if which == "default" else full_manifests
    for name, spec in pod_specs(manifests).items():
        for container in spec["containers"] + spec.get("initContainers", []):
            for probe in ("readinessProbe", "livenessProbe"):
                assert probe in container, f"{name}/{container['name']} has no {probe}"
                handler = {"httpGet", "tcpSocket", "exec", "grpc"} & set(container[probe])
                assert handler, f"{name}/{container['name']} {probe} has no handler"


@integration
@pytest.mark.parametrize("which", ["default", "full"])
def test_no_container_is_privileged_or_runs_as_root(
    which: str, default_manifests: list[Manifest], full_manifests: list[Manifest]
) -> None:
    manifests = default_manifests if which == "default" else full_manifests
    for name, spec in pod_specs(manifests).items():
        assert not spec.get("hostPID"), name
        assert not spec.get("hostIPC"), name
        pod_security = spec.get("securityContext", {})
        for container in spec["containers"]:
            security = container.get("securityContext", {})
            where = f"{name}/{container['name']}"
            assert security.get("privileged", False) is False, where
            assert security.get("allowPrivilegeEscalation") is False, where
            assert security.get("readOnlyRootFilesystem") is True, where
            assert security.get("capabilities", {}).get("drop") == ["ALL"], where
            assert not security.get("capabilities", {}).get("add"), where
            run_as_non_root = security.get("runAsNonRoot", pod_security.get("runAsNonRoot"))
            assert run_as_non_root is True, where
            assert security.get("runAsUser", pod_security.get("runAsUser")) != 0, where


@integration
def test_media_nodes_get_grace_period_prestop_and_drain_timeout_from_values(
    default_manifests: list[Manifest], full_manifests: list[Manifest]
) -> None:
    for manifests, grace, sleep, drain in [
        (default_manifests, 600, "5", "585"),
        (full_manifests, 1800, "10", "1700"),
    ]:
        template = media_node_template(manifests)
        assert template["pod"]["terminationGracePeriodSeconds"] == grace
        container = template["container"]
        assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", sleep]
        assert env_of(container)["VPBX_DRAIN_TIMEOUT"]["value"] == drain
        # The drain (after the preStop sleep) must end before the kubelet's SIGKILL.
        assert int(sleep) + int(drain) < grace
        # The WebRTC workers are counted by the chart: os.cpu_count() in a pod would be
        # the host's CPUs, and each worker is a process of its own.
        assert env_of(container)["VPBX_WEBRTC_WORKERS"]["value"] == "1"
    full = media_node_template(full_manifests)
    assert full["pod"]["hostNetwork"] is True
    assert full["pod"]["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert full["container"]["image"] == "registry.example.com/vpbx/media-node:1.2.3"
    assert full["cityLabel"] == "vpbx.io/city"
    assert full["labels"]["app.kubernetes.io/component"] == "media-node"


@integration
@pytest.mark.parametrize("which", ["default", "full"])
def test_control_api_runs_in_cluster_mode_with_its_secrets_and_own_service_account(
    which: str, default_manifests: list[Manifest], full_manifests: list[Manifest]
) -> None:
    if which == "default":
        manifests, tokens, database = default_manifests, f"{RELEASE}-signing", "vpbx-postgresql"
    else:
        manifests, tokens, database = full_manifests, "vpbx-signing", "vpbx-connections"
    name = f"{RELEASE}-control-api"
    deployment = by_kind(manifests, "Deployment")[name]
    pod = deployment["spec"]["template"]["spec"]
    # The Kubernetes number store talks to the API server with the pod's own token.
    assert pod["serviceAccountName"] == name
    assert pod["automountServiceAccountToken"] is True
    assert by_kind(manifests, "ServiceAccount")[name]["automountServiceAccountToken"] is True
    container = control_api_container(manifests)
    assert container["command"] == ["vpbx", "control-api"]
    env = env_of(container)
    assert env["VPBX_HTTP_HOST"]["value"] == "0.0.0.0"
    assert env["VPBX_HTTP_PORT"]["value"] == str(container["ports"][0]["containerPort"])
    assert env["VPBX_NUMBER_STORE"]["value"] == "kubernetes"
    assert env["VPBX_KUBE_NAMESPACE"]["valueFrom"] == {
        "fieldRef": {"fieldPath": "metadata.namespace"}
    }
    assert secret_ref(env, "VPBX_DATABASE_URL") == (database, "postgresql-url")
    assert secret_ref(env, "VPBX_PLATFORM_ADMIN_TOKEN") == (tokens, "platform-admin-token")
    assert secret_ref(env, "VPBX_SERVICE_TOKEN") == (tokens, "service-token")
    assert secret_ref(env, "VPBX_TOKEN_SECRET") == (tokens, "token-secret")
    # Not local mode: the API refuses to start with development-default secrets.
    shared = by_kind(manifests, "ConfigMap")[f"{RELEASE}-config"]["data"]
    assert shared["VPBX_MODE"] == "cluster"
    assert [ref["configMapRef"]["name"] for ref in container["envFrom"]] == [f"{RELEASE}-config"]
    if which == "default":
        assert shared["VPBX_REDIS_URL"] == "redis://redis:6379/0"
    else:
        assert secret_ref(env, "VPBX_REDIS_URL") == ("vpbx-connections", "redis-url")
    # Ready only with the database and Redis reachable; migrations may take a while.
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    startup = container["startupProbe"]
    assert startup["httpGet"] == {"path": "/healthz", "port": "http"}
    assert startup["periodSeconds"] * startup["failureThreshold"] == 300
    service = by_kind(manifests, "Service")[name]
    assert service["spec"]["ports"] == [
        {"name": "http", "port": 8000, "targetPort": "http", "protocol": "TCP"}
    ]
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert selects({"matchLabels": service["spec"]["selector"]}, pod_labels)
    assert f"{RELEASE}-control-api" in by_kind(manifests, "PodDisruptionBudget")


@integration
def test_control_api_reads_calls_from_the_clickhouse_the_nodes_write_to(
    go_tools: GoTools, default_manifests: list[Manifest]
) -> None:
    url = "clickhouse://clickhouse.db.svc:9000/vpbx"
    manifests = render(go_tools, settings=[f"clickhouse.url={url}"])
    shared = by_kind(manifests, "ConfigMap")[f"{RELEASE}-config"]["data"]
    assert shared["VPBX_CLICKHOUSE_URL"] == url
    container = control_api_container(manifests)
    assert f"{RELEASE}-config" in [ref["configMapRef"]["name"] for ref in container["envFrom"]]
    assert "VPBX_CLICKHOUSE_URL" not in env_of(container)  # nothing overrides the shared one
    # The media nodes the operator starts get the same shared settings.
    node = media_node_template(manifests)["container"]
    assert f"{RELEASE}-config" in [ref["configMapRef"]["name"] for ref in node["envFrom"]]
    # Without ClickHouse the API gets no chdb dir of its own: /v1/calls answers 503 rather
    # than an empty list from a store no node writes to.
    default_shared = by_kind(default_manifests, "ConfigMap")[f"{RELEASE}-config"]["data"]
    assert "VPBX_CLICKHOUSE_URL" not in default_shared
    assert "VPBX_CHDB_PATH" not in env_of(control_api_container(default_manifests))


@integration
def test_every_reference_to_the_generated_secret_names_a_key_it_holds(go_tools: GoTools) -> None:
    manifests = render(
        go_tools, settings=["edge.cities[0].name=msk", "edge.cities[0].publicAddress=192.0.2.1"]
    )
    (secret,) = by_kind(manifests, "Secret").values()
    references = {
        (where, entry["name"]): entry["valueFrom"]["secretKeyRef"]["key"]
        for where, spec in pod_specs(manifests).items()
        for container in spec["containers"]
        for entry in container.get("env", [])
        if entry.get("valueFrom", {}).get("secretKeyRef", {}).get("name")
        == secret["metadata"]["name"]
    }
    assert {variable for _, variable in references} == {
        "VPBX_EDGE_SECRET",
        "VPBX_NONCE_SECRET",
        "VPBX_PLATFORM_ADMIN_TOKEN",
        "VPBX_SERVICE_TOKEN",
        "VPBX_TOKEN_SECRET",
    }
    assert {where: key for where, key in references.items() if key not in secret["data"]} == {}


@integration
def test_media_nodes_fetch_their_config_from_the_control_api_with_the_service_token(
    go_tools: GoTools, default_manifests: list[Manifest], full_manifests: list[Manifest]
) -> None:
    for manifests in (default_manifests, full_manifests):
        env = env_of(media_node_template(manifests)["container"])
        service = by_kind(manifests, "Service")[f"{RELEASE}-control-api"]
        assert env["VPBX_CONFIG_URL"]["value"] == (
            f"http://{RELEASE}-control-api.{NAMESPACE}.svc:{service['spec']['ports'][0]['port']}"
            "/internal/v1/node-config"
        )
        # The token the control API checks is the one the nodes present.
        assert secret_ref(env, "VPBX_SERVICE_TOKEN") == secret_ref(
            env_of(control_api_container(manifests)), "VPBX_SERVICE_TOKEN"
        )
    elsewhere = render(
        go_tools, settings=["controlApi.port=9100"], release="acme", namespace="pbx-prod"
    )
    env = env_of(media_node_template(elsewhere)["container"])
    assert env["VPBX_CONFIG_URL"]["value"] == (
        "http://acme-vpbx-control-api.pbx-prod.svc:9100/internal/v1/node-config"
    )
    assert by_kind(elsewhere, "Service")["acme-vpbx-control-api"]["spec"]["ports"][0]["port"] == (
        9100
    )


@integration
def test_media_nodes_share_the_edges_secret_to_know_what_came_through_an_edge(
    default_manifests: list[Manifest], full_manifests: list[Manifest]
) -> None:
    for manifests in (default_manifests, full_manifests):
        node_env = env_of(media_node_template(manifests)["container"])
        for name, spec in pod_specs(manifests).items():
            if name.startswith(f"{RELEASE}-edge-"):
                (container,) = spec["containers"]
                assert secret_ref(node_env, "VPBX_EDGE_SECRET") == secret_ref(
                    env_of(container), "VPBX_EDGE_SECRET"
                )


def _edge(manifests: Sequence[Manifest], city: str, kind: str = "Deployment") -> Manifest:
    return by_kind(manifests, kind)[f"{RELEASE}-edge-{city}"]


@integration
def test_edge_host_network_is_an_option_and_the_public_address_is_advertised(
    go_tools: GoTools, full_manifests: list[Manifest]
) -> None:
    city = ["edge.cities[0].name=msk", "edge.cities[0].publicAddress=198.51.100.7"]
    pod_network = render(go_tools, settings=city)
    spec = _edge(pod_network, "msk")["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is False
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["nodeSelector"] == {"vpbx.io/city": "msk"}
    (container,) = spec["containers"]
    assert env_of(container)["VPBX_ADVERTISED_HOST"]["value"] == "198.51.100.7"
    assert env_of(container)["VPBX_CITY"]["value"] == "msk"
    service = by_kind(pod_network, "Service")[f"{RELEASE}-edge-msk"]
    assert {(port["protocol"], port["port"]) for port in service["spec"]["ports"]} == {
        ("UDP", 5060),
        ("TCP", 5060),
        ("TCP", 5066),  # SIP over WebSocket for browsers, TLS terminated in front
    }
    assert env_of(container)["VPBX_EDGE_WS_PORT"]["value"] == "5066"
    # Nodes reach a browser through the replica holding its WebSocket (its pod address).
    pod_ip = env_of(container)["VPBX_POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"]
    assert pod_ip == "status.podIP"
    no_ws = render(go_tools, settings=[*city, "edge.wsPort=0"])
    (container,) = _edge(no_ws, "msk")["spec"]["template"]["spec"]["containers"]
    assert env_of(container)["VPBX_EDGE_WS_PORT"]["value"] == "0"
    assert [port["name"] for port in container["ports"]] == ["sip-udp", "sip-tcp", "metrics"]
    service = by_kind(no_ws, "Service")[f"{RELEASE}-edge-msk"]
    assert {port["port"] for port in service["spec"]["ports"]} == {5060}

    host_network = _edge(full_manifests, "ekb")
    spec = host_network["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert spec["nodeSelector"] == {"vpbx.io/city": "ekb", "example.com/edge": "true"}
    assert host_network["spec"]["replicas"] == 1
    # Two pods of one node cannot both bind the host's SIP port.
    assert host_network["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    (container,) = spec["containers"]
    assert env_of(container)["VPBX_ADVERTISED_HOST"]["value"] == "sip-ekb.example.com"
    assert f"{RELEASE}-edge-ekb" not in by_kind(full_manifests, "Service")
    assert _edge(full_manifests, "msk")["spec"]["replicas"] == 3


@integration
def test_edge_can_run_as_a_daemonset_per_city(go_tools: GoTools) -> None:
    manifests = render(
        go_tools,
        settings=[
            "edge.kind=DaemonSet",
            "edge.cities[0].name=nsk",
            "edge.cities[0].publicAddress=192.0.2.1",
        ],
    )
    daemonset = _edge(manifests, "nsk", kind="DaemonSet")
    assert daemonset["spec"]["template"]["spec"]["nodeSelector"] == {"vpbx.io/city": "nsk"}
    assert "replicas" not in daemonset["spec"]
    assert f"{RELEASE}-edge-nsk" not in by_kind(manifests, "Deployment")
    assert f"{RELEASE}-edge-nsk" not in by_kind(manifests, "PodDisruptionBudget")


def _pod_annotations(manifests: Sequence[Manifest]) -> dict[str, dict[str, str]]:
    return {
        doc["metadata"]["name"]: doc["spec"]["template"]["metadata"]["annotations"]
        for doc in workloads(manifests)
    }


@integration
def test_checksum_annotations_roll_pods_only_when_their_config_changes(
    go_tools: GoTools,
) -> None:
    city = ["edge.cities[0].name=msk", "edge.cities[0].publicAddress=192.0.2.1"]
    before = _pod_annotations(render(go_tools, settings=city))
    again = _pod_annotations(render(go_tools, settings=city))
    assert again == before, "the same values must give the same checksums"
    redis_moved = _pod_annotations(
        render(go_tools, settings=[*city, "redis.url=redis://redis.other:6379/1"])
    )
    for name in (f"{RELEASE}-operator", f"{RELEASE}-edge-msk"):
        assert redis_moved[name]["checksum/config"] != before[name]["checksum/config"], name
    longer_grace = _pod_annotations(
        render(go_tools, settings=[*city, "mediaNode.drain.terminationGracePeriodSeconds=900"])
    )
    operator = f"{RELEASE}-operator"
    assert longer_grace[operator]["checksum/media-node"] != before[operator]["checksum/media-node"]
    assert longer_grace[f"{RELEASE}-edge-msk"] == before[f"{RELEASE}-edge-msk"]


@integration
def test_service_monitor_only_when_enabled(
    default_manifests: list[Manifest], full_manifests: list[Manifest]
) -> None:
    assert not by_kind(default_manifests, "ServiceMonitor")
    monitors = by_kind(full_manifests, "ServiceMonitor")
    services = by_kind(full_manifests, "Service")
    assert set(monitors) == {f"{RELEASE}-operator", f"{RELEASE}-control-api"}
    for monitor_name, service_name, port in [
        (f"{RELEASE}-operator", f"{RELEASE}-operator-metrics", "metrics"),
        (f"{RELEASE}-control-api", f"{RELEASE}-control-api", "http"),
    ]:
        monitor = monitors[monitor_name]
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        # Exactly one Service of the release carries the labels the monitor selects.
        selected = [
            name
            for name, service in services.items()
            if selects(monitor["spec"]["selector"], service["metadata"]["labels"])
        ]
        assert selected == [service_name], monitor_name
        endpoints = monitor["spec"]["endpoints"]
        assert [(endpoint["port"], endpoint["path"]) for endpoint in endpoints] == [
            (port, "/metrics")
        ]
        assert port in {
            service_port["name"] for service_port in services[service_name]["spec"]["ports"]
        }


@integration
def test_network_policies_cover_every_pod_the_release_runs(
    full_manifests: list[Manifest],
) -> None:
    policies = list(by_kind(full_manifests, "NetworkPolicy").values())
    pods = {
        name: doc["spec"]["template"]["metadata"]["labels"]
        for name, doc in ((doc["metadata"]["name"], doc) for doc in workloads(full_manifests))
    }
    pods["media-node (operator template)"] = media_node_template(full_manifests)["labels"]
    for name, labels in pods.items():
        selecting = [
            policy
            for policy in policies
            if policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
        ]
        assert selecting, f"no NetworkPolicy selects {name}"
        assert all(policy["spec"]["policyTypes"] == ["Ingress"] for policy in selecting)
    media = by_kind(full_manifests, "NetworkPolicy")[f"{RELEASE}-media-node"]
    rtp = [
        port for rule in media["spec"]["ingress"] for port in rule["ports"] if port.get("endPort")
    ]
    assert rtp == [{"port": 20000, "endPort": 29999, "protocol": "UDP"}]


@integration
def test_control_api_port_is_open_to_http_peers_nodes_and_prometheus(
    default_manifests: list[Manifest], full_manifests: list[Manifest]
) -> None:
    # No httpFrom: any source (every route authenticates).
    policy = by_kind(default_manifests, "NetworkPolicy")[f"{RELEASE}-control-api"]
    assert policy["spec"]["ingress"] == [{"ports": [{"port": "http", "protocol": "TCP"}]}]
    policies = by_kind(full_manifests, "NetworkPolicy")
    peers = {
        component: policies[f"{RELEASE}-{component}"]["spec"]["ingress"][0]["from"]
        for component in ("control-api", "crm")
    }
    ingress = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}
    }
    monitoring = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    assert ingress in peers["control-api"]
    assert ingress in peers["crm"]
    # /metrics is on the control API's HTTP port; the CRM has no ServiceMonitor.
    assert monitoring in peers["control-api"]
    assert monitoring not in peers["crm"]


@integration
def test_network_policies_can_be_switched_off(go_tools: GoTools) -> None:
    manifests = render(go_tools, settings=["networkPolicy.enabled=false"])
    assert not by_kind(manifests, "NetworkPolicy")


# --- kubeconform against the real API's schemas ------------------------------

QUANTITY = "io.k8s.apimachinery.pkg.api.resource.Quantity"


def _strict(node: Any) -> Any:
    """Kubernetes OpenAPI v2 -> JSON schema as kubeconform's strict schemas have it.

    Objects with declared properties reject unknown fields; int-or-string and
    quantities accept both spellings YAML gives them.
    """
    if isinstance(node, list):
        return [_strict(item) for item in node]
    if not isinstance(node, dict):
        return node
    if node.get("format") == "int-or-string":
        return {"oneOf": [{"type": "string"}, {"type": "integer"}]}
    converted = {key: _strict(value) for key, value in node.items()}
    if "properties" in converted and "additionalProperties" not in converted:
        converted["additionalProperties"] = False
    return converted


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                yield value.removeprefix("#/definitions/")
            else:
                yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def _reachable(name: str, definitions: Mapping[str, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {}
    pending = [name]
    while pending:
        current = pending.pop()
        if current in found:
            continue
        found[current] = definitions[current]
        pending.extend(_refs(definitions[current]))
    return found


def write_kubeconform_schemas(openapi: Mapping[str, Any], directory: Path) -> int:
    """One standalone strict schema per kind, named as kubeconform looks them up.

    The file name is kubeconform's `{{ .ResourceKind }}{{ .KindSuffix }}.json`:
    the lower-case kind, the first label of the API group (if any), the version.
    Definitions a kind refers to go along in its file (some are recursive, such
    as a CRD's JSONSchemaProps, so they cannot be inlined).
    """
    definitions = {name: _strict(copy.deepcopy(d)) for name, d in openapi["definitions"].items()}
    definitions[QUANTITY] = {"oneOf": [{"type": "string"}, {"type": "number"}]}
    written = 0
    for name, definition in definitions.items():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            group, version, kind = gvk["group"], gvk["version"], gvk["kind"]
            suffix = f"-{group.split('.')[0].lower()}-{version}" if group else f"-{version}"
            schema = {
                "$schema": "http://json-schema.org/draft-07/schema#",
                **definition,
                "definitions": _reachable(name, definitions),
            }
            path = directory / f"{kind.lower()}{suffix}.json"
            if not path.exists():
                path.write_text(json.dumps(schema))
                written += 1
    return written


@pytest.fixture(scope="session")
def kubeconform_schemas(kube_api: KubeAPI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    address = urllib.parse.urlsplit(kube_api.server)
    connection = http.client.HTTPSConnection(
        address.hostname or "127.0.0.1",
        address.port,
        timeout=60,
        context=ssl.create_default_context(cafile=str(kube_api.ca_file)),
    )
    try:
        connection.request(
            "GET",
            "/openapi/v2",
            headers={"Authorization": f"Bearer {kube_api.token}", "Accept": "application/json"},
        )
        response = connection.getresponse()
        assert response.status == 200, response.reason
        openapi = json.loads(response.read())
    finally:
        connection.close()
    directory = tmp_path_factory.mktemp("kubeconform-schemas")
    assert write_kubeconform_schemas(openapi, directory) > 50
    return directory


def kubeconform(
    tools: GoTools, schemas: Path, manifests: Sequence[Manifest], tmp_path: Path
) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(manifests, sort_keys=False))
    template = "{{ .ResourceKind }}{{ .KindSuffix }}.json"
    return run(
        [
            tools.kubeconform,
            "-strict",
            "-summary",
            "-schema-location",
            f"{schemas}/{template}",
            # The Prometheus Operator's kinds (ServiceMonitor, PodMonitor, PrometheusRule):
            # its CRDs are not available here.
            "-schema-location",
            f"{FIXTURES / 'kubeconform'}/{template}",
            path,
        ]
    )


@integration
@pytest.mark.parametrize("values", [(), (FULL_VALUES,)], ids=["default", "full"])
def test_kubeconform_strict_accepts_the_rendered_manifests(
    go_tools: GoTools, kubeconform_schemas: Path, values: tuple[Path, ...], tmp_path: Path
) -> None:
    manifests = render(go_tools, values=values, include_crds=True)
    completed = kubeconform(go_tools, kubeconform_schemas, manifests, tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    summary = completed.stdout.strip().splitlines()[-1]
    assert f"Valid: {len(manifests)}, Invalid: 0, Errors: 0, Skipped: 0" in summary


@integration
def test_kubeconform_catches_unknown_fields_and_wrong_types(
    go_tools: GoTools,
    kubeconform_schemas: Path,
    full_manifests: list[Manifest],
    tmp_path: Path,
) -> None:
    broken = copy.deepcopy(full_manifests)
    operator = next(
        doc
        for doc in broken
        if doc["metadata"]["name"] == f"{RELEASE}-operator" and doc["kind"] == "Deployment"
    )
    container = operator["spec"]["template"]["spec"]["containers"][0]
    container["livenessProbes"] = container.pop("livenessProbe")
    edge = next(doc for doc in broken if doc["metadata"]["name"] == f"{RELEASE}-edge-msk")
    edge["spec"]["replicas"] = "three"
    completed = kubeconform(go_tools, kubeconform_schemas, broken, tmp_path)
    assert completed.returncode != 0
    assert "livenessProbes" in completed.stdout
    assert "replicas" in completed.stdout
    assert "Invalid: 2" in completed.stdout


# --- the real API server -----------------------------------------------------


@integration
@pytest.mark.parametrize("values", [(), (FULL_VALUES,)], ids=["default", "full"])
def test_api_server_accepts_the_rendered_manifests_in_a_dry_run(
    go_tools: GoTools,
    kube_api: KubeAPI,
    kube_namespace: str,
    values: tuple[Path, ...],
    tmp_path: Path,
) -> None:
    manifests = [
        doc
        for doc in render(
            go_tools,
            values=values,
            namespace=kube_namespace,
            release=f"dry-{kube_namespace}",
            include_crds=True,
        )
        # The Prometheus Operator's CRDs are not installed in the test API.
        if doc["kind"] not in PROMETHEUS_OPERATOR_KINDS
    ]
    path = tmp_path / "manifests.yaml"
    path.write_text(yaml.safe_dump_all(manifests))
    completed = kube_api.kubectl(
        "apply", "--dry-run=server", "-n", kube_namespace, "-f", str(path), check=False
    )
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.count("(server dry run)") == len(manifests)


RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")

# (verb, "group/plural", namespace or "" for cluster-wide, subresource)
Access = tuple[str, ...]


def service_account_may(kube_api: KubeAPI, namespace: str, account: str, check: Access) -> bool:
    """Whether the API server authorizes the ServiceAccount for one request."""
    from kubernetes import client

    verb, resource, *rest = check
    where, subresource = (*rest, "", "")[:2]
    # A SubjectAccessReview names the API group exactly; `kubectl auth can-i`
    # would guess it from discovery, which knows no vpbx.io before the CRDs.
    group, _, plural = resource.rpartition("/")
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{namespace}:{account}",
            groups=[
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ],
            resource_attributes=client.V1ResourceAttributes(
                group=group,
                resource=plural,
                verb=verb,
                namespace=where or None,
                subresource=subresource or None,
            ),
        )
    )
    with kube_api.client() as api_client:
        answer = client.AuthorizationV1Api(api_client).create_subject_access_review(review)
    status = answer.status
    assert status is not None
    return bool(status.allowed)


@contextmanager
def applied_rbac(
    go_tools: GoTools, kube_api: KubeAPI, namespace: str, release: str, tmp_path: Path
) -> Iterator[None]:
    """The release's ServiceAccounts and RBAC objects, applied for real (and removed)."""
    manifests = [
        doc
        for doc in render(go_tools, namespace=namespace, release=release)
        if doc["kind"] in RBAC_KINDS
    ]
    path = tmp_path / "rbac.yaml"
    path.write_text(yaml.safe_dump_all(manifests))
    kube_api.kubectl("apply", "-n", namespace, "-f", str(path))
    try:
        yield
    finally:
        # Namespaced objects go with the test's namespace; cluster-wide ones do not.
        for doc in manifests:
            if doc["kind"].startswith("Cluster"):
                kube_api.kubectl("delete", doc["kind"], doc["metadata"]["name"], check=False)


@integration
def test_operator_rbac_allows_what_it_uses_and_nothing_more(
    go_tools: GoTools, kube_api: KubeAPI, kube_namespace: str, tmp_path: Path
) -> None:
    release = f"rbac-{kube_namespace}"
    account = f"{release}-vpbx-operator"
    allowed: list[Access] = [
        ("watch", "vpbx.io/tenants"),
        ("list", "vpbx.io/numbers"),
        ("patch", "vpbx.io/numbers"),
        ("patch", "vpbx.io/tenants", "", "status"),
        ("update", "vpbx.io/numbers", "", "status"),
        ("create", "/events", "default"),
        ("create", "apps/deployments", kube_namespace),
        ("delete", "/services", kube_namespace),
        ("patch", "/configmaps", kube_namespace),
        ("create", "policy/poddisruptionbudgets", kube_namespace),
    ]
    denied: list[Access] = [
        ("delete", "vpbx.io/tenants"),
        ("create", "vpbx.io/numbers"),
        ("create", "apps/deployments", "default"),
        ("get", "/secrets", kube_namespace),
        ("create", "/pods", kube_namespace),
        ("create", "coordination.k8s.io/leases", kube_namespace),
        ("create", "rbac.authorization.k8s.io/clusterroles"),
    ]
    with applied_rbac(go_tools, kube_api, kube_namespace, release, tmp_path):
        may = [c for c in allowed if not service_account_may(kube_api, kube_namespace, account, c)]
        assert may == []
        may_not = [c for c in denied if service_account_may(kube_api, kube_namespace, account, c)]
        assert may_not == []


@integration
def test_control_api_rbac_manages_numbers_and_tenants_and_nothing_else(
    go_tools: GoTools, kube_api: KubeAPI, kube_namespace: str, tmp_path: Path
) -> None:
    release = f"capi-{kube_namespace}"
    account = f"{release}-vpbx-control-api"
    # Tenants and Numbers are cluster-scoped: the rights hold cluster-wide.
    number_verbs = ["get", "list", "watch", "create", "update", "patch", "delete"]
    allowed: list[Access] = [
        *[(verb, "vpbx.io/numbers") for verb in number_verbs],
        *[(verb, "vpbx.io/tenants") for verb in number_verbs if verb != "delete"],
    ]
    denied: list[Access] = [
        ("delete", "vpbx.io/tenants"),
        ("deletecollection", "vpbx.io/numbers"),
        # Status belongs to the operator.
        ("patch", "vpbx.io/numbers", "", "status"),
        ("update", "vpbx.io/tenants", "", "status"),
        ("get", "/secrets", kube_namespace),
        ("list", "/secrets"),
        ("create", "apps/deployments", kube_namespace),
        ("patch", "apps/deployments", kube_namespace),
        ("create", "/configmaps", kube_namespace),
        ("create", "/pods", kube_namespace),
        ("create", "/events", kube_namespace),
        ("create", "rbac.authorization.k8s.io/rolebindings", kube_namespace),
        ("impersonate", "/serviceaccounts", kube_namespace),
    ]
    with applied_rbac(go_tools, kube_api, kube_namespace, release, tmp_path):
        may = [c for c in allowed if not service_account_may(kube_api, kube_namespace, account, c)]
        assert may == []
        may_not = [c for c in denied if service_account_may(kube_api, kube_namespace, account, c)]
        assert may_not == []
        # The operator's account gained nothing from the control API's RBAC.
        operator = f"{release}-vpbx-operator"
        assert not service_account_may(
            kube_api, kube_namespace, operator, ("create", "vpbx.io/numbers")
        )


@integration
def test_operator_renders_valid_media_nodes_from_the_charts_template(
    go_tools: GoTools, kube_api: KubeAPI, kube_namespace: str, tmp_path: Path
) -> None:
    from vpbx_common.manifests import load_platform_file
    from vpbx_operator.desired import desired_nodes
    from vpbx_operator.render import NodeTemplate, render_node, tenant_owner_reference

    manifests = render(go_tools, values=(FULL_VALUES,), namespace=kube_namespace)
    chart = media_node_template(manifests)
    template = NodeTemplate.from_chart(chart, NodeTemplate())
    platform = load_platform_file(REPO / "examples" / "demo.yaml")
    [plan, *_] = desired_nodes(platform.tenants, platform.numbers, platform.configs)
    owner = tenant_owner_reference(plan.tenant, "00000000-0000-0000-0000-000000000001")
    objects = render_node(plan, kube_namespace, owner, template).all()
    for manifest in objects:
        # The owner does not exist in this API; a dry run still checks every field.
        manifest["metadata"].pop("ownerReferences")
    path = tmp_path / "node.yaml"
    path.write_text(yaml.safe_dump_all(objects))

    completed = kube_api.kubectl(
        "apply", "--dry-run=server", "-n", kube_namespace, "-f", str(path), check=False
    )

    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.count("(server dry run)") == len(objects)
    kinds = {manifest["kind"] for manifest in objects}
    assert kinds == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget"}
    deployment = next(m for m in objects if m["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["nodeSelector"][chart["cityLabel"]] == plan.city

    # The node fetches its config from the release's control API with the service token.
    (container,) = pod["containers"]
    env = env_of(container)
    assert env["VPBX_CONFIG_URL"]["value"] == (
        f"http://{RELEASE}-control-api.{kube_namespace}.svc:8000/internal/v1/node-config"
    )
    assert secret_ref(env, "VPBX_SERVICE_TOKEN") == ("vpbx-signing", "service-token")
    assert env["VPBX_TENANT"]["value"] == plan.tenant
    assert env["VPBX_CITY"]["value"] == plan.city

    # The chart's NetworkPolicies select the pods the operator made (it replaces
    # the instance label), and the control API's admits them.
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    policies = by_kind(manifests, "NetworkPolicy")
    assert selects(policies[f"{RELEASE}-media-node"]["spec"]["podSelector"], labels)
    (http_rule,) = policies[f"{RELEASE}-control-api"]["spec"]["ingress"]
    pod_peers = [peer["podSelector"] for peer in http_rule["from"] if set(peer) == {"podSelector"}]
    assert any(selects(peer, labels) for peer in pod_peers)
    # ... while httpFrom narrows everyone else down (the full values set it).
    assert not any(selects(peer, {"app.kubernetes.io/name": "other"}) for peer in pod_peers)

    # The node Service (port 5060, which the routing table names) reaches the
    # container on whatever port the chart's template listens on.
    service = next(m for m in objects if m["kind"] == "Service")
    container_ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    for port in service["spec"]["ports"]:
        assert port["port"] == 5060
        assert port["targetPort"] in container_ports
    assert container_ports["sip-udp"] == container_ports["sip-tcp"]
    assert container_ports["sip-tcp"] == int(env["VPBX_SIP_PORT"]["value"])
    # ... and Prometheus scrapes the node's pod on its metrics port.
    assert container_ports["metrics"] == int(env["VPBX_METRICS_PORT"]["value"])


@integration
def test_an_upgrade_keeps_the_generated_secrets_and_adds_new_ones(
    go_tools: GoTools, kube_api: KubeAPI, kube_namespace: str, tmp_path: Path
) -> None:
    release = "keep"
    name = f"{release}-vpbx-signing"
    # What an install of the chart from before the control API left behind.
    kube_api.kubectl(
        "create",
        "secret",
        "generic",
        name,
        "-n",
        kube_namespace,
        "--from-literal=edge-secret=edge-from-the-first-install",
        "--from-literal=nonce-secret=nonce-from-the-first-install",
    )

    def upgrade() -> dict[str, str]:
        # --dry-run=server lets the chart's lookup see the API, as `helm upgrade` does.
        completed = run(
            [
                go_tools.helm,
                "template",
                release,
                CHART,
                "--namespace",
                kube_namespace,
                "--set",
                DATABASE_SECRET,
                "--dry-run=server",
                "--kubeconfig",
                kube_api.kubeconfig,
                "--show-only",
                "templates/secret.yaml",
            ],
            env=kube_api.environ(),
        )
        assert completed.returncode == 0, completed.stderr
        secret: Manifest = yaml.safe_load(completed.stdout)
        path = tmp_path / "secret.yaml"
        path.write_text(completed.stdout)
        kube_api.kubectl("apply", "-n", kube_namespace, "-f", str(path))
        return {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}

    first = upgrade()
    assert first["edge-secret"] == "edge-from-the-first-install"
    assert first["nonce-secret"] == "nonce-from-the-first-install"
    for key in ("platform-admin-token", "service-token", "token-secret"):
        assert len(first[key]) == 48, key
    assert upgrade() == first, "a second upgrade must not change any secret"


# --- monitoring: PodMonitors, alerts, the Grafana dashboard ------------------


def exported_series() -> set[str]:
    """Every series name the platform's processes export (sample names, as queried).

    Collected from the registries the code builds, so a rule or panel naming a
    metric that was renamed or never written fails here; that the series really
    move is tested where they are written (media-node/tests/test_node_metrics.py,
    test_cdr_spool.py, control-api/tests/test_webhooks.py, ...)."""
    from prometheus_client import REGISTRY, CollectorRegistry

    import vpbx_operator.reconciler  # noqa: F401  (registers its metrics globally)
    from vpbx_control.observability import Metrics
    from vpbx_media.cdr.spool import CdrSpool
    from vpbx_media.metrics import NodeMetrics, process_registry

    node = NodeMetrics("acme", "msk")
    with tempfile.TemporaryDirectory() as spool_dir, CdrSpool(Path(spool_dir)) as spool:
        node.watch_spool(spool)
        families = list(node.registry.collect())
    registries: list[CollectorRegistry] = [
        process_registry(),
        Metrics().registry,
        REGISTRY,
    ]
    families += [family for registry in registries for family in registry.collect()]
    names: set[str] = set()
    for family in families:
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}_{part}" for part in ("bucket", "sum", "count"))
        else:
            names.add(family.name)
    return names


def series_in(expression: str) -> set[str]:
    return set(re.findall(r"\b((?:vpbx|process)_[a-z_]+)\b", expression))


def test_edges_and_nodes_serve_metrics_scraped_by_pod_monitors(
    full_manifests: list[Manifest],
) -> None:
    monitors = by_kind(full_manifests, "PodMonitor")
    assert set(monitors) == {f"{RELEASE}-edge", f"{RELEASE}-media-node"}
    edges = [
        doc
        for doc in workloads(full_manifests)
        if doc["metadata"]["name"].startswith(f"{RELEASE}-edge")
    ]
    assert edges
    node = media_node_template(full_manifests)
    for monitor in monitors.values():
        assert monitor["metadata"]["labels"]["release"] == "prometheus"
        [endpoint] = monitor["spec"]["podMetricsEndpoints"]
        assert (endpoint["port"], endpoint["path"]) == ("metrics", "/metrics")
    node_labels = node["pod"]["metadata"]["labels"] if "metadata" in node["pod"] else None
    pods = [
        (f"{RELEASE}-edge", doc["spec"]["template"]["metadata"]["labels"], container)
        for doc in edges
        for container in doc["spec"]["template"]["spec"]["containers"]
    ]
    pods.append((f"{RELEASE}-media-node", node_labels, node["container"]))
    for monitor_name, labels, container in pods:
        if labels is not None:
            assert selects(monitors[monitor_name]["spec"]["selector"], labels), monitor_name
        ports = {port["name"]: port["containerPort"] for port in container["ports"]}
        env = env_of(container)
        assert ports["metrics"] == int(env["VPBX_METRICS_PORT"]["value"]) == 9464
        assert env["VPBX_METRICS_HOST"]["value"] == "0.0.0.0"


def test_alerts_and_dashboard_use_only_series_the_platform_exports(
    default_manifests: list[Manifest], full_manifests: list[Manifest]
) -> None:
    for kind in ("PodMonitor", "PrometheusRule"):
        assert not by_kind(default_manifests, kind)
    [rule] = by_kind(full_manifests, "PrometheusRule").values()
    alerts = {entry["alert"]: entry for group in rule["spec"]["groups"] for entry in group["rules"]}
    assert {
        "VpbxAnswerRatioLow",
        "VpbxRtpLossHigh",
        "VpbxNodeCpuHigh",
        "VpbxCdrStoreUnreachable",
        "VpbxCdrBacklogHigh",
        "VpbxWebhookFailures",
    } <= set(alerts)
    # Thresholds come from values.
    assert "< 0.5" in alerts["VpbxAnswerRatioLow"]["expr"]
    assert "> 1000" in alerts["VpbxCdrBacklogHigh"]["expr"]

    [dashboard_map] = [
        doc
        for doc in full_manifests
        if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == f"{RELEASE}-dashboard"
    ]
    assert dashboard_map["metadata"]["labels"]["grafana_dashboard"] == "1"
    dashboard = json.loads(dashboard_map["data"]["vpbx.json"])
    titles = {panel["title"] for panel in dashboard["panels"]}
    assert {
        "Calls per second",
        "Answer ratio (inbound)",
        "Media node CPU",
        "RTP packet loss",
        "CDR spool backlog",
        "Webhook failures",
    } <= titles

    exported = exported_series()
    used: dict[str, set[str]] = {}
    for name, entry in alerts.items():
        used[f"alert {name}"] = series_in(entry["expr"])
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            used[f"panel {panel['title']}"] = series_in(target["expr"])
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            used[f"variable {variable['name']}"] = series_in(variable["definition"])
    assert all(used.values()), used
    missing = {where: names - exported for where, names in used.items() if names - exported}
    assert not missing, missing
