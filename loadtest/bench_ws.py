"""`make bench-ws`: what SIP over WebSocket costs the edge, per REGISTER and per call.

`vpbx up` of the demo (no CRM) with the edge's WebSocket port on; browsers are
tests/services/sipws.py clients in this process. Measured, printed, never judged:

- REGISTER: `--clients` connections each registering `--registers` times in turn
  (REGISTER, 401, REGISTER with credentials, 200: two transactions through the edge);
  the edge's CPU time (utime + stime from /proc) per registration.
- calls: acme's 101 calls 102, both browsers; 102 answers, 101 hangs up. A call is
  INVITE/407/ACK, INVITE/180/200/ACK and BYE/200 on the caller's leg plus
  INVITE/180/200/ACK and BYE/200 on the callee's, all through the edge. `--calls`
  of them one after another; the edge's CPU time per call.

The figures include the edge's idle work over the run (timers, Redis), which is small
against these loads; on a shared machine they vary by some tens of percent.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from tests.services.ports import free_port, free_port_block, free_port_pair
from tests.services.sipws import SipWsClient

from loadtest.bench_sip import (
    REPO,
    VPBX_BENCH_ENV,
    started_children,
    stop_process,
    wait_answers_options,
    wait_vpbx_up,
)

HOST = "127.0.0.1"
DOMAIN = "acme.vpbx.local"
DEMO = REPO / "examples" / "demo.yaml"


def cpu_seconds(pid: int) -> float:
    """utime + stime of one process, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def browser(url: str, user: str) -> SipWsClient:
    return SipWsClient(url, user, f"acme-{user}-secret", DOMAIN)


async def bench_registers(url: str, edge_pid: int, clients: int, registers: int) -> float:
    agents = [browser(url, "101") for _ in range(clients)]
    for agent in agents:
        await agent.connect()

    async def run(agent: SipWsClient) -> None:
        for _ in range(registers):
            response = await agent.register(expires=60)
            if response.status != 200:
                raise RuntimeError(f"REGISTER answered {response.status}")

    try:
        before, started = cpu_seconds(edge_pid), time.monotonic()
        await asyncio.gather(*(run(agent) for agent in agents))
        used, wall = cpu_seconds(edge_pid) - before, time.monotonic() - started
    finally:
        for agent in agents:
            await agent.register(expires=0)
            await agent.close()
    count = clients * registers
    per_register_ms = 1000 * used / count
    print(
        f"REGISTER over WebSocket: {count} in {wall:.1f} s ({count / wall:.0f}/s) from "
        f"{clients} connections; edge CPU {used:.2f} s = {per_register_ms:.2f} ms per "
        "registration (two transactions)",
        flush=True,
    )
    return per_register_ms


async def bench_calls(url: str, edge_pid: int, calls: int) -> float:
    caller, callee = browser(url, "101"), browser(url, "102")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as media:
        media.bind((HOST, 0))
        rtp_port = media.getsockname()[1]
        for agent in (caller, callee):
            await agent.connect()
            if (await agent.register()).status != 200:
                raise RuntimeError(f"{agent.user} could not register")

        async def answer_all() -> None:
            for _ in range(calls):
                invite = await callee.wait_invite(timeout=30)
                await callee.answer(invite, rtp_port)
                await callee.wait_ack()
                await callee.wait_bye()

        answering = asyncio.get_running_loop().create_task(answer_all())
        try:
            before, started = cpu_seconds(edge_pid), time.monotonic()
            for _ in range(calls):
                final = await caller.invite(f"sip:102@{DOMAIN}", rtp_port)
                if final.status != 200:
                    raise RuntimeError(f"call answered {final.status}")
                if (await caller.bye()).status != 200:
                    raise RuntimeError("BYE not answered 200")
            await asyncio.wait_for(answering, 30)
            used, wall = cpu_seconds(edge_pid) - before, time.monotonic() - started
        finally:
            answering.cancel()
            for agent in (caller, callee):
                await agent.register(expires=0)
                await agent.close()
    per_call_ms = 1000 * used / calls
    print(
        f"calls browser to browser over WebSocket: {calls} in {wall:.1f} s; edge CPU "
        f"{used:.2f} s = {per_call_ms:.2f} ms per call (both legs)",
        flush=True,
    )
    return per_call_ms


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20, help="WebSocket connections")
    parser.add_argument("--registers", type=int, default=25, help="REGISTERs per connection")
    parser.add_argument("--calls", type=int, default=50, help="calls, one after another")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="vpbx-bench-ws-"))
    ws_port = free_port()
    env = dict(os.environ)
    env.pop("VPBX_REDIS_URL", None)
    env.pop("VPBX_CLICKHOUSE_URL", None)
    env.update(VPBX_BENCH_ENV)
    env["VPBX_DIGEST_ALGORITHMS"] = '["SHA-256", "MD5"]'
    command = [
        sys.executable, "-m", "vpbx_cli.main", "up",
        "-f", str(DEMO),
        "--host", HOST,
        "--sip-port", str(free_port_pair(HOST)),
        "--sip-ws-port", str(ws_port),
        "--node-port-base", str(free_port_block(8, 30000, 40000)),
        "--rtp-port-base", str(free_port_block(16, 40000, 50000)),
        "--redis-port", str(free_port(socket.SOCK_STREAM, HOST)),
        "--control-port", str(free_port()),
        "--var-dir", str(workdir / "var"),
        "--no-crm",
    ]  # fmt: skip
    log_path = workdir / "vpbx-up.log"
    print(f"{os.cpu_count()} CPUs shared by everything; files in {workdir}", flush=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for port in wait_vpbx_up(process, log_path, timeout=90):
            wait_answers_options(port, 60, log_path)
        (edge_pid,) = [pid for pid, name in started_children(log_path).items() if name == "edge"]
        url = f"ws://{HOST}:{ws_port}/"
        asyncio.run(bench_registers(url, edge_pid, args.clients, args.registers))
        asyncio.run(bench_calls(url, edge_pid, args.calls))
    finally:
        stop_process(process, signal.SIGINT, 30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
