"""The per-city SIP edge: a transaction-stateful proxy in front of the tenant nodes.

Initial requests are routed by what they address: a tenant SIP domain (phones
registering or calling) goes to that tenant's node, a dialled number
(carriers) goes to the node of the number's tenant in the number's city.
In-dialog requests follow the signed token in the edge's own Record-Route
entry (see flowtoken.py). The edge keeps no call state beyond transactions.

Calls to a number come from carriers only: the source address must be inside the
networks of a platform trunk or of one of the number's tenant's own trunks, read
with the number's route in one Redis round trip (``RouteLookup.lookup_number_from``,
vpbx_common.routing); any other source is answered 403 "Not From A Carrier",
whether the number exists or not. Each initial INVITE relayed to a node carries a
signed proof on the edge's Via (relayproof.py) by which the node tells it from
INVITEs that went around the edge.

Browsers are SIP devices over WebSocket (RFC 7118, sip/websocket.py): their
connection is a flow like a TCP one, named with its connection id in the tokens;
the nodes keep talking UDP to the edge and see the browser's own Contact
(``;transport=ws``). Their Vias name ``*.invalid`` hosts, so nothing is ever sent
by a WebSocket Via: responses go back over the request's connection, a stray 2xx
over the connection named by this edge's Record-Route token in it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Protocol

from redis.exceptions import RedisError

from vpbx_common.e164 import InvalidPhoneNumber, normalize_e164
from vpbx_common.routing import DomainRoute, NumberRoute, RoutingTableError

from ..overload import ShedLog, retry_after
from ..sip.errors import SipParseError
from ..sip.headers import NameAddr, Via
from ..sip.message import SipRequest, SipResponse, make_response
from ..sip.transaction import (
    ClientTransaction,
    ServerTransaction,
    TransactionLayer,
    TransactionUser,
)
from ..sip.transport import Address, Flow, SipTransport, TransportKind, response_destination
from ..sip.uri import SipUri
from .flowtoken import EdgeToken, EdgeTokens
from .relayproof import RelayProofs

logger = logging.getLogger(__name__)

EDGE_ROUTE_PARAM = "vt"
SCANNER_AGENTS = ("friendly-scanner", "sipvicious", "sipcli", "sip-scan", "sundayddr", "iWar")


class RouteLookup(Protocol):
    async def lookup_number_from(self, e164: str, source: str) -> tuple[NumberRoute | None, bool]:
        """The number's route, and whether ``source`` (an IP address) is one of its carriers."""
        ...

    async def lookup_domain_user(
        self, domain: str, username: str | None
    ) -> tuple[DomainRoute | None, str | None]:
        """The domain's route and the user's home city (None when unknown), at once."""
        ...


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated: float


class SourceLimiter:
    """Token bucket per source address: a flooding source is ignored, others are not."""

    def __init__(
        self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, host: str) -> bool:
        now = self.clock()
        bucket = self._buckets.get(host)
        if bucket is None:
            if len(self._buckets) > 100_000:
                self._buckets.clear()
            bucket = self._buckets[host] = _Bucket(self.burst, now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.updated) * self.rate)
        bucket.updated = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True


class RouteRejectedError(Exception):
    def __init__(self, status: int, reason: str | None = None) -> None:
        super().__init__(reason or str(status))
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Forwarding:
    target: Flow
    token: EdgeToken | None  # what to write into Record-Route / Path
    add_path: bool = False
    # Routed by the edge's own checks (number or domain), not by a token a sender gave:
    # an INVITE then gets the signed Via (relayproof.py) that tells the node so.
    checked: bool = False


