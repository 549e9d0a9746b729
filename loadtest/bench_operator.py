"""`make bench-operator`: 500 Tenants with 2 cities each and 2000 Numbers against a
local kube-apiserver; time until every object is Ready and the operator's peak memory.

There is no kubelet: a stand-in marks each media-node Deployment ready as soon as it
appears (what a kubelet plus deployment controller would report), so the figure
measures the operator and the API server, not pod start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from tests.services.kube import KubeAPI, running_kube_api
from tests.services.ports import free_port
from tests.services.redis import running_redis

REPO = Path(__file__).resolve().parents[1]
NAMESPACE = "vpbx-bench"


def manifests(tenants: int, numbers: int) -> str:
    docs: list[str] = []
    for t in range(tenants):
        docs.append(
            "apiVersion: vpbx.io/v1alpha1\nkind: Tenant\n"
            f"metadata:\n  name: bench-{t:04d}\n"
            f"spec:\n  displayName: Bench {t}\n  sipDomain: bench-{t:04d}.vpbx.test\n"
            "  cities:\n    - name: msk\n    - name: ekb\n"
        )
    for n in range(numbers):
        tenant = n % tenants
        city = "msk" if n % 2 == 0 else "ekb"
        docs.append(
            "apiVersion: vpbx.io/v1alpha1\nkind: Number\n"
            f"metadata:\n  name: bench-num-{n:05d}\n"
            f'spec:\n  number: "+7495{1000000 + n:07d}"\n  tenant: bench-{tenant:04d}\n'
            f'  city: {city}\n  entry: "101"\n'
        )
    return "---\n".join(docs)


def mark_ready_forever(api: KubeAPI, stop: threading.Event) -> None:
    """Stand in for kubelet + deployment controller: report each Deployment ready."""
    from kubernetes import client

    apps = client.AppsV1Api(api.client())
    done: set[str] = set()
    while not stop.is_set():
        for deployment in apps.list_namespaced_deployment(NAMESPACE).items:
            name = deployment.metadata.name if deployment.metadata else None
            if name is None or name in done:
                continue
            replicas = (deployment.spec.replicas if deployment.spec else None) or 1
            apps.patch_namespaced_deployment_status(
                name,
                NAMESPACE,
                {
                    "status": {
                        "replicas": replicas,
                        "readyReplicas": replicas,
                        "availableReplicas": replicas,
                    }
                },
            )
            done.add(name)
        stop.wait(1.0)


def ready_counts(api: KubeAPI) -> tuple[int, int, int, int]:
    counts = []
    for plural in ("tenants", "numbers"):
        items = json.loads(api.kubectl("get", plural, "-o", "json").stdout)["items"]
        ready = sum(
            1
            for item in items
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (item.get("status") or {}).get("conditions", [])
            )
        )
        counts += [ready, len(items)]
    return counts[0], counts[1], counts[2], counts[3]


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenants", type=int, default=500)
    parser.add_argument("--numbers", type=int, default=2000)
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="give up after this many seconds"
    )
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="bench-operator-"))
    with running_kube_api(workdir / "kube") as api, running_redis(workdir / "redis") as redis_url:
        api.kubectl("apply", "-f", str(REPO / "crds"))
        api.kubectl(
            "wait",
            "--for=condition=established",
            "--timeout=60s",
            "crd/tenants.vpbx.io",
            "crd/numbers.vpbx.io",
        )
        api.kubectl("create", "namespace", NAMESPACE)
        env = dict(
            os.environ,
            KUBECONFIG=str(api.kubeconfig),
            VPBX_NAMESPACE=NAMESPACE,
            VPBX_REDIS_URL=redis_url,
            VPBX_RESYNC_INTERVAL="10",
            VPBX_LOG_LEVEL="WARNING",
            VPBX_METRICS_PORT=str(free_port()),
            VPBX_MODE="cluster",
        )
        log = (workdir / "operator.log").open("wb")
        operator = subprocess.Popen(
            [sys.executable, "-m", "vpbx_cli.main", "operator"],
            env=env,
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        stop = threading.Event()
        kubelet = threading.Thread(target=mark_ready_forever, args=(api, stop), daemon=True)
        kubelet.start()
        try:
            file = workdir / "objects.yaml"
            file.write_text(manifests(args.tenants, args.numbers))
            started = time.monotonic()
            api.kubectl("create", "-f", str(file), timeout=600)
            created = time.monotonic() - started
            print(
                f"created {args.tenants} tenants and {args.numbers} numbers in {created:.1f} s",
                flush=True,
            )
            while True:
                tenants_ready, tenants, numbers_ready, numbers = ready_counts(api)
                elapsed = time.monotonic() - started
                print(
                    f"{elapsed:7.1f} s  tenants ready {tenants_ready}/{tenants}  "
                    f"numbers ready {numbers_ready}/{numbers}  "
                    f"operator RSS peak {peak_rss_mib(operator.pid):.0f} MiB",
                    flush=True,
                )
                if tenants_ready == args.tenants and numbers_ready == args.numbers:
                    break
                if elapsed > args.timeout or operator.poll() is not None:
                    print("gave up: not everything became Ready", file=sys.stderr)
                    return 1
                time.sleep(5)
            peak = peak_rss_mib(operator.pid)
            print(
                f"\nall {args.tenants} tenants ({2 * args.tenants} nodes) and {args.numbers} "
                f"numbers Ready {elapsed:.1f} s after creation started; "
                f"operator peak RSS {peak:.0f} MiB"
            )
        finally:
            stop.set()
            operator.terminate()
            operator.wait(timeout=30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
