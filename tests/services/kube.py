"""A real Kubernetes API for the tests: kube-apiserver (embedded etcd) and kubectl.

The binaries are built from tools/kube-apiserver by scripts/build-k8s-tools.sh
and cached; the first build takes many minutes, so it runs once after
collection (outside any test timeout) when a selected test uses `kube_api`.

Besides the API server a kube-controller-manager runs only the garbage
collector and the namespace controller: owner references cascade and deleted
namespaces really go away, while Deployments keep whatever status a test
writes (no deployment controller, scheduler or kubelet).
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import secrets
import signal
import ssl
import subprocess
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.services.ports import free_port
from tests.services.toolbuild import BuildBeforeTests, run_build_script

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-k8s-tools.sh"
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 20.0
KUBECTL_TIMEOUT_SECONDS = 60.0
SERVICE_CLUSTER_IP_RANGE = "10.96.0.0/16"
ADMIN_USER = "vpbx-test-admin"


class KubeError(RuntimeError):
    """The test Kubernetes API could not be built or started."""


class KubectlError(subprocess.CalledProcessError):
    """A kubectl run that failed; unlike its base class, says what kubectl printed."""

    def __str__(self) -> str:
        command = " ".join(str(part) for part in self.cmd)
        return f"`{command}` exited with {self.returncode}: {self.stderr or self.stdout}"


def build_k8s_tools(echo: bool = True) -> Path:
    """Build (or find cached) kube-apiserver, kube-controller-manager, kubectl; their dir."""
    return run_build_script(BUILD_SCRIPT, "k8s tools", echo=echo)


_BUILD = BuildBeforeTests(
    fixture="kube_api",
    announcement=(
        "kube: building kube-apiserver, kube-controller-manager and kubectl unless cached"
        " (a cold build takes about 5 minutes on 2 cores)"
    ),
    build=build_k8s_tools,
)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build before the first test so a cold build never counts against a test timeout."""
    _BUILD.collection_finished(session)


def _openssl(*args: str, cwd: Path) -> None:
    completed = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        raise KubeError(f"openssl {' '.join(args)} failed: {completed.stderr}")


