"""Where local mode's processes listen, and which node processes to start or stop.

Every media node `vpbx up` runs sits in a *slot*: slot ``i`` listens for SIP on
``node_port_base + i`` and relays RTP in ``rtp_ports_per_node`` ports from
``rtp_port_base + i * rtp_ports_per_node`` on. A node keeps its slot for as long
as it runs, so a tenant added while the platform runs never moves a running
node: it takes the lowest slot no running or still-stopping node holds, whose
SIP port is free. Planning is pure (``plan_node_changes``); the launcher applies
the result.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from vpbx_operator.desired import NodePlan

logger = logging.getLogger(__name__)

# A call through a node takes 4 ports (2 legs x RTP+RTCP): 4000 ports carry 1000
# concurrent calls per node (VPBX_RTP_PORT_MIN/MAX; see docs/architecture.md).
RTP_PORTS_PER_NODE = 4000
MAX_PORT = 65_535


class LaunchError(RuntimeError):
    pass


@dataclass(frozen=True)
class LocalLayout:
    host: str = "127.0.0.1"
    sip_port: int = 5060
    # SIP over WebSocket for browsers (the agent workspace), plain ws://; 0 = off.
    sip_ws_port: int = 5066
    node_port_base: int = 5070
    rtp_port_base: int = 20000
    rtp_ports_per_node: int = RTP_PORTS_PER_NODE
    redis_port: int = 6390
    var_dir: Path = Path("var")
    sip_t1: float = 0.5
    control_port: int = 8000
    crm_port: int = 8001
    crm: bool = True  # False: no CRM process (the nodes' crm-lookup steps fall through)

    @property
    def control_url(self) -> str:
        return f"http://{self.host}:{self.control_port}"

    @property
    def crm_url(self) -> str:
        return f"http://{self.host}:{self.crm_port}"

    @property
    def crm_origins(self) -> list[str]:
        """The origins a browser names the CRM's agent workspace by: the control API lets
        them call it (CORS). A loopback or wildcard host is reached as localhost too."""
        names = [self.host]
        if self.host in ("127.0.0.1", "0.0.0.0", "::1", "::"):
            names = ["127.0.0.1", "localhost"]
        return [f"http://{name}:{self.crm_port}" for name in names]

    @property
    def numbers_file(self) -> Path:
        """The control API's local store of Tenant and Number resources."""
        return self.var_dir.resolve() / "numbers.yaml"

    @property
    def service_ports(self) -> frozenset[int]:
        """The ports of the edge (SIP and WebSocket), the control API, the CRM and the
        private Redis: never a node's."""
        ports = {self.sip_port, self.control_port, self.crm_port, self.redis_port}
        if self.sip_ws_port:
            ports.add(self.sip_ws_port)
        return frozenset(ports)

    @property
    def sip_ws_url(self) -> str | None:
        """Where browsers connect for SIP over WebSocket, None when it is off."""
        return f"ws://{self.host}:{self.sip_ws_port}" if self.sip_ws_port else None

    def node_port(self, index: int) -> int:
        return self.node_port_base + index

    def node_address(self, index: int) -> str:
        return f"{self.host}:{self.node_port(index)}"

    def rtp_range(self, index: int) -> tuple[int, int]:
        """The RTP ports of the node at `index`: rtp_ports_per_node from the base on."""
        if self.rtp_ports_per_node < 2:
            raise LaunchError("a node needs at least 2 RTP ports (one RTP/RTCP pair)")
        start = self.rtp_port_base + index * self.rtp_ports_per_node
        end = start + self.rtp_ports_per_node - 1
        if end > MAX_PORT:
            raise LaunchError(
                f"RTP ports {start}-{end} of node {index + 1} go past {MAX_PORT}: lower "
                "--rtp-port-base or --rtp-ports-per-node"
            )
        return start, end


PortFree = Callable[[int], bool]
"""Whether a SIP port can be bound right now (UDP and TCP)."""


def sip_port_free(host: str) -> PortFree:
    """A probe of ``host``'s ports: both UDP and TCP bind (TCP as a server would, reusing
    an address in TIME_WAIT), so a node given the port can listen on it."""

    def free(port: int) -> bool:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as probe:
                if kind == socket.SOCK_STREAM:
                    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind((host, port))
                except OSError:
                    return False
        return True

    return free


@dataclass(frozen=True)
class NodeStart:
    plan: NodePlan
    slot: int


@dataclass(frozen=True)
class Unplaced:
    plan: NodePlan
    reason: str


@dataclass(frozen=True)
class NodeChanges:
    """What to do to the running nodes so they match the plans."""

    start: tuple[NodeStart, ...] = ()
    stop: tuple[str, ...] = ()
    unplaced: tuple[Unplaced, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.start or self.stop or self.unplaced)


def plan_node_changes(
    plans: Sequence[NodePlan],
    running: Mapping[str, int],
    held: Collection[int],
    layout: LocalLayout,
    port_free: PortFree = lambda _port: True,
) -> NodeChanges:
    """Start the planned nodes that do not run, stop the running ones no plan names.

    ``running`` maps each running node's name to its slot; ``held`` are the slots of
    nodes still stopping (their ports are not free yet). A new node takes the lowest
    slot nobody holds whose SIP port is not a service's and passes ``port_free``;
    when the ports run out (past 65535) it is left unplaced, with why.
    """
    wanted = {plan.name for plan in plans}
    stop = tuple(name for name in running if name not in wanted)
    # A node stopped now keeps its ports until it has drained and exited.
    taken = set(held) | set(running.values())
    start: list[NodeStart] = []
    unplaced: list[Unplaced] = []
    candidate = 0
    exhausted: str | None = None
    for plan in plans:
        if plan.name in running:
            continue
        slot: int | None = None
        while exhausted is None:
            port = layout.node_port(candidate)
            if port > MAX_PORT:
                exhausted = f"no SIP port left: slot {candidate + 1} would need port {port}"
                break
            try:
                layout.rtp_range(candidate)
            except LaunchError as exc:
                exhausted = str(exc)
                break
            current = candidate
            candidate += 1
            if current in taken or port in layout.service_ports:
                continue
            if not port_free(port):
                logger.warning("port %d is in use by another process; node slot skipped", port)
                continue
            slot = current
            break
        if slot is None:
            unplaced.append(Unplaced(plan, exhausted or "no free slot"))
            continue
        taken.add(slot)
        start.append(NodeStart(plan, slot))
    return NodeChanges(tuple(start), stop, tuple(unplaced))
