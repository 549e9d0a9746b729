"""Which of the tenant's trunks a request comes from, by its source address.

A trunk's calls come from its ``allowed_addresses``, else from the addresses its
host resolves to (vpbx_common.carriers). Both the tenant's own trunks and the
platform's are in the node's config; a call sent straight to the node (a
registered trunk sends its calls to the node's Contact) is taken only from one
of them.

Host names are resolved in the background: when the config changes and every
``refresh_s`` seconds after, so a carrier whose address changed is known again
after at most that long. Until its name first resolves, a trunk given by name
without allowed addresses matches nothing; a name that stops resolving keeps its
last answer. ``match`` itself never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence

from vpbx_common.carriers import CarrierNetworks, host_networks, resolve_host
from vpbx_common.nodeconfig.model import TrunkEntry
from vpbx_common.outbound import parse_address

logger = logging.getLogger(__name__)

Resolve = Callable[[str], Awaitable[list[str]]]


async def _resolve(host: str) -> list[str]:
    return await resolve_host(host)


class TrunkSources:
    def __init__(self, *, resolve: Resolve = _resolve, refresh_s: float = 300.0) -> None:
        self._resolve_host = resolve
        self.refresh_s = refresh_s
        self._trunks: tuple[TrunkEntry, ...] = ()
        self._networks: list[tuple[TrunkEntry, CarrierNetworks]] = []
        self._resolved: dict[str, list[str]] = {}  # host name -> its addresses, last resolved
        self._changed = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.resolutions = 0  # passes of the resolver (tests wait on it)

    def match(self, host: str) -> TrunkEntry | None:
        """The first trunk (by priority) whose networks hold the address ``host``."""
        for trunk, networks in self._networks:
            if networks.contains(host):
                return trunk
        return None

    def update(self, trunks: Sequence[TrunkEntry]) -> None:
        """The config's trunks changed (or arrived): match with these from now on."""
        self._trunks = tuple(sorted(trunks, key=lambda trunk: trunk.priority))
        self._rebuild()
        if any(_needs_resolving(trunk) for trunk in self._trunks):
            self._changed.set()

    def _rebuild(self) -> None:
        networks: list[tuple[TrunkEntry, CarrierNetworks]] = []
        for trunk in self._trunks:
            if trunk.allowed_addresses:
                found = CarrierNetworks.parse(trunk.allowed_addresses)
            elif parse_address(trunk.host) is not None:
                found = CarrierNetworks(tuple(host_networks([trunk.host])))
            else:
                found = CarrierNetworks(tuple(host_networks(self._resolved.get(trunk.host, []))))
            networks.append((trunk, found))
        self._networks = networks

    def start(self, trunks: Sequence[TrunkEntry]) -> None:
        self.update(trunks)
        self._task = asyncio.get_running_loop().create_task(self._keep_resolving())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _keep_resolving(self) -> None:
        while True:
            self._changed.clear()  # a change from now on means another pass
            hosts = sorted({t.host for t in self._trunks if _needs_resolving(t)})
            if hosts:
                answers = await asyncio.gather(*(self._resolve_host(host) for host in hosts))
                # A name that does not resolve this time keeps its last answer (a DNS
                # hiccup must not cut a carrier off); one no trunk uses is forgotten.
                self._resolved = {
                    host: answer or self._resolved.get(host, [])
                    for host, answer in zip(hosts, answers, strict=True)
                }
                self._rebuild()
                self.resolutions += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), self.refresh_s)


def _needs_resolving(trunk: TrunkEntry) -> bool:
    return not trunk.allowed_addresses and parse_address(trunk.host) is None