def _make_certificates(directory: Path) -> None:
    """A throwaway CA, a serving certificate for 127.0.0.1 and a service-account key."""
    # EC keys: generating them takes milliseconds, RSA keys up to a second.
    new_ec_key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _openssl(
        "req", "-x509", *new_ec_key, "-keyout", "ca.key", "-out", "ca.crt",
        "-days", "7", "-subj", "/CN=vpbx-test-ca", cwd=directory,
    )  # fmt: skip
    _openssl(
        "req", *new_ec_key, "-keyout", "serving.key", "-out", "serving.csr",
        "-subj", "/CN=kube-apiserver", cwd=directory,
    )  # fmt: skip
    (directory / "serving.ext").write_text(
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _openssl(
        "x509", "-req", "-in", "serving.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "7", "-extfile", "serving.ext", "-out", "serving.crt",
        cwd=directory,
    )  # fmt: skip
    _openssl(
        "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-out", "service-account.key", cwd=directory,
    )  # fmt: skip
    # The verifying side reads public keys only; a PKCS#8 private key is not one.
    _openssl(
        "pkey",
        "-in",
        "service-account.key",
        "-pubout",
        "-out",
        "service-account.pub",
        cwd=directory,
    )


@dataclass(frozen=True)
class KubeAPI:
    """A running test Kubernetes API and how to talk to it."""

    server: str
    token: str
    kubeconfig: Path
    ca_file: Path
    bin_dir: Path
    cache_dir: Path

    @property
    def kubectl_binary(self) -> Path:
        return self.bin_dir / "kubectl"

    def environ(self) -> dict[str, str]:
        """Environment for a subprocess (kubectl, kopf, the operator) to use this API."""
        env = dict(os.environ)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["KUBECACHEDIR"] = str(self.cache_dir)
        # kubectl must not pick up a developer's ~/.kube/kuberc aliases or defaults.
        env["KUBERC"] = "off"
        return env

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = KUBECTL_TIMEOUT_SECONDS,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this API; raises KubectlError on failure when `check`."""
        command = [str(self.kubectl_binary), f"--kubeconfig={self.kubeconfig}", *args]
        completed = subprocess.run(
            command,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.environ(),
            check=False,
        )
        if check and completed.returncode != 0:
            raise KubectlError(
                completed.returncode, command, output=completed.stdout, stderr=completed.stderr
            )
        return completed

    def client(self) -> ApiClient:
        """A new official-client ApiClient for this API; close it when done."""
        from kubernetes.client import ApiClient, Configuration

        configuration = Configuration(
            host=self.server,
            api_key={"BearerToken": self.token},
            api_key_prefix={"BearerToken": "Bearer"},
            ssl_ca_cert=str(self.ca_file),
        )
        return ApiClient(configuration)

    def ready(self) -> bool:
        """Whether /readyz answers 200 now."""
        address = urllib.parse.urlsplit(self.server)
        connection = http.client.HTTPSConnection(
            address.hostname or "127.0.0.1",
            address.port,
            timeout=2,
            context=ssl.create_default_context(cafile=str(self.ca_file)),
        )
        try:
            connection.request("GET", "/readyz", headers={"Authorization": f"Bearer {self.token}"})
            return connection.getresponse().status == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            connection.close()


def _write_kubeconfig(path: Path, server: str, ca_file: Path, token: str) -> None:
    # JSON is YAML, so every kubeconfig reader accepts it and no YAML writer is needed.
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": "vpbx-test",
                "cluster": {"server": server, "certificate-authority": str(ca_file)},
            }
        ],
        "users": [{"name": ADMIN_USER, "user": {"token": token}}],
        "contexts": [
            {"name": "vpbx-test", "context": {"cluster": "vpbx-test", "user": ADMIN_USER}}
        ],
        "current-context": "vpbx-test",
    }
    path.write_text(json.dumps(kubeconfig, indent=2))
    path.chmod(0o600)


def _apiserver_args(workdir: Path, port: int, etcd_ports: tuple[int, int]) -> list[str]:
    return [
        f"--embedded-etcd-dir={workdir / 'etcd'}",
        f"--embedded-etcd-client-port={etcd_ports[0]}",
        f"--embedded-etcd-peer-port={etcd_ports[1]}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={workdir / 'certs'}",
        f"--tls-cert-file={workdir / 'serving.crt'}",
        f"--tls-private-key-file={workdir / 'serving.key'}",
        f"--client-ca-file={workdir / 'ca.crt'}",
        f"--token-auth-file={workdir / 'tokens.csv'}",
        # RBAC (not AlwaysAllow) so tests can check the chart's roles with --as;
        # the admin token's group system:masters bypasses RBAC.
        "--authorization-mode=RBAC",
        f"--service-cluster-ip-range={SERVICE_CLUSTER_IP_RANGE}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={workdir / 'service-account.pub'}",
        f"--service-account-signing-key-file={workdir / 'service-account.key'}",
        # ServiceAccount admission wants a default ServiceAccount per namespace,
        # which only the (absent) serviceaccount controller would create.
        "--disable-admission-plugins=ServiceAccount",
        # The default endpoint reconciler rejects a loopback advertise address.
        "--endpoint-reconciler-type=none",
        "--allow-privileged=true",
        "--profiling=false",
    ]


def _controller_manager_args(workdir: Path, port: int) -> list[str]:
    kubeconfig = str(workdir / "kubeconfig")
    return [
        f"--kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        "--controllers=garbage-collector-controller,namespace-controller",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={workdir / 'kcm-certs'}",
        "--use-service-account-credentials=false",
    ]


def _stop(process: subprocess.Popen[bytes], name: str) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_TIMEOUT_SECONDS)
    except subprocess.TimeoutExpired:
        logger.warning("%s ignored SIGTERM for %ss; killing it", name, STOP_TIMEOUT_SECONDS)
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(cannot read {path}: {error})"


@contextmanager
def running_kube_api(workdir: Path, bin_dir: Path | None = None) -> Iterator[KubeAPI]:
    """kube-apiserver + embedded etcd + GC/namespace controllers on loopback, in `workdir`."""
    bin_dir = bin_dir or build_k8s_tools()
    workdir.mkdir(parents=True, exist_ok=True)
    _make_certificates(workdir)
    token = secrets.token_urlsafe(32)
    (workdir / "tokens.csv").write_text(f'{token},{ADMIN_USER},{ADMIN_USER},"system:masters"\n')
    port = free_port()
    server = f"https://127.0.0.1:{port}"
    _write_kubeconfig(workdir / "kubeconfig", server, workdir / "ca.crt", token)
    api = KubeAPI(
        server=server,
        token=token,
        kubeconfig=workdir / "kubeconfig",
        ca_file=workdir / "ca.crt",
        bin_dir=bin_dir,
        cache_dir=workdir / "kubectl-cache",
    )

    processes: list[tuple[str, subprocess.Popen[bytes]]] = []
    started = time.monotonic()
    try:
        processes.append(
            _start(
                "kube-apiserver",
                [str(bin_dir / "kube-apiserver"), *_apiserver_args(workdir, port, _two_ports())],
                workdir / "kube-apiserver.log",
            )
        )
        _wait_ready(api, processes[0][1], workdir / "kube-apiserver.log")
        processes.append(
            _start(
                "kube-controller-manager",
                [
                    str(bin_dir / "kube-controller-manager"),
                    *_controller_manager_args(workdir, free_port()),
                ],
                workdir / "kube-controller-manager.log",
            )
        )
        logger.info("kube-apiserver ready at %s in %.1fs", server, time.monotonic() - started)
        yield api
    finally:
        for name, process in reversed(processes):
            _stop(process, name)


@pytest.fixture(scope="session")
def kube_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KubeAPI]:
    """kube-apiserver + embedded etcd + GC/namespace controllers on loopback."""
    bin_dir = _BUILD.directory(request.config)
    with running_kube_api(tmp_path_factory.mktemp("kube"), bin_dir) as api:
        yield api


def _two_ports() -> tuple[int, int]:
    first = free_port()
    for _ in range(20):
        second = free_port()
        if second != first:
            return first, second
    raise KubeError("no two distinct free loopback ports")


def _start(
    name: str, command: Sequence[str], log_path: Path
) -> tuple[str, subprocess.Popen[bytes]]:
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    return name, process


def _wait_ready(api: KubeAPI, process: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise KubeError(f"kube-apiserver exited with {process.returncode}:\n{_tail(log_path)}")
        if api.ready():
            return
        time.sleep(0.2)
    raise KubeError(f"kube-apiserver not ready after {READY_TIMEOUT_SECONDS}s:\n{_tail(log_path)}")


@pytest.fixture
def kube_namespace(kube_api: KubeAPI) -> Iterator[str]:
    """A fresh namespace for one test, deleted (with its contents) afterwards."""
    from kubernetes import client

    name = f"test-{secrets.token_hex(4)}"
    with kube_api.client() as api_client:
        core = client.CoreV1Api(api_client)
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
        try:
            yield name
        finally:
            # The namespace controller empties and removes it in the background;
            # names are random, so the next test never waits for it.
            core.delete_namespace(name)
