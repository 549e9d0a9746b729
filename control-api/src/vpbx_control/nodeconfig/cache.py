"""Compiled node configs kept between polls.

Every media node asks for its config on start, on each invalidation and every
30 seconds; nearly all of those asks find nothing changed. A compiled config
is reused while the tenant's config revision (bumped by every committed
change, on any API replica) is the one it was compiled at. Entries also expire
after ``max_age_s``: a change the revision cannot see (a Number resource edited
with kubectl, a lost Redis write) reaches the nodes within that time.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from vpbx_common.nodeconfig import NodeConfig

from .publisher import ConfigPublisher


@dataclass(frozen=True)
class CompiledConfig:
    body: bytes
    etag: str


@dataclass(frozen=True)
class _Entry:
    revision: str
    compiled_at: float
    config: CompiledConfig


class NodeConfigCache:
    def __init__(
        self,
        publisher: ConfigPublisher,
        *,
        max_age_s: float = 30.0,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publisher = publisher
        self._max_age_s = max_age_s
        self._max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()
        self.hits = 0
        self.compiles = 0

    async def get(
        self, tenant_id: str, city: str, compile_config: Callable[[], Awaitable[NodeConfig]]
    ) -> CompiledConfig:
        key = (tenant_id, city)
        # Read before compiling: a change committed meanwhile bumps the revision
        # past this one, so the next ask compiles again.
        revision = await self._publisher.revision(tenant_id)
        entry = self._entries.get(key)
        now = self._clock()
        if (
            entry is not None
            and revision is not None
            and entry.revision == revision
            and now - entry.compiled_at < self._max_age_s
        ):
            self.hits += 1
            self._entries.move_to_end(key)
            return entry.config
        config = await compile_config()
        self.compiles += 1
        compiled = CompiledConfig(
            body=config.model_dump_json().encode(), etag=f'"{config.version}"'
        )
        if revision is None:
            self._entries.pop(key, None)
            return compiled
        self._entries[key] = _Entry(revision, now, compiled)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return compiled
