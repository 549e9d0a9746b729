"""Calls the API places and steers: click-to-call, and transfers, supervisor monitoring
and three-way conferences of live calls.

The control API asks the tenant's media nodes over Redis (vpbx_common.commands) and
answers with what the node answered: 202 once the node took the request (the call
then runs like any call: events, webhooks, a CDR), a refusal naming the rule, or 503
when no node answered in time.
"""

from __future__ import annotations

import enum
import uuid

import redis.asyncio as redis
from pydantic import BaseModel, Field

from vpbx_common.agents import AgentStateStore
from vpbx_common.commands import (
    AddParty,
    CommandReply,
    MonitorCall,
    NodeCommand,
    Originate,
    ReplyStatus,
    Transfer,
    TransferStep,
    send_command,
)
from vpbx_common.e164 import InvalidPhoneNumber, normalize_e164

from ..auth.principal import MANAGERS, Principal, PrincipalKind
from ..errors import Conflict, Forbidden, InvalidInput, ReferenceNotFound, Unavailable
from ..numbers.store import NumberStore
from ..outbound.service import require_own_number
from ..tenants.models import TenantRow
from ..users.models import UserRow
from ..users.repository import UserRepository
from .errors import (
    CallNotLive,
    ConferenceRefused,
    MonitorRefused,
    OutboundRefused,
    TransferRefused,
    UserUnreachable,
)

# How long the API waits for the node's answer by default (it answers before anything
# rings long); VPBX_COMMAND_TIMEOUT_S.
COMMAND_TIMEOUT_S = 5.0


class PlaceCall(BaseModel):
    to: str = Field(
        description="the number to call, in any common form (+7 916..., 8 916..., 916...); "
        "read with the tenant's country",
        examples=["+79161234567"],
    )
    from_user: uuid.UUID | None = Field(
        default=None,
        description="the user whose phones ring first (default: the caller of the API, "
        "required for API keys); agents may only call as themselves, managers and API keys "
        "for any user of the tenant",
    )
    caller_id: str | None = Field(
        default=None, description="one of the tenant's numbers to show; default: the usual choice"
    )


class PlacedCall(BaseModel):
    call_id: str = Field(description="the call's id in events, webhooks and GET /v1/calls")
    status: str = Field(description="`ringing-user`: the user's phones ring first")


class TransferCall(BaseModel):
    target: str = Field(
        description="an extension of the tenant, or a number in any common form", examples=["102"]
    )
    attended: bool = Field(
        default=False,
        description="consult first: the caller hears music on hold while the target rings "
        "and then talks with the person who had the call; `POST .../transfer/complete` puts "
        "the caller through, `.../transfer/cancel` brings them back",
    )
    caller_id: str | None = Field(
        default=None,
        description="attended, to a number outside: one of the tenant's numbers to show",
    )


class TransferStarted(BaseModel):
    call_id: str
    status: str = Field(
        description="`transferring`: the target rings, the caller hears music; `consulting` "
        "(attended): the target rings for the person who had the call, the caller on hold"
    )


class TransferStepDone(BaseModel):
    call_id: str
    status: str = Field(
        description="`transferring`: the person who had the call is let go and the caller "
        "is put through to the consulted target; `back-with-caller`: the target is let go"
    )


class TransferAction(enum.StrEnum):
    COMPLETE = "complete"
    CANCEL = "cancel"


class MonitorMode(enum.StrEnum):
    LISTEN = "listen"
    WHISPER = "whisper"
    BARGE = "barge"


class MonitorRequest(BaseModel):
    mode: MonitorMode = Field(
        description="`listen`: nobody hears the supervisor; `whisper`: only the agent who "
        "answered does; `barge`: both parties do"
    )
    from_user: uuid.UUID | None = Field(
        default=None,
        description="the supervisor or tenant admin whose registered phones ring (default: "
        "the caller of the API, required for API keys)",
    )


class MonitorStarted(BaseModel):
    call_id: str
    status: str = Field(description="`ringing-user`: the supervisor's phones ring")


class AddToCall(BaseModel):
    to: str = Field(
        min_length=1,
        max_length=40,
        description="whom to add: an extension of the tenant, or a number in any common form "
        "(called through the trunks, which the outbound policy must allow)",
        examples=["103"],
    )
    caller_id: str | None = Field(
        default=None,
        description="one of the tenant's numbers to show when `to` is a number outside; "
        "default: the usual choice",
    )


