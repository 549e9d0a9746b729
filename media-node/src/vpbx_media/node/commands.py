"""The node's ear for the control API's commands (vpbx_common.commands).

One subscription to the tenant's command channel; each command goes to the
handler for its kind. A live-call command is answered by every node (``not-found``
by those without the call); a new call is placed by the first node of its city to
claim it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import redis.asyncio as redis
from pydantic import ValidationError

from vpbx_common.commands import (
    AddParty,
    CommandReply,
    MonitorCall,
    NodeCommand,
    Originate,
    ReplyStatus,
    Transfer,
    TransferStep,
    claim,
    commands_channel,
    reply,
)

logger = logging.getLogger(__name__)

RETRY_S = 1.0


class CommandHandler(Protocol):
    async def originate(self, command: NodeCommand, body: Originate) -> CommandReply: ...

    async def transfer(self, command: NodeCommand, body: Transfer) -> CommandReply: ...

    async def transfer_step(self, command: NodeCommand, body: TransferStep) -> CommandReply: ...

    async def monitor(self, command: NodeCommand, body: MonitorCall) -> CommandReply: ...

    async def conference(self, command: NodeCommand, body: AddParty) -> CommandReply: ...


class CommandListener:
    def __init__(
        self,
        client: redis.Redis,
        tenant: str,
        city: str,
        node_name: str,
        handler: CommandHandler,
        spawn: Callable[[Coroutine[Any, Any, None]], object],
    ) -> None:
        self.client = client
        self.tenant = tenant
        self.city = city
        self.node_name = node_name
        self.handler = handler
        self._spawn = spawn
        self.subscribed = asyncio.Event()

    async def run(self) -> None:
        """Listen until cancelled, resubscribing after a Redis outage."""
        while True:
            pubsub = self.client.pubsub()
            try:
                await pubsub.subscribe(commands_channel(self.tenant))
                self.subscribed.set()
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._spawn(self._handle(message["data"]))
            except (redis.RedisError, OSError) as exc:
                logger.warning(
                    "tenant=%s commands unavailable (retry in %.1fs): %s", self.tenant, RETRY_S, exc
                )
            finally:
                self.subscribed.clear()
                try:
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
                except (redis.RedisError, OSError) as exc:
                    logger.debug("tenant=%s command subscription not closed: %s", self.tenant, exc)
            await asyncio.sleep(RETRY_S)

    async def _handle(self, data: bytes | str) -> None:
        try:
            command = NodeCommand.model_validate_json(data)
        except ValidationError as exc:
            logger.warning("tenant=%s unreadable command ignored: %s", self.tenant, exc)
            return
        if command.tenant != self.tenant:
            return
        body = command.body
        try:
            if isinstance(body, Originate):
                if body.city != self.city or not await claim(self.client, command, self.node_name):
                    return
                answer = await self.handler.originate(command, body)
            elif isinstance(body, Transfer):
                answer = await self.handler.transfer(command, body)
            elif isinstance(body, TransferStep):
                answer = await self.handler.transfer_step(command, body)
            elif isinstance(body, MonitorCall):
                answer = await self.handler.monitor(command, body)
            else:
                answer = await self.handler.conference(command, body)
            await reply(self.client, command, answer)
        except redis.RedisError as exc:
            logger.warning("tenant=%s command %s not answered: %s", self.tenant, command.id, exc)
        except Exception:
            logger.exception("tenant=%s command %s failed", self.tenant, command.id)
            try:
                await reply(self.client, command, CommandReply(status=ReplyStatus.FAILED))
            except redis.RedisError as exc:  # the API times out and says so
                logger.warning(
                    "tenant=%s command %s failure not told: %s", self.tenant, command.id, exc
                )
