"""GET /v1/live: the workspace's WebSocket (screen pops, call events, agent states).

The bearer credential comes in the first message, ``{"type": "auth", "token": ...}``, not
in the URL (URLs end up in proxy logs and browser history). The feed is always the
caller's tenant's; message formats and close codes are in ``messages``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging

from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.websockets import WebSocketState

from vpbx_control.auth.principal import Role

from ..context import CrmContext
from ..identity import Caller, IdentityUnavailableError
from . import messages
from .hub import LiveHub, Subscriber

logger = logging.getLogger(__name__)

router = APIRouter(tags=["live"])

SUPERVISING_ROLES = frozenset({Role.SUPERVISOR, Role.TENANT_ADMIN})


async def _close(websocket: WebSocket, code: int, reason: str) -> None:
    if websocket.client_state is WebSocketState.CONNECTED:
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):
            await websocket.close(code=code, reason=reason)


async def _authenticate(
    websocket: WebSocket, context: CrmContext
) -> tuple[Caller, Subscriber, str] | None:
    """The caller named by the first message; None after closing with the reason."""
    try:
        first = await asyncio.wait_for(
            websocket.receive_text(), timeout=context.settings.live_auth_timeout_s
        )
    except TimeoutError:
        await _close(websocket, messages.CLOSE_AUTH_TIMEOUT, "no auth message in time")
        return None
    try:
        document = json.loads(first)
    except ValueError:
        document = None
    token = document.get("token") if isinstance(document, dict) else None
    if (
        not isinstance(document, dict)
        or document.get("type") != "auth"
        or not isinstance(token, str)
        or not token
        or len(token) > 4096
    ):
        await _close(
            websocket, messages.CLOSE_UNAUTHENTICATED, 'first message: {"type":"auth","token"}'
        )
        return None
    try:
        caller = await context.identity.caller(token)
    except IdentityUnavailableError as exc:
        logger.warning("live: cannot check a credential with the control API: %s", exc)
        await _close(websocket, messages.CLOSE_TRY_LATER, "identity service unavailable")
        return None
    if caller is None or not caller.tenant:
        await _close(websocket, messages.CLOSE_UNAUTHENTICATED, "invalid or expired token")
        return None
    supervisor = caller.role in SUPERVISING_ROLES
    if caller.user_id is None and not supervisor:
        await _close(websocket, messages.CLOSE_FORBIDDEN, "an agent's API key has no feed")
        return None
    user_id = str(caller.user_id) if caller.user_id is not None else None
    return (
        caller,
        Subscriber(tenant=caller.tenant, user_id=user_id, supervisor=supervisor),
        token,
    )


@router.websocket("/v1/live")
async def live(websocket: WebSocket) -> None:
    context: CrmContext = websocket.app.state.context
    hub: LiveHub | None = getattr(websocket.app.state, "live", None)
    await websocket.accept()
    if hub is None:
        await _close(websocket, messages.CLOSE_TRY_LATER, "no call events here (no Redis)")
        return
    try:
        found = await _authenticate(websocket, context)
    except WebSocketDisconnect:
        return
    if found is None:
        return
    caller, subscriber, token = found
    try:
        await hub.subscribe(subscriber)
    except IdentityUnavailableError as exc:
        logger.warning("tenant=%s live: directory unavailable: %s", caller.tenant, exc)
        await _close(websocket, messages.CLOSE_TRY_LATER, "directory unavailable")
        return
    heartbeat_s = context.settings.live_heartbeat_s
    try:
        await websocket.send_text(
            json.dumps(
                {
                    "type": "hello",
                    "tenant": caller.tenant,
                    "user_id": subscriber.user_id,
                    "name": caller.name,
                    "role": caller.role.value if caller.role else None,
                    "extension": hub.extension_of(subscriber),
                    "supervisor": subscriber.supervisor,
                    "heartbeat_s": heartbeat_s,
                }
            )
        )
    except (WebSocketDisconnect, RuntimeError):
        hub.unsubscribe(subscriber)
        return
    # The reader ends when the browser goes (or falls silent), the writer when it is too
    # slow or a send fails: either ends the feed.
    recheck = asyncio.create_task(
        _still_valid(context, token, caller, context.settings.live_recheck_s)
    )
    tasks = {
        asyncio.create_task(_read(websocket, subscriber, heartbeat_s)),
        asyncio.create_task(_write(websocket, subscriber, heartbeat_s)),
        recheck,
    }
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        # Their end is only the socket's: a send to a browser that left, or a cancel.
        await asyncio.gather(*tasks, return_exceptions=True)
        hub.unsubscribe(subscriber)
    if subscriber.too_slow.is_set():
        await _close(websocket, messages.CLOSE_TOO_SLOW, "too slow reading the feed")
    elif recheck.done() and not recheck.cancelled():
        await _close(websocket, messages.CLOSE_UNAUTHENTICATED, "the credential is no longer valid")
    else:
        await _close(websocket, 1000, "bye")


async def _still_valid(context: CrmContext, token: str, caller: Caller, every_s: float) -> None:
    """Returns once the feed's credential no longer names this person with this role in
    this tenant: an expired token, a demoted supervisor or a removed user stops hearing
    the tenant's calls within ``every_s``. A control API that does not answer ends
    nothing (the next check decides)."""
    while True:
        await asyncio.sleep(every_s)
        try:
            now = await context.identity.caller(token)
        except IdentityUnavailableError:
            continue
        if (
            now is None
            or now.tenant != caller.tenant
            or now.role != caller.role
            or now.user_id != caller.user_id
        ):
            return


async def _read(websocket: WebSocket, subscriber: Subscriber, heartbeat_s: float) -> None:
    """The browser's pings and pongs; silence for three heartbeats means it is gone."""
    while True:
        try:
            text = await asyncio.wait_for(websocket.receive_text(), timeout=3 * heartbeat_s)
        except TimeoutError:
            return
        except WebSocketDisconnect:
            return
        with contextlib.suppress(ValueError):
            document = json.loads(text)
            if isinstance(document, dict) and document.get("type") == "ping":
                subscriber.send('{"type": "pong"}')


async def _write(websocket: WebSocket, subscriber: Subscriber, heartbeat_s: float) -> None:
    while not subscriber.too_slow.is_set():
        try:
            text = await asyncio.wait_for(subscriber.queue.get(), timeout=heartbeat_s)
        except TimeoutError:
            text = '{"type": "ping"}'
        await websocket.send_text(text)
