"""/v1/callbacks: queued callers who asked to be called back (read by every member,
cancelled by supervisors and admins). The media nodes keep them in Redis."""

from __future__ import annotations

from typing import Annotated

import redis.asyncio as redis
from fastapi import APIRouter, Depends, Path, Query

from vpbx_common.callbacks import CallbackNotWaitingError, CallbackStatus, CallbackStore

from ..deps import Context, Paging, TenantManager, TenantMember
from ..errors import error_responses
from ..paging import Page
from .errors import CallbackNotFound, CallbackNotWaiting, CallbacksUnavailable
from .schemas import CallbackOut

router = APIRouter(prefix="/v1/callbacks", tags=["callbacks"])

RUNS = (
    "A queue step with `callback_digit` offers its outside callers a callback: pressing "
    "the key keeps their place and lets them hang up. When the place's turn comes, a free "
    "agent of the group is rung first (their phone shows the caller's number), and once "
    "they answer the caller is called through the tenant's trunks from the number they "
    "dialled, under the outbound policy. An unanswered attempt is retried after "
    "`callback_retry_s` at the same place, up to `callback_attempts`. Each attempt is a "
    "call of its own in `GET /v1/calls` (outbound, placed by the agent, its route starting "
    "with `queue-callback`). Records stay visible for 7 days after they finish."
)


def callback_store(context: Context) -> CallbackStore:
    if context.redis is None:
        raise CallbacksUnavailable("no Redis is configured (VPBX_REDIS_URL)")
    return CallbackStore(context.redis)


Store = Annotated[CallbackStore, Depends(callback_store)]
CallbackId = Annotated[str, Path(max_length=64, pattern="^[0-9a-f]{32}$")]


@router.get(
    "",
    response_model=Page[CallbackOut],
    summary="List queue callbacks, newest first",
    description=RUNS,
    responses=error_responses(503),
)
async def list_callbacks(
    principal: TenantMember,
    store: Store,
    paging: Paging,
    status: Annotated[
        CallbackStatus | None, Query(description="only callbacks in this status")
    ] = None,
) -> Page[CallbackOut]:
    try:
        page = await store.page(
            principal.tenant, status=status, limit=paging.limit, offset=paging.offset
        )
    except redis.RedisError as exc:
        raise CallbacksUnavailable(f"Redis: {exc}") from exc
    return Page(
        items=[CallbackOut.of(record) for record in page.items],
        total=page.total,
        limit=paging.limit,
        offset=paging.offset,
    )


@router.get(
    "/{callback_id}",
    response_model=CallbackOut,
    summary="Read a queue callback",
    description="404 `callback-not-found` for an unknown id or another tenant's callback.",
    responses=error_responses(404, 503),
)
async def get_callback(
    principal: TenantMember, store: Store, callback_id: CallbackId
) -> CallbackOut:
    try:
        record = await store.get(principal.tenant, callback_id)
    except redis.RedisError as exc:
        raise CallbacksUnavailable(f"Redis: {exc}") from exc
    if record is None:
        raise CallbackNotFound()
    return CallbackOut.of(record)


@router.delete(
    "/{callback_id}",
    response_model=CallbackOut,
    summary="Cancel a waiting queue callback",
    description="The callback is cancelled at once (nobody will be called) and its place "
    "leaves the queue within about a second. Supervisors and tenant admins only. 409 "
    "`callback-not-waiting` while an agent is being rung for it or the caller is on the "
    "line, and once it has finished.",
    responses=error_responses(404, 409, 503),
)
async def cancel_callback(
    principal: TenantManager, store: Store, callback_id: CallbackId
) -> CallbackOut:
    who = f"user {principal.user_id}" if principal.user_id else f"API key {principal.api_key_id}"
    try:
        record = await store.cancel(principal.tenant, callback_id, f"cancelled by {who}")
    except CallbackNotWaitingError as exc:
        raise CallbackNotWaiting(exc.record.status.value) from exc
    except redis.RedisError as exc:
        raise CallbacksUnavailable(f"Redis: {exc}") from exc
    if record is None:
        raise CallbackNotFound()
    return CallbackOut.of(record)
