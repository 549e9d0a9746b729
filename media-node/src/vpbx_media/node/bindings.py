"""Registrations (RFC 3261 section 10) kept in Redis, shared by every node of a tenant.

One hash per extension: field = contact URI, value = the binding as JSON.
The hash expires with its longest binding; shorter ones are filtered on read,
so a phone that stops refreshing disappears without a sweeper.

A REGISTER costs one round trip to Redis: `BindingStore.update` runs one Lua
script that drops expired bindings, applies the request's contacts (skipping
out-of-order retransmissions), sets the hash's expiry and returns what is left,
atomically, so two devices of one extension registering at once through two
nodes cannot lose each other's binding.
"""

from __future__ import annotations

import builtins
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import redis.asyncio as redis


@dataclass(frozen=True, slots=True)
class Binding:
    tenant: str
    extension: str
    contact: str
    path: tuple[str, ...]
    expires_at: float
    call_id: str
    cseq: int
    user_agent: str = ""
    instance: str = ""

    def remaining(self, now: float) -> int:
        return max(0, int(self.expires_at - now))

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str | bytes) -> Binding:
        data = json.loads(text)
        data["path"] = tuple(data.get("path", ()))
        return cls(**data)


@dataclass(frozen=True, slots=True)
class ContactChange:
    """One Contact of a REGISTER: bind it (binding set) or remove it (binding None)."""

    contact: str
    binding: Binding | None


# KEYS[1]: the extension's hash.
# ARGV: now, Call-ID, CSeq of the REGISTER, then pairs (contact, binding JSON or "" to remove).
# Returns the live bindings' JSON after the change.
_UPDATE_SCRIPT = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
local call_id = ARGV[2]
local cseq = tonumber(ARGV[3])
local live = {}
local stored = redis.call('HGETALL', key)
for i = 1, #stored, 2 do
  local ok, binding = pcall(cjson.decode, stored[i + 1])
  local expires_at = ok and type(binding) == 'table' and tonumber(binding.expires_at)
  if expires_at and expires_at > now then
    live[stored[i]] = {stored[i + 1], binding}
  else
    redis.call('HDEL', key, stored[i])
  end
end
for i = 4, #ARGV, 2 do
  local contact, value = ARGV[i], ARGV[i + 1]
  local previous = live[contact]
  if previous and previous[2].call_id == call_id and tonumber(previous[2].cseq) >= cseq then
    -- an out-of-order retransmission (RFC 3261 10.3 step 7): the binding stays
  elseif value == '' then
    if previous then
      redis.call('HDEL', key, contact)
      live[contact] = nil
    end
  else
    redis.call('HSET', key, contact, value)
    live[contact] = {value, cjson.decode(value)}
  end
end
local result = {}
local longest = 0
for _, entry in pairs(live) do
  result[#result + 1] = entry[1]
  local left = tonumber(entry[2].expires_at) - now
  if left > longest then
    longest = left
  end
end
if #result > 0 then
  redis.call('EXPIRE', key, math.floor(longest) + 1)
end
return result
"""


class BindingStore:
    def __init__(self, client: redis.Redis, prefix: str = "vpbx:reg") -> None:
        self._redis = client
        self._prefix = prefix
        self._update = client.register_script(_UPDATE_SCRIPT)

    def _key(self, tenant: str, extension: str) -> str:
        return f"{self._prefix}:{tenant}:{extension}"

    async def list(self, tenant: str, extension: str, now: float | None = None) -> list[Binding]:
        now = time.time() if now is None else now
        raw = await self._redis.hgetall(self._key(tenant, extension))
        live: list[Binding] = []
        expired: list[bytes | str] = []
        for field, value in raw.items():
            binding = Binding.from_json(value)
            if binding.expires_at > now:
                live.append(binding)
            else:
                expired.append(field)
        if expired:
            await self._redis.hdel(self._key(tenant, extension), *expired)
        live.sort(key=lambda b: b.expires_at, reverse=True)
        return live

    async def update(
        self,
        tenant: str,
        extension: str,
        *,
        call_id: str,
        cseq: int,
        changes: Sequence[ContactChange],
        now: float,
    ) -> builtins.list[Binding]:
        """Apply one REGISTER's contacts in one round trip; the bindings left, longest first.

        A change whose contact is bound with the same Call-ID and an equal or higher
        CSeq is a late retransmission and is skipped. No changes: just the bindings.
        """
        args: list[str | float | int] = [repr(now), call_id, cseq]
        for change in changes:
            args += [change.contact, "" if change.binding is None else change.binding.to_json()]
        raw = await self._update(keys=[self._key(tenant, extension)], args=args)
        live = [Binding.from_json(value) for value in raw]
        live.sort(key=lambda b: b.expires_at, reverse=True)
        return live

    async def put(self, binding: Binding) -> None:
        """Bind one contact unconditionally (no REGISTER to order it against)."""
        await self.update(
            binding.tenant,
            binding.extension,
            call_id="",
            cseq=binding.cseq,
            changes=[ContactChange(binding.contact, binding)],
            now=time.time(),
        )

    async def remove(self, tenant: str, extension: str, contact: str) -> None:
        await self.update(
            tenant,
            extension,
            call_id="",
            cseq=0,
            changes=[ContactChange(contact, None)],
            now=time.time(),
        )

    async def registered(self, tenant: str, extensions: Sequence[str]) -> set[str]:
        """Those of ``extensions`` with a registration (one round trip; a hash lives as
        long as its longest binding)."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for extension in extensions:
                pipe.exists(self._key(tenant, extension))
            found = await pipe.execute()
        return {extension for extension, hit in zip(extensions, found, strict=True) if hit}

    async def remove_all(self, tenant: str, extension: str) -> None:
        await self._redis.delete(self._key(tenant, extension))