class EdgeProxy:
    def __init__(
        self,
        transport: SipTransport,
        layer_factory: Callable[[TransactionUser], TransactionLayer],
        routes: RouteLookup,
        tokens: EdgeTokens,
        *,
        limiter: SourceLimiter | None = None,
        proofs: RelayProofs | None = None,
        max_registers_in_flight: int = 128,
        register_timeout: float = 5.0,
        retry_after_s: int = 5,
        pod_host: str | None = None,
    ) -> None:
        self.transport = transport
        # This replica's own address (a cluster runs several edges behind one Service):
        # a browser's WebSocket lives on one replica only, so the nodes must reach that
        # one, not whichever the Service picks. None: the shared address (one edge).
        self.pod_host = pod_host
        self.routes = routes
        self.tokens = tokens
        self.limiter = limiter
        # Signs the Via of INVITEs relayed to nodes; without one given, with the token secret.
        self.proofs = proofs if proofs is not None else RelayProofs(tokens.secret)
        self.max_registers_in_flight = max_registers_in_flight
        self.register_timeout = register_timeout
        self.retry_after_s = retry_after_s
        self.layer = layer_factory(self)
        self._pending: dict[int, ClientTransaction] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.dropped = 0
        self.registers_in_flight = 0
        self.shed_log = ShedLog(logger, "edge")
        # Calls to numbers from sources that are no carrier: answered 403, counted, and
        # logged at most once per interval (a scanner must not flood the log).
        self.not_carriers = ShedLog(
            logger, "edge", level=logging.INFO, answered="403 Not From A Carrier"
        )

    # --- TransactionUser -------------------------------------------------

    def on_request(
        self, request: SipRequest, flow: Flow, transaction: ServerTransaction | None
    ) -> None:
        self._spawn(self._handle(request, flow, transaction))

    def on_cancel(self, transaction: ServerTransaction, cancel: SipRequest) -> None:
        client = self._pending.get(id(transaction))
        if client is not None:
            client.cancel()
        else:
            transaction.respond(make_response(transaction.request, 487))

    def on_stray_response(self, response: SipResponse, flow: Flow) -> None:
        """Forward responses no transaction wants (2xx retransmissions) statelessly."""
        vias = response.headers.values("Via")
        if len(vias) < 2:
            return
        top = Via.parse(vias[0])
        if not self._is_own(top.host, top.port):
            return
        upstream = response.with_headers(response.headers.replace_values("Via", vias[1:]))
        next_via = Via.parse(vias[1])
        if next_via.transport in ("WS", "WSS"):
            # A browser's Via host is made up (RFC 7118 section 5): its connection is
            # the one this edge's Record-Route token in the 2xx names.
            ws_target = self._websocket_of(response)
            if ws_target is not None:
                self._spawn(self.layer.send_stateless(upstream, ws_target))
            return
        kind = TransportKind.TCP if next_via.transport == "TCP" else TransportKind.UDP
        target = Flow(kind, response_destination(next_via, kind))
        self._spawn(self.layer.send_stateless(upstream, target))

    def _websocket_of(self, response: SipResponse) -> Flow | None:
        """The WebSocket flow named by our own Record-Route entry in a response."""
        for value in response.headers.values("Record-Route"):
            try:
                uri = NameAddr.parse(value).uri
            except SipParseError:
                continue
            if not self._is_own_uri(uri):
                continue
            assert isinstance(uri, SipUri)
            text = uri.param(EDGE_ROUTE_PARAM)
            token = self.tokens.decode(text) if text else None
            if token is not None and token.outside.transport.is_websocket:
                return token.outside
        return None

    # --- routing ---------------------------------------------------------

    def _spawn(self, coroutine: Coroutine[object, object, None]) -> None:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _is_own(self, host: str, port: int | None) -> bool:
        local = self.transport.local_address
        # The WebSocket port too: the outward Record-Route entry a browser gets names it.
        ports = (local.port, self.transport.websocket_port)
        return host.strip("[]") in (local.host, self.transport.host) and (port or 5060) in ports

    def _is_own_uri(self, uri: object) -> bool:
        return isinstance(uri, SipUri) and self._is_own(uri.host, uri.port)

    async def _handle(
        self, request: SipRequest, flow: Flow, transaction: ServerTransaction | None
    ) -> None:
        refused: RouteRejectedError | SipParseError | None = None
        token: EdgeToken | None = None
        try:
            token, request = self._pop_own_routes(request)
        except (RouteRejectedError, SipParseError) as exc:
            refused = exc
        # A node relays many calls' requests from one address through our signed
        # routes; counting them against that address would throttle its own tenant.
        from_a_node = token is not None and flow.remote != token.outside.remote
        if (
            self.limiter is not None
            and not from_a_node
            and not self.limiter.allow(flow.remote.host)
        ):
            self.dropped += 1
            return
        agent = (request.header("User-Agent") or "").lower()
        if any(name.lower() in agent for name in SCANNER_AGENTS):
            self.dropped += 1
            return
        if request.method != "REGISTER" or transaction is None:
            await self._route_and_relay(request, flow, transaction, token, refused)
            return
        # Registration storm: a bounded number of REGISTERs in the edge at once, the
        # rest are told to come back later before they cost a Redis lookup.
        if self.registers_in_flight >= self.max_registers_in_flight:
            self._shed(transaction, request, f"{self.registers_in_flight} REGISTERs in flight")
            return
        self.registers_in_flight += 1
        try:
            await self._route_and_relay(request, flow, transaction, token, refused)
        finally:
            self.registers_in_flight -= 1

    def _shed(self, transaction: ServerTransaction, request: SipRequest, why: str) -> None:
        """Answer 503 + Retry-After: overloaded, try again later (never a 500)."""
        self.shed_log.shed(why)
        transaction.respond(
            make_response(request, 503, extra=[("Retry-After", retry_after(self.retry_after_s))])
        )

    async def _route_and_relay(
        self,
        request: SipRequest,
        flow: Flow,
        transaction: ServerTransaction | None,
        token: EdgeToken | None,
        refused: RouteRejectedError | SipParseError | None,
    ) -> None:
        try:
            if request.max_forwards <= 0:
                raise RouteRejectedError(483)
            if refused is not None:
                raise refused
            if token is not None:
                forwarding = self._follow_token(token, flow)
            else:
                forwarding = await self._route_without_token(request, flow)
        except RouteRejectedError as rejection:
            if transaction is not None:
                transaction.respond(make_response(request, rejection.status, rejection.reason))
            return
        except SipParseError as exc:
            if transaction is not None:
                transaction.respond(make_response(request, exc.status_code, exc.reason[:100]))
            return
        except (RedisError, RoutingTableError) as exc:
            # The routing table is unreachable, unreadable or (no connection free in
            # time) overloaded: the sender should retry, not all at the same moment.
            if transaction is not None:
                self._shed(transaction, request, f"{request.method} not routed: {exc}")
            return
        outgoing = self._prepare(request, forwarding)
        if transaction is None:  # ACK for a 2xx: forwarded without a transaction
            await self.layer.send_stateless(outgoing, forwarding.target)
            return
        if request.method == "REGISTER":
            await self._relay_register(transaction, outgoing, forwarding.target)
            return
        await self._relay(transaction, outgoing, forwarding.target)

    def _pop_own_routes(self, request: SipRequest) -> tuple[EdgeToken | None, SipRequest]:
        """Remove the Route entries naming this edge; the token the last one carried."""
        routes = request.headers.values("Route")
        token: EdgeToken | None = None
        popped = 0
        for value in routes:
            uri = NameAddr.parse(value).uri
            if not isinstance(uri, SipUri) or not self._is_own(uri.host, uri.port):
                break
            popped += 1
            text = uri.param(EDGE_ROUTE_PARAM)
            if text:
                token = self.tokens.decode(text)
                if token is None:
                    raise RouteRejectedError(403, "Invalid Route")
        if popped:
            request = request.with_headers(request.headers.replace_values("Route", routes[popped:]))
        return token, request

    async def _route_without_token(self, request: SipRequest, flow: Flow) -> Forwarding:
        if request.headers.values("Route"):
            raise RouteRejectedError(403, "Relaying Denied")
        if request.to.tag is not None:
            # In-dialog without our token: not a dialog that passed through this edge.
            raise RouteRejectedError(481)
        return await self._route_initial(request, flow)

    def _follow_token(self, token: EdgeToken, flow: Flow) -> Forwarding:
        outside = token.outside
        from_outside = (
            flow.transport is outside.transport
            and flow.remote == outside.remote
            # A WebSocket token names one connection; TCP ones name the address only.
            and (outside.connection_id is None or flow.connection_id == outside.connection_id)
        )
        if from_outside:
            return Forwarding(Flow(TransportKind.UDP, token.node), token)
        if flow.transport.is_websocket:
            # Only nodes (over UDP) send out through a token; a browser holding
            # another connection's token (a copied Route) must not reach that browser.
            raise RouteRejectedError(403, "Invalid Route")
        if not self.transport.has_flow(outside):
            # The browser's WebSocket is gone and cannot be opened again from here:
            # it is unreachable until it registers anew (on a new connection).
            raise RouteRejectedError(480, "Flow Gone")
        # Not from the outside flow: a node sending out. Only the outside party itself
        # and the nodes ever see a token naming its flow, so this cannot aim the edge
        # at anybody else. Nodes of other cities are other hosts in a cluster.
        # A Path token names the node the phone registered with, but any node of the
        # tenant may call the phone (a caller in another city): the Record-Route of
        # that INVITE must bring the phone's in-dialog requests back to the node
        # that owns the call. Nodes send UDP from their listening socket.
        if flow.transport is TransportKind.UDP and flow.remote != token.node:
            return Forwarding(token.outside, EdgeToken(token.outside, flow.remote))
        return Forwarding(token.outside, token)

    async def _route_initial(self, request: SipRequest, flow: Flow) -> Forwarding:
        uri = request.sip_uri
        # A phone registers its own address (To) and calls as itself (From); the node of
        # that user's home city serves it. Route and home city come in one round trip.
        user_uri = request.to.uri if request.method == "REGISTER" else request.from_.uri
        user = user_uri.user if isinstance(user_uri, SipUri) else None
        domain_route, home = await self.routes.lookup_domain_user(uri.host, user)
        if domain_route is not None:
            self._refuse_suspended(domain_route.suspended)
            node = Address.parse(domain_route.address_for(user, home))
            return Forwarding(
                Flow(TransportKind.UDP, node),
                EdgeToken(flow, node),
                add_path=request.method == "REGISTER",
                checked=True,
            )
        if request.method == "OPTIONS" and uri.user is None and self._is_own_uri(uri):
            raise RouteRejectedError(200)
        if request.method == "REGISTER":
            raise RouteRejectedError(404, "Unknown Domain")
        if uri.user is None:
            raise RouteRejectedError(404)
        try:
            number = normalize_e164(uri.user_unescaped or "")
        except InvalidPhoneNumber as exc:
            raise RouteRejectedError(404) from exc
        number_route, from_carrier = await self.routes.lookup_number_from(number, flow.remote.host)
        if not from_carrier:
            # Before "not found" or "suspended": a stranger learns nothing about the number.
            self.not_carriers.shed(f"{request.method} for {number} from {flow.remote}")
            raise RouteRejectedError(403, "Not From A Carrier")
        if number_route is None:
            raise RouteRejectedError(404)
        self._refuse_suspended(number_route.suspended)
        node = Address.parse(number_route.address)
        return Forwarding(Flow(TransportKind.UDP, node), EdgeToken(flow, node), checked=True)

    @staticmethod
    def _refuse_suspended(suspended: bool) -> None:
        if suspended:
            raise RouteRejectedError(403, "Service Suspended")

    def _prepare(self, request: SipRequest, forwarding: Forwarding) -> SipRequest:
        headers = request.headers
        headers = headers.set("Max-Forwards", str(request.max_forwards - 1))
        via = self.layer.via_for(forwarding.target.transport)
        if forwarding.checked and request.method == "INVITE":
            via = self.proofs.sign(via, request.call_id)
        headers = headers.prepend("Via", str(via))
        if forwarding.token is not None and request.method in (
            "INVITE",
            "SUBSCRIBE",
            "REFER",
            "REGISTER",
        ):
            token = forwarding.token
            local = self.transport.local_address
            host = local.host
            if self.pod_host and token.outside.transport.is_websocket:
                host = self.pod_host
            inside = SipUri(host=host, port=local.port, params=(("lr", None),))
            inside = inside.with_params(**{EDGE_ROUTE_PARAM: self.tokens.encode(token)})
            if forwarding.add_path:
                headers = headers.prepend("Path", f"<{inside}>")
            elif request.method != "REGISTER" and request.to.tag is None:
                entries = [inside]
                outside = self._outward_entry(inside, token.outside.transport)
                if outside is not None:
                    # Double Record-Route (RFC 5658): the outside party must come back
                    # over TCP or its WebSocket, the node over UDP; the top entry faces
                    # the next hop.
                    inward = forwarding.target.remote == token.node
                    entries = [inside, outside] if inward else [outside, inside]
                for entry in reversed(entries):
                    headers = headers.prepend("Record-Route", f"<{entry}>")
        return request.with_headers(headers)

    def _outward_entry(self, inside: SipUri, kind: TransportKind) -> SipUri | None:
        """The Record-Route entry the outside party sees, when it differs from the inside one."""
        if kind is TransportKind.TCP:
            return inside.with_params(transport="tcp")
        if kind.is_websocket:
            # RFC 7118 section 5: the WebSocket server's own URI. Browsers send every
            # request over their one connection anyway; the port makes it ours (_is_own).
            port = self.transport.websocket_port or inside.port
            outward = SipUri(host=inside.host, port=port, params=inside.params)
            return outward.with_params(transport=kind.value.lower())
        return None

    async def _relay(
        self, transaction: ServerTransaction, outgoing: SipRequest, target: Flow
    ) -> None:
        client = self.layer.send_request(outgoing, target)
        self._pending[id(transaction)] = client
        if transaction.cancelled:
            client.cancel()
        try:
            async for response in client:
                if response.status == 100:
                    continue
                vias = response.headers.values("Via")
                upstream = response.with_headers(response.headers.replace_values("Via", vias[1:]))
                transaction.respond(upstream)
        finally:
            self._pending.pop(id(transaction), None)

    async def _relay_register(
        self, transaction: ServerTransaction, outgoing: SipRequest, target: Flow
    ) -> None:
        """Relay a REGISTER; an overloaded or silent node becomes 503 + Retry-After."""
        client = self.layer.send_request(outgoing, target)
        try:
            # shield: on timeout the client transaction lives on (timer F ends it).
            final = await asyncio.wait_for(asyncio.shield(client.final), self.register_timeout)
        except TimeoutError:
            self._shed(transaction, transaction.request, f"no answer from node {target.remote}")
            return
        if final.status == 408 or 500 <= final.status < 600:
            # The node shedding load (503), failing, or silent or unreachable (408/503
            # synthesised by our transaction): the phone must come back later, and know
            # when. (RFC 3261 16.7 would turn a 503 into a 500 here; a phone given 500
            # has no Retry-After to honour and re-registers at once.)
            retry = final.header("Retry-After") if final.status == 503 else None
            self.shed_log.shed(f"node {target.remote} answered {final.status}")
            transaction.respond(
                make_response(
                    transaction.request,
                    503,
                    extra=[("Retry-After", retry or retry_after(self.retry_after_s))],
                )
            )
            return
        vias = final.headers.values("Via")
        transaction.respond(final.with_headers(final.headers.replace_values("Via", vias[1:])))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.layer.stop()