class ConferenceStarted(BaseModel):
    call_id: str
    status: str = Field(description="`ringing-target`: the target rings, the two talk on")


class CallPlacer:
    def __init__(
        self,
        principal: Principal,
        users: UserRepository,
        numbers: NumberStore,
        client: redis.Redis | None,
        *,
        timeout_s: float = COMMAND_TIMEOUT_S,
    ) -> None:
        self.principal = principal
        self.users = users
        self.numbers = numbers
        self.client = client
        self.timeout_s = timeout_s

    def _redis(self) -> redis.Redis:
        if self.client is None:
            raise Unavailable("no Redis: calls cannot be placed or steered")
        return self.client

    async def place(self, body: PlaceCall) -> PlacedCall:
        principal = self.principal
        tenant = await self.users.tenant()
        user_id = body.from_user or principal.user_id
        if user_id is None:
            raise InvalidInput.at("body.from_user", "an API key must say whose phones ring")
        agent = principal.kind is PrincipalKind.USER and principal.role not in MANAGERS
        if agent and user_id != principal.user_id:
            raise Forbidden("agents place calls as themselves only")
        user: UserRow | None = await self.users.find(user_id)
        if user is None:
            raise ReferenceNotFound("body.from_user", "user")
        if user.extension is None or user.city is None:
            raise InvalidInput.at("body.from_user", "the user has no extension")
        try:
            number = normalize_e164(body.to, tenant.outbound_country)
        except InvalidPhoneNumber as exc:
            raise InvalidInput.at("body.to", str(exc)) from exc
        await require_own_number(self.numbers, tenant.id, body.caller_id, "body.caller_id")
        command = NodeCommand(
            tenant=tenant.id,
            by_user=str(principal.user_id or principal.api_key_id or ""),
            body=Originate(
                city=user.city, extension=user.extension, to=number, caller_id=body.caller_id
            ),
        )
        reply = await self._send(command, nodes=1)
        if reply.status is ReplyStatus.ACCEPTED:
            return PlacedCall(call_id=reply.call_id, status="ringing-user")
        if reply.status is ReplyStatus.REFUSED and "registered phone" in reply.detail:
            raise UserUnreachable("the user has no registered phone to ring first")
        if reply.status is ReplyStatus.REFUSED:
            raise OutboundRefused(f"the call is not allowed: {reply.detail}")
        raise Unavailable(f"the media node could not place the call: {reply.detail or 'failed'}")

    async def _require_on_call(self, tenant_id: str, call_id: str) -> None:
        """An agent steers only a call they talk on (managers and API keys any call)."""
        principal = self.principal
        if principal.kind is PrincipalKind.USER and principal.role not in MANAGERS:
            me = await self.users.find(principal.user_id) if principal.user_id else None
            on_it = me is not None and me.extension is not None
            if on_it and me is not None and me.extension is not None:
                on_it = await AgentStateStore(self._redis()).is_talking_on(
                    tenant_id, me.extension, call_id
                )
            if not on_it:
                raise CallNotLive("no live call of yours with this id")

    async def transfer(self, call_id: str, body: TransferCall) -> TransferStarted:
        tenant = await self.users.tenant()
        await self._require_on_call(tenant.id, call_id)
        await require_own_number(self.numbers, tenant.id, body.caller_id, "body.caller_id")
        await self._ask_about_live_call(
            tenant,
            Transfer(
                call_id=call_id,
                target=body.target.strip(),
                attended=body.attended,
                caller_id=body.caller_id,
            ),
            refused=TransferRefused,
            refusal="the call cannot be transferred",
            failure="transfer the call",
        )
        status = "consulting" if body.attended else "transferring"
        return TransferStarted(call_id=call_id, status=status)

    async def transfer_step(self, call_id: str, action: TransferAction) -> TransferStepDone:
        """Complete or cancel an attended transfer going on (``transfer(attended=True)``)."""
        tenant = await self.users.tenant()
        await self._require_on_call(tenant.id, call_id)
        await self._ask_about_live_call(
            tenant,
            TransferStep(call_id=call_id, action=action.value),
            refused=TransferRefused,
            refusal=f"no attended transfer to {action.value}",
            failure=f"{action.value} the transfer",
        )
        status = "transferring" if action is TransferAction.COMPLETE else "back-with-caller"
        return TransferStepDone(call_id=call_id, status=status)

    async def monitor(self, call_id: str, body: MonitorRequest) -> MonitorStarted:
        """Ring a supervisor's phones to join a live call (the route admits managers only)."""
        principal = self.principal
        tenant = await self.users.tenant()
        user_id = body.from_user or principal.user_id
        user: UserRow | None = await self.users.find(user_id) if user_id is not None else None
        if user_id is not None and user is None:
            raise ReferenceNotFound("body.from_user", "user")
        # Who cannot be rung is said only once the call is known to be live in the tenant:
        # another tenant's call is a 404 whatever the body (the node refuses extension "").
        problem = None
        if user is None:
            problem = "an API key must say whose phones ring"
        elif user.extension is None:
            problem = "the user has no extension"
        elif user.role not in MANAGERS:
            problem = "only supervisors and tenant admins monitor calls"
        extension = user.extension if user is not None and problem is None else ""
        command = NodeCommand(
            tenant=tenant.id,
            by_user=str(principal.user_id or principal.api_key_id or ""),
            body=MonitorCall(call_id=call_id, mode=body.mode.value, extension=extension or ""),
        )
        reply = await self._send(command, nodes=max(1, len(tenant.cities or [])))
        if reply.status is ReplyStatus.NOT_FOUND:
            raise CallNotLive("no live call with this id in the tenant")
        if problem is not None:
            raise InvalidInput.at("body.from_user", problem)
        if reply.status is ReplyStatus.ACCEPTED:
            return MonitorStarted(call_id=call_id, status="ringing-user")
        if reply.status is ReplyStatus.REFUSED and "registered phone" in reply.detail:
            raise UserUnreachable("the supervisor has no registered phone to ring")
        if reply.status is ReplyStatus.REFUSED:
            raise MonitorRefused(f"the call cannot be monitored now: {reply.detail}")
        raise Unavailable(f"the media node could not ring the supervisor: {reply.detail}")

    async def conference(self, call_id: str, body: AddToCall) -> ConferenceStarted:
        """Ring ``body.to`` to make the live call a three-way conference."""
        tenant = await self.users.tenant()
        await self._require_on_call(tenant.id, call_id)
        await require_own_number(self.numbers, tenant.id, body.caller_id, "body.caller_id")
        await self._ask_about_live_call(
            tenant,
            AddParty(call_id=call_id, target=body.to.strip(), caller_id=body.caller_id),
            refused=ConferenceRefused,
            refusal="nobody can be added to the call",
            failure="add to the call",
        )
        return ConferenceStarted(call_id=call_id, status="ringing-target")

    async def _ask_about_live_call(
        self,
        tenant: TenantRow,
        body: Transfer | TransferStep | AddParty,
        *,
        refused: type[Conflict],
        refusal: str,
        failure: str,
    ) -> None:
        """Ask the tenant's nodes to act on a live call; returns once one accepted, else
        raises what the answer means (404 not live, 409 ``refused``, 503)."""
        principal = self.principal
        command = NodeCommand(
            tenant=tenant.id,
            by_user=str(principal.user_id or principal.api_key_id or ""),
            body=body,
        )
        reply = await self._send(command, nodes=max(1, len(tenant.cities or [])))
        if reply.status is ReplyStatus.ACCEPTED:
            return
        if reply.status is ReplyStatus.NOT_FOUND:
            raise CallNotLive("no live call with this id in the tenant")
        if reply.status is ReplyStatus.REFUSED:
            raise refused(f"{refusal}: {reply.detail}")
        raise Unavailable(f"the media node could not {failure}: {reply.detail}")

    async def _send(self, command: NodeCommand, *, nodes: int) -> CommandReply:
        try:
            reply = await send_command(self._redis(), command, self.timeout_s, nodes=nodes)
        except redis.RedisError as exc:
            raise Unavailable(f"Redis unavailable: {exc}") from exc
        if reply is None:
            raise Unavailable("no media node of the tenant answered; try again")
        return reply
