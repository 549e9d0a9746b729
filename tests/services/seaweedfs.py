"""A private SeaweedFS (master, volume, filer and S3 gateway in one process) on loopback.

The object storage tests run the S3 backend against it. ``weed`` is built from
its Go module by scripts/build-seaweedfs.sh and cached; a cold build takes 5-15
minutes, so it runs once after collection (outside any test timeout) when a
selected test uses ``seaweedfs_s3``. `make test` builds it before pytest starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import signal
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.services.ports import free_port
from tests.services.toolbuild import BuildBeforeTests, run_build_script

logger = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO / "scripts" / "build-seaweedfs.sh"
READY_TIMEOUT_SECONDS = 90.0
TERM_GRACE_SECONDS = 3.0
KILL_WAIT_SECONDS = 10.0
# Buckets the fixture creates and checks writable before handing the server out.
TEST_BUCKET = "vpbx-test"


class SeaweedFSError(RuntimeError):
    """The test SeaweedFS could not be built or started."""


@dataclass(frozen=True)
class SeaweedS3:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"


def build_seaweedfs(echo: bool = True) -> Path:
    """Build (or find cached) ``weed``; the directory holding it."""
    return run_build_script(BUILD_SCRIPT, "weed", echo=echo)


_BUILD = BuildBeforeTests(
    fixture="seaweedfs_s3",
    announcement=(
        "seaweedfs: building weed unless cached (a cold build takes 5-15 minutes on 2 cores)"
    ),
    build=build_seaweedfs,
)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Build before the first test so a cold build never counts against a test timeout."""
    _BUILD.collection_finished(session)


def _server_args(
    workdir: Path, s3_port: int, s3_config: Path, grpc_ports: dict[str, int]
) -> list[str]:
    # Every listener on its own free loopback port: SeaweedFS's defaults (9333,
    # 8080, 8888, 8333 and their +10000 gRPC ports) may be taken by a parallel run.
    master, volume, filer = free_port(), free_port(), free_port()
    return [
        "server",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-dir={workdir / 'data'}",
        f"-master.port={master}",
        f"-master.port.grpc={grpc_ports['master']}",
        # Small volumes (the default is 30 GB each) and room for several buckets:
        # each bucket is a collection that grows 7 volumes on its first write.
        "-master.volumeSizeLimitMB=16",
        "-master.electionTimeout=1s",
        f"-volume.port={volume}",
        f"-volume.port.grpc={grpc_ports['volume']}",
        "-volume.max=64",
        # A throwaway server need not tell the master it is leaving (10 s by default).
        "-volume.preStopSeconds=0",
        "-filer",
        f"-filer.port={filer}",
        f"-filer.port.grpc={grpc_ports['filer']}",
        "-s3",
        f"-s3.port={s3_port}",
        f"-s3.port.grpc={grpc_ports['s3']}",
        f"-s3.config={s3_config}",
        # Extra listeners with fixed default ports that the tests do not use.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-metricsPort={free_port()}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        f"-s3.localSocket={workdir / 's3.sock'}",
        # No usage reports to seaweedfs.com from a test run.
        "-master.telemetry=false",
    ]


@contextmanager
def running_seaweedfs(workdir: Path, bin_dir: Path) -> Iterator[SeaweedS3]:
    """``weed server -s3`` on free loopback ports with one S3 identity; yields its S3 side."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "data").mkdir(exist_ok=True)
    access_key = f"vpbx{secrets.token_hex(4)}"
    secret_key = secrets.token_urlsafe(24)
    s3_config = workdir / "s3.json"
    s3_config.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "vpbx-test",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                    }
                ]
            }
        )
    )
    s3_port = free_port()
    grpc_ports = {name: free_port() for name in ("master", "volume", "filer", "s3")}
    log_path = workdir / "weed.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(bin_dir / "weed"), *_server_args(workdir, s3_port, s3_config, grpc_ports)],
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
            # Its own process group: weed starts no children, but a kill must not
            # reach pytest if it ever does.
            start_new_session=True,
            # glog writes its own log files into TMPDIR: keep them with the server's.
            env={**os.environ, "TMPDIR": str(workdir)},
        )
    server = SeaweedS3(
        endpoint=f"http://127.0.0.1:{s3_port}",
        bucket=TEST_BUCKET,
        access_key=access_key,
        secret_key=secret_key,
    )
    started = time.monotonic()
    try:
        # In a thread of its own: the fixture may be set up from inside a running
        # event loop (an async fixture asking for it), where asyncio.run refuses.
        with ThreadPoolExecutor(max_workers=1) as executor:
            executor.submit(asyncio.run, _wait_writable(server, process, log_path)).result()
        logger.info(
            "seaweedfs S3 ready at %s in %.1fs", server.endpoint, time.monotonic() - started
        )
        yield server
    finally:
        _stop(process)
        _remove_grpc_sockets(grpc_ports)


async def _wait_writable(
    server: SeaweedS3, process: subprocess.Popen[bytes], log_path: Path
) -> None:
    """Until the test bucket exists and takes a write: the S3 port opens before the
    filer and the first volume are ready, and early writes fail meanwhile."""
    from vpbx_common.storage import StorageError
    from vpbx_common.storage.s3 import S3ObjectStore

    store = S3ObjectStore(server.endpoint, server.bucket, server.access_key, server.secret_key)
    deadline = time.monotonic() + READY_TIMEOUT_SECONDS
    last_error = "nothing tried yet"
    try:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SeaweedFSError(f"weed exited with {process.returncode}:\n{_tail(log_path)}")
            try:
                await store.ensure_bucket()
                await store.put_bytes("ready-probe", b"ok", "text/plain")
                await store.delete("ready-probe")
                return
            except StorageError as error:
                last_error = str(error)
            await asyncio.sleep(0.25)
    finally:
        await store.close()
    raise SeaweedFSError(
        f"seaweedfs S3 not writable after {READY_TIMEOUT_SECONDS}s ({last_error}):\n"
        f"{_tail(log_path)}"
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=TERM_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        # weed's orderly shutdown can take many seconds; the data is thrown away anyway.
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=KILL_WAIT_SECONDS)


def _remove_grpc_sockets(grpc_ports: dict[str, int]) -> None:
    """weed also serves gRPC on /tmp/seaweedfs-<name>-grpc-<port>.sock (a fixed
    directory, not TMPDIR) and a killed server leaves them there."""
    for name, port in grpc_ports.items():
        Path(f"/tmp/seaweedfs-{name}-grpc-{port}.sock").unlink(missing_ok=True)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError as error:
        return f"(no log: {error})"


@pytest.fixture(scope="session")
def seaweedfs_s3(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SeaweedS3]:
    """A SeaweedFS S3 endpoint with the bucket TEST_BUCKET, for the whole session."""
    bin_dir = _BUILD.directory(request.config)
    try:
        with running_seaweedfs(tmp_path_factory.mktemp("seaweedfs"), bin_dir) as server:
            yield server
    except SeaweedFSError as error:
        pytest.fail(f"{error} (run the tests through `make test`)")
