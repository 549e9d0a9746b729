"""HTTP decisions on the wire: POST a call to the tenant's server and read its reply.

The routing engine (``node/routing``) decides *what* to send and what a reply
means; this module only carries the request, the way webhook deliveries are
carried by the control API:

- the URL passes the one outbound policy (``vpbx_common.outbound``, built from
  the node's ``VPBX_MODE`` and ``VPBX_OUTBOUND_PRIVATE_ALLOWED`` exactly as the
  control API builds it) at the moment of sending: the host is resolved, every
  address checked, and the request goes to the checked address itself with the
  original ``Host`` header and TLS server name (``pin``), so a DNS answer that
  changes after the check cannot redirect it;
- the exact bytes sent are signed with the tenant's decision secret
  (``X-Vpbx-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``,
  ``vpbx_common.signing``); without a secret the request goes unsigned;
- one deadline bounds everything (resolving, connecting, sending, reading);
  redirects are not followed; at most ``max_reply_bytes`` of the reply are read;
- nothing raises for a network, HTTP or JSON problem: the reply says what went
  wrong in a few words (``timeout``, ``refused by outbound policy``,
  ``connection failed``, ``http 500``, ``too large``, ``not json``).

One ``DecisionClient`` per node, one httpx client inside it (``start()`` /
``stop()``). Outside local mode connections are never kept alive: a
connection opened to one tenant-chosen host must not carry a request meant
for another name that resolved to the same address.

Failures are logged at INFO, one line per decision with the call id and the
tenant (read from the body's ``call_id`` and ``tenant``); the secret never is.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import json
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from vpbx_common.outbound import OutboundPolicy, OutboundRefusedError, pin
from vpbx_common.signing import SIGNATURE_HEADER, sign

from ..settings import NodeSettings

logger = logging.getLogger(__name__)

USER_AGENT = "vpbx-decisions/1.0"
DEFAULT_MAX_REPLY_BYTES = 16 * 1024
_KEEPALIVE_LOCAL = 20  # local mode: no pinning, connections to the tenant's CRM reused

# The reasons a reply carries (``DecisionReply.error``), besides "http <status>".
TIMEOUT = "timeout"
REFUSED = "refused by outbound policy"
CONNECTION_FAILED = "connection failed"
REQUEST_FAILED = "request failed"
TOO_LARGE = "too large"
NOT_JSON = "not json"


@dataclass(frozen=True, slots=True)
class DecisionReply:
    """What came back: ``status`` and the parsed JSON ``document`` of a 2xx reply, or
    ``error`` (a short reason; ``status`` is kept when there was one)."""

    status: int | None
    document: object | None
    error: str | None
    elapsed_ms: int

    @property
    def ok(self) -> bool:
        return self.error is None


class DecisionClientState(enum.Enum):
    STOPPED = "stopped"
    RUNNING = "running"


class _DecisionError(Exception):
    """A decision that ends without a document; ``reason`` goes into the reply."""

    def __init__(self, reason: str, status: int | None = None, detail: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.detail = detail  # for the node's log only


def encode_body(body: Mapping[str, object]) -> bytes:
    """The bytes sent (and signed): compact JSON, UTF-8."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


