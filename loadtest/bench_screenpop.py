"""`make bench-screenpop`: how fast a screen pop reaches the agent's browser.

`vpbx up` of the demo with its CRM and the edge's SIP WebSocket. The agent is acme's
Ivan Petrov (extension 101, given a password here), connected to the CRM's live feed
(GET /v1/live) with a WebSocket client in this process. Measured, printed, never judged:

1. XADD -> WebSocket: `--events` call.offered events for 101 written to the nodes' stream
   as a node writes them, paced at `--event-rate` per second; the time from just before
   each XADD to the pop's arrival at the client (one clock: this process).
2. Real calls: a browser device of 101 (SIP over WebSocket, tests/services/sipws.py)
   registered at the edge, answering every INVITE 486 Busy Here; sipp calls acme's main
   number through the edge at 1 and 20 calls/s (`--calls` each). Per call, the time from
   sipp sending the INVITE to the edge (sipp's message trace) to the pop at the client (the
   issue's measure: INVITE at the edge -> card event), the time from
   the node's call.offered (the event's at_ms, the node's clock = this host's) to the pop
   at the client, and the pop's lead over the INVITE reaching the device (positive: the
   card was there before the phone rang).

Everything shares this machine's cores with the platform; figures vary with load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import httpx
import redis.asyncio as redis
from tests.services.ports import free_port, free_port_block, free_port_pair
from tests.services.sipp import TONE_FILE_NAME, write_pcmu_tone
from tests.services.sipws import SipWsClient
from websockets.asyncio.client import ClientConnection, connect

from loadtest.bench_sip import (
    REPO,
    VPBX_BENCH_ENV,
    stop_process,
    wait_answers_options,
    wait_vpbx_up,
)
from vpbx_common.events import CALL_EVENTS_STREAM, CallEvent, CallEventType, stream_fields

HOST = "127.0.0.1"
DOMAIN = "acme.vpbx.local"
DEMO = REPO / "examples" / "demo.yaml"
ADMIN = ("admin@acme.vpbx.local", "acme-admin-secret")
ACME_MAIN = "+74950000001"
AGENT_PASSWORD = "bench-agent-password"  # noqa: S105 (a throwaway platform's)
SCENARIO = REPO / "loadtest" / "scenarios" / "uac_call.xml"


def percentiles(values: list[float]) -> str:
    if not values:
        return "no samples"
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    return (
        f"n={len(values)} p50={statistics.median(ordered):.1f} ms p95={at(0.95):.1f} ms "
        f"p99={at(0.99):.1f} ms max={ordered[-1]:.1f} ms"
    )


def agent_token(control_url: str) -> str:
    """Ivan Petrov (101) gets a password from the admin and logs in."""
    with httpx.Client(base_url=control_url, timeout=10) as client:
        login = client.post("/v1/auth/login", json={"email": ADMIN[0], "password": ADMIN[1]})
        login.raise_for_status()
        admin = {"Authorization": f"Bearer {login.json()['access_token']}"}
        ivan = client.get("/v1/users", params={"extension": "101"}, headers=admin).json()
        user = ivan["items"][0]
        changed = client.patch(
            f"/v1/users/{user['id']}", json={"password": AGENT_PASSWORD}, headers=admin
        )
        changed.raise_for_status()
        mine = client.post(
            "/v1/auth/login", json={"email": user["email"], "password": AGENT_PASSWORD}
        )
        mine.raise_for_status()
        return str(mine.json()["access_token"])


async def open_feed(crm_url: str, token: str) -> ClientConnection:
    ws = await connect(crm_url.replace("http://", "ws://") + "/v1/live")
    await ws.send(json.dumps({"type": "auth", "token": token}))
    hello = json.loads(await ws.recv())
    if hello.get("type") != "hello":
        raise RuntimeError(f"the live feed said {hello}")
    return ws


async def pops(
    ws: ClientConnection,
    arrived: dict[str, float],
    stop: asyncio.Event,
    got: asyncio.Event | None = None,
) -> None:
    while not stop.is_set():
        try:
            text = await asyncio.wait_for(ws.recv(), timeout=0.5)
        except TimeoutError:
            continue
        now = time.time() * 1000
        message = json.loads(text)
        if message.get("type") == "screen-pop":
            arrived[message["call_id"]] = now
            arrived[f"at:{message['call_id']}"] = float(message["at_ms"])
            if got is not None:
                got.set()


async def bench_xadd(redis_url: str, ws: ClientConnection, events: int, rate: float) -> None:
    arrived: dict[str, float] = {}
    stop = asyncio.Event()
    got = asyncio.Event()
    reader = asyncio.create_task(pops(ws, arrived, stop, got))
    client = redis.Redis.from_url(redis_url)
    sent: dict[str, float] = {}
    try:
        for n in range(events):
            call_id = f"bench-pop-{n}-{os.getpid()}"
            event = CallEvent(
                CallEventType.OFFERED,
                call_id,
                tenant="acme",
                city="msk",
                node="bench",
                number=ACME_MAIN,
                caller="+79130000001",
                callee="",
                at_ms=int(time.time() * 1000),
                direction="inbound",
                offered=("101",),
            )
            fields = dict(stream_fields(event))
            sent[call_id] = time.time() * 1000
            await client.xadd(CALL_EVENTS_STREAM, fields)  # type: ignore[arg-type]
            await asyncio.sleep(1 / rate)
        deadline = time.monotonic() + 5
        while len([k for k in arrived if k in sent]) < events:
            got.clear()
            try:
                await asyncio.wait_for(got.wait(), max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                break
    finally:
        stop.set()
        await reader
        await client.aclose()
    latencies = [arrived[k] - sent[k] for k in sent if k in arrived]
    print(f"XADD -> WebSocket at {rate:g} events/s: {percentiles(latencies)}", flush=True)
    if len(latencies) < events:
        print(f"  {events - len(latencies)} pops did not arrive within 5 s", flush=True)


SIPP_STAMP = re.compile(r"^-{10,} (\d{4}-\d\d-\d\d)\s+(\d\d:\d\d:\d\d\.\d+)\s*$")


def invites_sent(message_log: Path) -> list[float]:
    """Epoch ms at which sipp sent each call's first INVITE, in order.

    sipp's message trace stamps every message with local wall-clock time to the
    microsecond ("----- 2026-12-07 19:47:07.741069"); the edge listens on this host,
    so sending is arrival at the edge to within the loopback's microseconds.
    """
    sent: list[float] = []
    seen: set[str] = set()
    stamp = 0.0
    outgoing = False
    first_line = False
    invite = False
    for line in message_log.read_text(errors="replace").splitlines():
        stamped = SIPP_STAMP.match(line)
        if stamped:
            when = datetime.strptime(" ".join(stamped.groups()), "%Y-%m-%d %H:%M:%S.%f")
            stamp = time.mktime(when.timetuple()) * 1000 + when.microsecond / 1000
            outgoing = False
            first_line = False
        elif line.startswith("UDP message sent"):
            outgoing = True
        elif outgoing and not first_line and line.strip():
            first_line = True
            invite = line.startswith("INVITE ")
        elif outgoing and first_line and invite and line.lower().startswith("call-id:"):
            call_id = line.split(":", 1)[1].strip()
            if call_id not in seen:
                seen.add(call_id)
                sent.append(stamp)
            outgoing = False
    return sent


async def bench_calls(
    crm_ws: ClientConnection,
    sip_ws_url: str,
    sip_port: int,
    rate: float,
    calls: int,
    workdir: Path,
) -> None:
    device = SipWsClient(sip_ws_url, "101", "acme-101-secret", DOMAIN)
    await device.connect()
    registered = await device.register()
    if registered.status != 200:
        raise RuntimeError(f"the device's REGISTER got {registered.status}")
    rung: dict[str, float] = {}
    arrived: dict[str, float] = {}
    stop = asyncio.Event()
    reader = asyncio.create_task(pops(crm_ws, arrived, stop))

    async def refuse() -> None:
        while not stop.is_set():
            try:
                invite = await device.wait_invite(timeout=0.5)
            except TimeoutError:
                continue
            rung[invite.call_id] = time.time() * 1000
            await device.send(device.response_text(invite, 486, "Busy Here", tag="bench"))

    refuser = asyncio.create_task(refuse())
    write_pcmu_tone(workdir / TONE_FILE_NAME)
    messages = workdir / f"sipp-{rate:g}-messages.log"
    sipp = await asyncio.create_subprocess_exec(
        "sipp", "-sf", str(SCENARIO), "-s", ACME_MAIN, f"{HOST}:{sip_port}",
        "-i", HOST, "-p", str(free_port_pair(HOST)),
        "-mi", HOST, "-mp", str(free_port_block(4, 50000, 60000)),
        "-r", f"{rate:g}", "-m", str(calls), "-d", "200", "-timeout", "60s",
        "-key", "domain", HOST, "-key", "caller", "+79130000001", "-rtp_echo",
        "-nostdin", "-trace_err", "-error_file", str(workdir / f"sipp-{rate:g}-errors.log"),
        "-trace_msg", "-message_file", str(messages),
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        cwd=workdir,  # the scenario names its tone file relatively
    )  # fmt: skip
    code = await sipp.wait()
    await asyncio.sleep(1)
    stop.set()
    await asyncio.gather(reader, refuser)
    await device.close()
    # Node call ids differ from the device leg's Call-ID: pair them by order of arrival.
    pop_ids = [k for k in arrived if not k.startswith("at:")]
    pop_ids.sort(key=lambda k: arrived[k])
    ring_times = sorted(rung.values())
    from_event = [arrived[k] - arrived[f"at:{k}"] for k in pop_ids]
    invites = invites_sent(messages)
    from_invite = [arrived[k] - sent for k, sent in zip(pop_ids, invites, strict=False)]
    leads = [ring - arrived[k] for k, ring in zip(pop_ids, ring_times, strict=False)]
    print(
        f"sipp at {rate:g} calls/s ({calls} calls, {len(pop_ids)} pops, "
        f"{len(ring_times)} INVITEs at the device; sipp exit {code}):",
        flush=True,
    )
    print(f"  INVITE sent to the edge -> WebSocket: {percentiles(from_invite)}", flush=True)
    print(f"  node's call.offered -> WebSocket: {percentiles(from_event)}", flush=True)
    print(f"  pop's lead over the device's INVITE: {percentiles(leads)}", flush=True)
    if leads:
        first = sum(1 for lead in leads if lead > 0)
        print(f"  pop first in {first} of {len(leads)} calls", flush=True)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument("--event-rate", type=float, default=50.0)
    parser.add_argument("--calls", type=int, default=0, help="per rate; default 20 and 200")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="vpbx-bench-screenpop-"))
    sip_port = free_port_pair(HOST)
    ws_port = free_port()
    redis_port = free_port(socket.SOCK_STREAM, HOST)
    control_port = free_port()
    crm_port = free_port()
    env = dict(os.environ)
    env.pop("VPBX_REDIS_URL", None)
    env.pop("VPBX_CLICKHOUSE_URL", None)
    env.update(VPBX_BENCH_ENV)
    env["VPBX_DIGEST_ALGORITHMS"] = '["SHA-256", "MD5"]'
    command = [
        sys.executable, "-m", "vpbx_cli.main", "up",
        "-f", str(DEMO),
        "--host", HOST,
        "--sip-port", str(sip_port),
        "--sip-ws-port", str(ws_port),
        "--node-port-base", str(free_port_block(8, 30000, 40000)),
        "--rtp-port-base", str(free_port_block(16, 40000, 50000)),
        "--redis-port", str(redis_port),
        "--control-port", str(control_port),
        "--crm-port", str(crm_port),
        "--var-dir", str(workdir / "var"),
    ]  # fmt: skip
    log_path = workdir / "vpbx-up.log"
    print(f"{os.cpu_count()} CPUs shared by everything; files in {workdir}", flush=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        for port in wait_vpbx_up(process, log_path, timeout=120):
            wait_answers_options(port, 60, log_path)
        token = agent_token(f"http://{HOST}:{control_port}")
        crm_url = f"http://{HOST}:{crm_port}"

        async def run() -> None:
            ws = await open_feed(crm_url, token)
            try:
                await bench_xadd(f"redis://{HOST}:{redis_port}/0", ws, args.events, args.event_rate)
                for rate, calls in ((1.0, args.calls or 20), (20.0, args.calls or 200)):
                    await bench_calls(ws, f"ws://{HOST}:{ws_port}/", sip_port, rate, calls, workdir)
            finally:
                await ws.close()

        asyncio.run(run())
    finally:
        stop_process(process, signal.SIGINT, 30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
