"""Commands from the control API to the media nodes (click-to-call, transfers, monitoring,
three-way conferences).

A command is published on the tenant's Redis channel; every node of the tenant
hears it and the one it concerns acts: for a live call, the node that has the
call; for a new call, a node of the city it names, the first of them to claim the
command (``SET NX``), so a city with two replicas places one call. That node
answers on the command's reply list, which the API waits on for a few seconds.

Pub/sub, not a stream: a command is interactive. A node that misses it (it was
reconnecting) does not answer, the API says so (503) and the person tries
again; a command acted on minutes later would surprise everybody.
"""

from __future__ import annotations

import asyncio
import enum
import json
import secrets
from typing import Literal

import redis.asyncio as redis
from pydantic import BaseModel, Field

REPLY_TTL_S = 60
CLAIM_TTL_S = 60


def commands_channel(tenant: str) -> str:
    return f"vpbx:commands:{tenant}"


def _reply_key(command_id: str) -> str:
    return f"vpbx:command-reply:{command_id}"


def _claim_key(command_id: str) -> str:
    return f"vpbx:command-claim:{command_id}"


class Originate(BaseModel):
    """Click-to-call: ring the user's devices, then the number once the user answers."""

    kind: Literal["originate"] = "originate"
    city: str  # the user's home city: its node places the call
    extension: str
    to: str  # E.164
    caller_id: str | None = None  # one of the tenant's numbers; None: the usual choice


class Transfer(BaseModel):
    """Hand a live call's caller over to ``target`` (an extension, an E.164 number or a
    park code); the person who answered leaves once the target answers."""

    kind: Literal["transfer"] = "transfer"
    call_id: str
    target: str
    # Attended: the caller on hold while the person who answered talks to the target
    # first; ``TransferStep`` then completes or cancels it.
    attended: bool = False
    caller_id: str | None = None  # one of the tenant's numbers, for a number rung out


class TransferStep(BaseModel):
    """The end of an attended transfer: put the caller through to the consulted target
    (``complete``), or back to the person who answered (``cancel``)."""

    kind: Literal["transfer-step"] = "transfer-step"
    call_id: str
    action: Literal["complete", "cancel"]


class MonitorCall(BaseModel):
    """A supervisor joins a live call: their registered phones ring, and the one that
    answers listens (nobody hears them), whispers (only the agent does) or barges in."""

    kind: Literal["monitor"] = "monitor"
    call_id: str
    mode: Literal["listen", "whisper", "barge"]
    extension: str  # the supervisor's: their devices ring


class AddParty(BaseModel):
    """A three-way conference: ring ``target`` (an extension, or a number through the
    trunks) while the two parties talk on; when it answers the three meet in a mixer."""

    kind: Literal["conference"] = "conference"
    call_id: str
    target: str
    caller_id: str | None = None  # one of the tenant's numbers, for a number rung out


CommandBody = Originate | Transfer | TransferStep | MonitorCall | AddParty


class NodeCommand(BaseModel):
    id: str = Field(default_factory=lambda: secrets.token_hex(12))
    tenant: str
    by_user: str | None = None  # the user id of who asked, for the CDR
    body: CommandBody = Field(discriminator="kind")


class ReplyStatus(enum.StrEnum):
    ACCEPTED = "accepted"  # acted on; ``call_id`` names the call
    NOT_FOUND = "not-found"  # no such live call (this node's answer is only for its calls)
    REFUSED = "refused"  # the tenant's policy or the call's state does not allow it
    FAILED = "failed"


class CommandReply(BaseModel):
    status: ReplyStatus
    call_id: str = ""
    detail: str = ""


async def send_command(
    client: redis.Redis, command: NodeCommand, timeout_s: float, *, nodes: int = 1
) -> CommandReply | None:
    """Publish ``command`` and wait for the reply that settles it; None: none in time.

    A live-call command is answered by every node that heard it (``not-found`` by
    those without the call): the first answer other than ``not-found`` settles it,
    else ``not-found`` once ``nodes`` nodes said so.
    """
    heard = await client.publish(commands_channel(command.tenant), command.model_dump_json())
    if heard == 0:
        if isinstance(command.body, Originate):
            return None  # nobody to place it
        # No node of the tenant runs, so none of its calls is live.
        return CommandReply(status=ReplyStatus.NOT_FOUND, detail="no media node is running")
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    not_found: CommandReply | None = None
    answers = 0
    while answers < max(1, min(nodes, heard)):
        left = deadline - loop.time()
        if left <= 0:
            break
        answer = await client.blpop([_reply_key(command.id)], timeout=left)
        if answer is None:
            break
        answers += 1
        parsed = CommandReply.model_validate(json.loads(answer[1]))
        if parsed.status is not ReplyStatus.NOT_FOUND:
            return parsed
        not_found = parsed
    return not_found


async def claim(client: redis.Redis, command: NodeCommand, node_name: str) -> bool:
    """True for the first node to claim ``command`` (the others leave it)."""
    return bool(await client.set(_claim_key(command.id), node_name, nx=True, ex=CLAIM_TTL_S))


async def reply(client: redis.Redis, command: NodeCommand, answer: CommandReply) -> None:
    key = _reply_key(command.id)
    async with client.pipeline(transaction=False) as pipe:
        pipe.rpush(key, answer.model_dump_json())
        pipe.expire(key, REPLY_TTL_S)
        await pipe.execute()
