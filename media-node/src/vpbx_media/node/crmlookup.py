"""CRM lookups on the wire: ask the CRM service who is calling (the crm-lookup route step).

The contract is ``vpbx_common.crm``::

    GET {VPBX_CRM_URL}/internal/v1/lookup/{tenant}?phone=%2B79161234567
    Authorization: Bearer <VPBX_SERVICE_TOKEN>
    200 {"contact": {...}}  or  200 {"contact": null}

- Every call asks: nothing is cached, so a client reassigned a second ago already
  routes to the new manager.
- The CRM is the platform's own service at the address the operator configured, not a
  destination a tenant chose: the tenant outbound policy does not apply, and
  connections are kept alive in a pool, so a lookup on a busy node costs one request
  on a warm connection rather than a TCP (or TLS) handshake each time.
- The lookup runs on the node's SIP event loop, once per call: it uses aiohttp, whose
  client measured here at about 0.2 ms of CPU per lookup and 1,600 lookups/s with 50
  at once, where httpx (the HTTP decisions' client) took 1.2-3.4 ms each and, 50 at
  once, missed a 300 ms deadline for most of them (docs/benchmarks.md).
- One deadline (``timeout_ms``, ``VPBX_CRM_LOOKUP_TIMEOUT_MS``) bounds the whole
  request. Anything but a valid answer within it raises ``CrmLookupError`` whose
  message says which: ``timeout after 300 ms``, ``HTTP 503``, ``connection failed:
  ...``, ``request failed: ...``, ``bad document: ...``. The caller (the node service)
  logs it with the call id and tenant; the call's route carries it to the CDR.

One ``CrmLookupClient`` per node (``start()``/``stop()``).
"""

from __future__ import annotations

import asyncio
import enum
import json
import logging
from urllib.parse import quote

import aiohttp

from vpbx_common.crm import LOOKUP_PATH, CrmContact, CrmContactError

from ..settings import NodeSettings

logger = logging.getLogger(__name__)

USER_AGENT = "vpbx-crm-lookup/1.0"
# Concurrent lookups of one node; beyond that a lookup waits for a connection (within
# its deadline). Kept alive: the connections of a busy minute stay warm for the next.
MAX_CONNECTIONS = 64
# A contact summary is a few hundred bytes; anything much bigger is not one.
MAX_DOCUMENT_BYTES = 64 * 1024


class CrmLookupError(Exception):
    """No usable answer from the CRM; the message says why in a few words."""


class CrmLookupClientState(enum.Enum):
    STOPPED = "stopped"
    RUNNING = "running"


class CrmLookupClient:
    def __init__(self, base_url: str, token: str, *, timeout_ms: int = 300) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_ms = timeout_ms
        self.state = CrmLookupClientState.STOPPED
        self._token = token
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: NodeSettings) -> CrmLookupClient | None:
        """The node's client, or None without ``VPBX_CRM_URL`` (crm-lookup steps then go
        on with the next step, saying so on the call's route)."""
        if not settings.crm_url:
            return None
        return cls(
            settings.crm_url,
            settings.service_token.get_secret_value(),
            timeout_ms=settings.crm_lookup_timeout_ms,
        )

    # --- lifecycle ---------------------------------------------------------------------

    def _set_state(self, state: CrmLookupClientState) -> None:
        logger.info("CRM lookup client %s -> %s (%s)", self.state.value, state.value, self.base_url)
        self.state = state

    async def start(self) -> None:
        if self._session is not None:
            return
        self._session = aiohttp.ClientSession(
            headers={
                "Authorization": f"Bearer {self._token}",
                "Accept": "application/json",
                "User-Agent": USER_AGENT,
            },
            connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS),
            timeout=aiohttp.ClientTimeout(total=self.timeout_ms / 1000),
            raise_for_status=False,
        )
        self._set_state(CrmLookupClientState.RUNNING)

    async def stop(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        await session.close()
        self._set_state(CrmLookupClientState.STOPPED)

    # --- one lookup --------------------------------------------------------------------

    async def lookup(self, tenant: str, phone: str) -> CrmContact | None:
        """The contact the tenant's CRM has for ``phone`` (E.164), None when it has none.

        Raises CrmLookupError for a timeout, an HTTP error or a document that is not the
        contract's; never anything else for a problem on the wire.
        """
        session = self._session
        if session is None:
            raise CrmLookupError("lookup client not running")
        # The tenant is a slug, quoted all the same: a path segment, never a path.
        url = self.base_url + LOOKUP_PATH.format(tenant=quote(tenant, safe=""))
        try:
            async with asyncio.timeout(self.timeout_ms / 1000):
                status, data = await self._get(session, url, phone)
        except TimeoutError as exc:
            raise CrmLookupError(f"timeout after {self.timeout_ms} ms") from exc
        if status != 200:
            raise CrmLookupError(f"HTTP {status}")
        return _contact_in(data)

    async def _get(self, session: aiohttp.ClientSession, url: str, phone: str) -> tuple[int, bytes]:
        try:
            async with session.get(url, params={"phone": phone}, allow_redirects=False) as response:
                if response.status != 200:
                    return response.status, b""
                return 200, await _read_bounded(response)
        except aiohttp.ClientConnectorError as exc:
            raise CrmLookupError(f"connection failed: {_describe(exc)}") from exc
        except aiohttp.ClientError as exc:
            raise CrmLookupError(f"request failed: {_describe(exc)}") from exc


async def _read_bounded(response: aiohttp.ClientResponse) -> bytes:
    if response.content_length is not None and response.content_length > MAX_DOCUMENT_BYTES:
        raise CrmLookupError(f"bad document: larger than {MAX_DOCUMENT_BYTES} bytes")
    data = bytearray()
    async for chunk in response.content.iter_chunked(16 * 1024):
        data += chunk
        if len(data) > MAX_DOCUMENT_BYTES:
            raise CrmLookupError(f"bad document: larger than {MAX_DOCUMENT_BYTES} bytes")
    return bytes(data)


def _contact_in(data: bytes) -> CrmContact | None:
    """The contact of a 200 answer's body (``{"contact": {...} | null}``)."""
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise CrmLookupError("bad document: not JSON") from exc
    if not isinstance(document, dict) or "contact" not in document:
        raise CrmLookupError('bad document: not an object with "contact"')
    found = document["contact"]
    if found is None:
        return None
    try:
        return CrmContact.from_dict(found)
    except CrmContactError as exc:
        raise CrmLookupError(f"bad document: {exc}") from exc


def _describe(exc: BaseException) -> str:
    detail = str(exc)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
