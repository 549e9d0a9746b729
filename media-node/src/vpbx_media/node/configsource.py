"""Where a media node gets its config, and how it stays current without a restart.

With a control API (VPBX_CONFIG_URL) the node fetches its compiled config at
start, retrying until it gets one (it never serves without a config), then keeps
it current: every invalidation on the tenant's Redis channel and a slow poll
trigger a fetch with If-None-Match, and a new version replaces
``ConfigHolder.current`` in one assignment. A call in progress keeps what it
already decided (its targets, its plan); the next call reads the new config.

Without a control API the config is a JSON file read once (the operator's
ConfigMap in a cluster, or a file written by hand).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from pathlib import Path

import httpx
import redis.asyncio as redis
from pydantic import ValidationError

from vpbx_common.nodeconfig import NodeConfig, config_channel

logger = logging.getLogger(__name__)


class ConfigHolder:
    """The node's current config; replaced whole when a new version arrives.

    Parts of the node that act on a change rather than read the config per call (the
    trunk registrations) ``listen``: each listener is called with every new config.
    """

    def __init__(self, config: NodeConfig) -> None:
        self._current = config
        self._listeners: list[Callable[[NodeConfig], None]] = []

    def __call__(self) -> NodeConfig:
        return self._current

    @property
    def current(self) -> NodeConfig:
        return self._current

    @current.setter
    def current(self, config: NodeConfig) -> None:
        self._current = config
        for listener in list(self._listeners):
            try:
                listener(config)
            except Exception:
                # The new config is current regardless; one listener must not stop the rest.
                logger.exception("tenant=%s config listener %r failed", config.tenant, listener)

    def listen(self, listener: Callable[[NodeConfig], None]) -> None:
        self._listeners.append(listener)


class ConfigFetchError(OSError):
    """The control API did not give a usable config (down, refused, or garbage)."""


def read_config_file(path: Path) -> NodeConfig:
    return NodeConfig.from_json(path.read_bytes())


class ConfigClient:
    """GET /internal/v1/node-config/<tenant>/<city> with the service token."""

    def __init__(
        self,
        base_url: str,
        token: str,
        tenant: str,
        city: str,
        *,
        timeout: float = 5.0,
    ) -> None:
        self.tenant = tenant
        self.city = city
        self.path = f"/internal/v1/node-config/{tenant}/{city}"
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
        )

    async def fetch(self, version: str | None = None) -> NodeConfig | None:
        """The current config, or None when it is still ``version`` (304)."""
        headers = {"If-None-Match": f'"{version}"'} if version else {}
        try:
            response = await self._http.get(self.path, headers=headers)
        except httpx.HTTPError as exc:
            raise ConfigFetchError(f"control API unreachable: {exc!r}") from exc
        if response.status_code == 304 and version:
            return None
        if response.status_code != 200:
            raise ConfigFetchError(
                f"control API answered {response.status_code}: {response.text[:200]}"
            )
        try:
            config = NodeConfig.model_validate_json(response.content)
        except ValidationError as exc:
            raise ConfigFetchError(f"unreadable node config: {exc}") from exc
        if (config.tenant, config.city) != (self.tenant, self.city):
            raise ConfigFetchError(
                f"got the config of {config.tenant}/{config.city}, not {self.tenant}/{self.city}"
            )
        return config

    async def fetch_prompt(self, prompt_id: str) -> bytes:
        """The WAV of one of the tenant's prompts (OSError when it cannot be had)."""
        return await self._audio(f"/internal/v1/prompts/{self.tenant}/{prompt_id}", "prompt")

    async def fetch_speech(self, language: str, phrase: str) -> bytes:
        """The WAV of one of the platform's spoken phrases (OSError when it cannot be had)."""
        return await self._audio(f"/internal/v1/speech/{language}/{phrase}", "phrase")

    async def _audio(self, path: str, what: str) -> bytes:
        try:
            response = await self._http.get(path)
        except httpx.HTTPError as exc:
            raise ConfigFetchError(f"control API unreachable: {exc!r}") from exc
        if response.status_code != 200:
            raise ConfigFetchError(f"{what} {path}: control API answered {response.status_code}")
        return response.content

    async def fetch_initial(
        self, *, first_delay: float = 0.2, max_delay: float = 5.0
    ) -> NodeConfig:
        """Fetch until it works: a node without its config must not take calls."""
        delay = first_delay
        attempt = 1
        while True:
            try:
                config = await self.fetch()
            except ConfigFetchError as exc:
                logger.warning(
                    "tenant=%s city=%s no config yet (attempt %d, next in %.1fs): %s",
                    self.tenant,
                    self.city,
                    attempt,
                    delay,
                    exc,
                )
            else:
                assert config is not None  # without If-None-Match there is no 304
                logger.info(
                    "tenant=%s city=%s config version %s loaded from the control API",
                    self.tenant,
                    self.city,
                    config.version,
                )
                return config
            await asyncio.sleep(delay)
            delay = min(delay * 2, max_delay)
            attempt += 1

    async def aclose(self) -> None:
        await self._http.aclose()