class DecisionClient:
    def __init__(
        self,
        outbound: OutboundPolicy,
        *,
        tenant: str = "",
        max_reply_bytes: int = DEFAULT_MAX_REPLY_BYTES,
    ) -> None:
        self.outbound = outbound
        self.tenant = tenant  # for log lines whose body names no tenant
        self.max_reply_bytes = max_reply_bytes
        self.state = DecisionClientState.STOPPED
        self._client: httpx.AsyncClient | None = None

    @classmethod
    def from_settings(cls, settings: NodeSettings, tenant: str = "") -> DecisionClient:
        """The node's client: the outbound policy the control API builds from the same
        settings (``VPBX_MODE``, ``VPBX_OUTBOUND_PRIVATE_ALLOWED``), replies up to
        ``VPBX_DECISION_MAX_REPLY_BYTES``."""
        return cls(
            settings.outbound_policy(),
            tenant=tenant or settings.tenant,
            max_reply_bytes=settings.decision_max_reply_bytes,
        )

    # --- lifecycle ---------------------------------------------------------------------

    def _set_state(self, state: DecisionClientState) -> None:
        logger.info("decision client %s -> %s", self.state.value, state.value)
        self.state = state

    async def start(self) -> None:
        if self._client is not None:
            return
        self._client = self._new_client()
        self._set_state(DecisionClientState.RUNNING)

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        await client.aclose()
        self._set_state(DecisionClientState.STOPPED)

    def _new_client(self) -> httpx.AsyncClient:
        # Requests pinned to checked addresses must not share connections (see the
        # module docstring); with the policy open (local mode) nothing is pinned.
        keepalive = _KEEPALIVE_LOCAL if self.outbound.allow_private else 0
        return httpx.AsyncClient(
            follow_redirects=False,
            headers={"User-Agent": USER_AGENT},
            limits=httpx.Limits(max_keepalive_connections=keepalive),
        )

    # --- one decision ------------------------------------------------------------------

    async def ask(
        self,
        url: str,
        body: Mapping[str, object],
        *,
        secret: str | None,
        timeout_s: float,
    ) -> DecisionReply:
        """POST ``body`` as JSON to ``url``, signed with ``secret``; the reply within
        ``timeout_s`` in all (never raises for network, HTTP or JSON problems)."""
        started = time.monotonic()

        def elapsed_ms() -> int:
            return round((time.monotonic() - started) * 1000)

        try:
            async with contextlib.AsyncExitStack() as stack:
                client = self._client
                if client is None:  # not started (or stopped while draining): a one-off
                    client = await stack.enter_async_context(self._new_client())
                try:
                    async with asyncio.timeout(timeout_s):
                        status, document = await self._exchange(
                            client, url, body, secret, timeout_s
                        )
                except TimeoutError as exc:
                    raise _DecisionError(TIMEOUT) from exc
        except _DecisionError as failure:
            reply = DecisionReply(failure.status, None, failure.reason, elapsed_ms())
            self._log_failure(url, body, reply, failure.detail)
            return reply
        reply = DecisionReply(status, document, None, elapsed_ms())
        logger.debug(
            "call=%s tenant=%s http decision: %d in %d ms",
            *self._who(body),
            status,
            reply.elapsed_ms,
        )
        return reply

    async def _exchange(
        self,
        client: httpx.AsyncClient,
        url: str,
        body: Mapping[str, object],
        secret: str | None,
        timeout_s: float,
    ) -> tuple[int, object]:
        """One request and its reply, or _DecisionError; the caller holds the deadline."""
        try:
            content = encode_body(body)
        except (TypeError, ValueError) as exc:  # the engine's body, not the tenant's doing
            raise _DecisionError(
                REQUEST_FAILED, detail=f"body not JSON-serialisable: {exc}"
            ) from exc
        try:
            destination = await self.outbound.destination(url)
            pinned = pin(url, destination)
            headers = {
                "Content-Type": "application/json",
                "Accept": "application/json",
                **pinned.headers,
            }
            if secret is not None:
                headers[SIGNATURE_HEADER] = sign(secret, content)
            request = client.build_request(
                "POST",
                pinned.url,
                content=content,
                headers=headers,
                timeout=timeout_s,
                extensions=pinned.extensions,
            )
            response = await client.send(request, stream=True)
            try:
                status = response.status_code
                if not 200 <= status < 300:
                    raise _DecisionError(f"http {status}", status)
                data = await self._read_bounded(response)
            finally:
                await response.aclose()
        except _DecisionError:
            raise
        except OutboundRefusedError as exc:
            raise _DecisionError(REFUSED, detail=str(exc)) from exc
        except httpx.TimeoutException as exc:
            raise _DecisionError(TIMEOUT) from exc
        except httpx.ConnectError as exc:
            raise _DecisionError(CONNECTION_FAILED, detail=_describe(exc)) from exc
        except httpx.HTTPError as exc:
            raise _DecisionError(REQUEST_FAILED, detail=_describe(exc)) from exc
        except Exception as exc:  # a URL nobody can use (port 99999, ...): failed, never a crash
            raise _DecisionError(REQUEST_FAILED, detail=_describe(exc)) from exc
        if data is None:
            raise _DecisionError(TOO_LARGE, status)
        try:
            document: object = json.loads(data)
        except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
            raise _DecisionError(NOT_JSON, status) from exc
        return status, document

    async def _read_bounded(self, response: httpx.Response) -> bytes | None:
        """The reply's body, or None when it is longer than ``max_reply_bytes``."""
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_reply_bytes:
            return None
        data = bytearray()
        async for chunk in response.aiter_bytes():
            data += chunk
            if len(data) > self.max_reply_bytes:
                return None
        return bytes(data)

    def _who(self, body: Mapping[str, object]) -> tuple[str, str]:
        call_id = body.get("call_id")
        tenant = body.get("tenant")
        return (
            call_id if isinstance(call_id, str) else "-",
            tenant if isinstance(tenant, str) and tenant else (self.tenant or "-"),
        )

    def _log_failure(
        self, url: str, body: Mapping[str, object], reply: DecisionReply, detail: str
    ) -> None:
        call_id, tenant = self._who(body)
        try:
            host = urlsplit(url).hostname or "?"
        except ValueError:  # "http://[::1/": the reason says it failed; no host to name
            host = "?"
        logger.info(
            "call=%s tenant=%s http decision to %s failed after %d ms: %s%s",
            call_id,
            tenant,
            host,
            reply.elapsed_ms,
            reply.error,
            f" ({detail})" if detail else "",
        )


def _describe(exc: BaseException) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