class ConfigWatcher:
    """Keeps a ConfigHolder current: Redis invalidations, plus a poll as a safety net.

    Invalidations are coalesced: one fetch runs at a time, and any number of
    messages arriving meanwhile cause one more fetch after it.
    """

    def __init__(
        self,
        client: ConfigClient,
        holder: ConfigHolder,
        redis_client: redis.Redis,
        *,
        poll_interval: float = 30.0,
        retry_delay: float = 0.5,
    ) -> None:
        self.client = client
        self.holder = holder
        self.redis = redis_client
        self.poll_interval = poll_interval
        self.retry_delay = retry_delay
        self.channel = config_channel(client.tenant)
        self.subscribed = asyncio.Event()
        self.fetches = 0
        self._wanted = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._listen(), name="config-listen"),
            loop.create_task(self._poll(), name="config-poll"),
            loop.create_task(self._refresh_loop(), name="config-refresh"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    def request_refresh(self) -> None:
        self._wanted.set()

    def apply(self, config: NodeConfig) -> bool:
        """Make ``config`` current; False when it is the version already held."""
        old = self.holder.current
        if config.version == old.version:
            return False
        self.holder.current = config
        logger.info(
            "tenant=%s city=%s config version %s -> %s "
            "(%d users, %d devices, %d groups, %d numbers)",
            config.tenant,
            config.city,
            old.version,
            config.version,
            len(config.users),
            len(config.devices),
            len(config.groups),
            len(config.numbers),
        )
        return True

    async def refresh(self) -> bool:
        """Fetch once; True when a new version became current."""
        self.fetches += 1
        config = await self.client.fetch(self.holder.current.version)
        return config is not None and self.apply(config)

    async def _refresh_loop(self) -> None:
        delay = self.retry_delay
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            try:
                await self.refresh()
            except ConfigFetchError as exc:
                logger.warning(
                    "tenant=%s city=%s config refresh failed (retry in %.1fs): %s",
                    self.client.tenant,
                    self.client.city,
                    delay,
                    exc,
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.poll_interval)
                self._wanted.set()
            else:
                delay = self.retry_delay

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.poll_interval)
            self.request_refresh()

    async def _listen(self) -> None:
        delay = self.retry_delay
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.channel)
                # Messages sent while (re)connecting are lost: look once now.
                self.request_refresh()
                self.subscribed.set()
                delay = self.retry_delay
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self.request_refresh()
            except (redis.RedisError, OSError) as exc:
                logger.warning(
                    "tenant=%s config invalidations unavailable (retry in %.1fs): %s",
                    self.client.tenant,
                    delay,
                    exc,
                )
            finally:
                self.subscribed.clear()
                with contextlib.suppress(redis.RedisError, OSError):
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.poll_interval)
