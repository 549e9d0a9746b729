"""The tenant media node: registrar, B2BUA, media relay, CDRs and call events.

`NodeService` is the transaction user of the node's SIP stack: it decides
what every request means (registration, a new call, a request inside a call)
and hands calls to `Call` objects, one task each.

Calls from outside (an INVITE whose Request-URI is not the tenant's SIP domain)
are taken from two places only:

- through the SIP edge, which took them from a carrier and routed them by the
  Request-URI's number; the edge signs the Via it adds (edge/relayproof.py);
- straight from one of the tenant's trunks (its own or the platform's), known by
  the source address (node/trunks/sources.py). A registered trunk sends its calls
  to the Contact the node registered, ``sip:USERNAME@NODE``: the number dialled is
  then in the To header (read in the tenant's country, ``outbound.country``).

Anything else is answered 403. The caller of a call from a carrier is the number
in P-Asserted-Identity when there is one (the carrier is a trusted peer, RFC 3325),
else the From header's. ``Privacy: id`` does not hide it from the tenant: the
tenant's PBX is inside the trust domain (RFC 3325 section 7), so the number reaches
its routing, CDRs, events and CRM; the privacy request binds what is shown to
parties outside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio as redis

from vpbx_common.agents import AgentStateStore
from vpbx_common.callbacks import CallbackStore
from vpbx_common.cdr import Direction, EndReason, HangupBy, now_ms
from vpbx_common.commands import (
    AddParty,
    CommandReply,
    MonitorCall,
    NodeCommand,
    Originate,
    ReplyStatus,
    Transfer,
    TransferStep,
)
from vpbx_common.e164 import InvalidPhoneNumber, normalize_e164
from vpbx_common.events import CallEvent, CallEventPublisher, CallEventType
from vpbx_common.nodeconfig import (
    ConferenceTarget,
    ExternalTarget,
    NodeConfig,
    Target,
    UserEntry,
    UserTarget,
)
from vpbx_common.outbound import OutboundPolicy
from vpbx_common.trunks import TrunkStatusStore

from ..cdr.shipper import CdrShipper
from ..cdr.spool import CdrSpool
from ..edge.relayproof import RelayProofs
from ..media.scheduler import PacedScheduler
from ..metrics import NodeMetrics
from ..overload import ShedLog
from ..rtp.ports import PortAllocator
from ..rtp.relay import MediaRelay
from ..sip.errors import SipParseError
from ..sip.headers import NameAddr, split_list
from ..sip.message import SipRequest, SipResponse, make_response
from ..sip.transaction import ServerTransaction, TransactionLayer, TransactionUser
from ..sip.transport import Address, Flow
from ..sip.uri import SipUri
from ..webrtc.gateway import GatewayError, WebRtcGateway, WebRtcSdpError
from ..webrtc.translate import is_webrtc
from .bindings import BindingStore
from .callbacks import QueueCallbacks
from .calllimit import TenantCallLimit
from .calls.call import Call
from .calls.facts import CallFacts, NodeRef
from .calls.features import PARK_SLOTS, Feature, FeatureKind, parse_feature
from .calls.monitor import MonitorMode
from .calls.originate import Originator
from .commands import CommandListener
from .conference import ConferenceRooms
from .crmlookup import CrmLookupClient, CrmLookupError
from .decisions import DecisionClient
from .journal import SpoolWriter
from .legs.originator import OriginatorLeg
from .legs.sip import ALLOW_IN_CALL, DeviceTarget, Side, SipUasLeg
from .legs.webrtc import BrowserReinvite, WebRtcUasLeg
from .outbound import OutboundCall, OutboundGate, OutboundRefusal
from .prompts import PromptLibrary
from .queues import QueueDispatcher
from .recordings import RecordingService
from .registrar import Authenticator, Registrar
from .routing import AgentSnapshot, CrmFailed, CrmReply, DecisionFailed, DecisionReply
from .trunks import TrunkRegistrations
from .trunks.sources import TrunkSources

logger = logging.getLogger(__name__)

ALLOW = f"{ALLOW_IN_CALL}, REGISTER"
# call.offered is awaited before the phones ring; a Redis that does not answer within
# this long delays the ringing no further (the ring matters more than the screen pop).
OFFERED_PUBLISH_TIMEOUT_S = 0.5
# Who may listen to, whisper into or barge into the tenant's calls (agents may not).
SUPERVISING_ROLES = frozenset({"supervisor", "tenant-admin"})


@dataclass(frozen=True, slots=True)
class PlannedCall:
    """Where a new call starts, and for a call out what was decided about it."""

    facts: CallFacts
    target: Target
    outbound: OutboundCall | None = None


@dataclass(frozen=True, slots=True)
class NodeIdentity:
    tenant: str
    city: str
    node_name: str
    sip_address: Address
    media_address: str

    @property
    def ref(self) -> NodeRef:
        return NodeRef(self.tenant, self.city, self.node_name)


def _settled(call: Call, refused: tuple[int, str] | None) -> CommandReply:
    """The reply to a command acted on by ``call``: accepted, or refused with the reason."""
    if refused is not None:
        _status, reason = refused
        return CommandReply(status=ReplyStatus.REFUSED, call_id=call.call_id, detail=reason)
    return CommandReply(status=ReplyStatus.ACCEPTED, call_id=call.call_id)


class NodeService:
    def __init__(
        self,
        identity: NodeIdentity,
        config: Callable[[], NodeConfig],
        layer_factory: Callable[[TransactionUser], TransactionLayer],
        bindings: BindingStore,
        authenticator: Authenticator,
        ports: PortAllocator,
        spool: CdrSpool,
        redis_client: redis.Redis,
        *,
        shipper: CdrShipper | None = None,
        registrar_limits: tuple[int, int] = (30, 3600),
        journal_touch_interval: float = 5.0,
        events: CallEventPublisher | None = None,
        prompts: PromptLibrary | None = None,
        decisions: DecisionClient | None = None,
        crm: CrmLookupClient | None = None,
        recordings: RecordingService | None = None,
        url_policy: OutboundPolicy | None = None,
        relay_proofs: RelayProofs | None = None,
        trunk_sources: TrunkSources | None = None,
        webrtc: WebRtcGateway | None = None,
        metrics: NodeMetrics | None = None,
    ) -> None:
        self.identity = identity
        self.metrics = (
            metrics if metrics is not None else NodeMetrics(identity.tenant, identity.city)
        )
        self.metrics.watch_active(lambda: len(self.calls))
        self.metrics.watch_spool(spool)
        self._webrtc = webrtc
        self.config = config
        self.bindings = bindings
        self.auth = authenticator
        self.ports = ports
        self.spool = spool
        self.shipper = shipper
        self.redis = redis_client
        self.events = events if events is not None else CallEventPublisher(redis_client)
        self.journal_touch_interval = journal_touch_interval
        self.agents = AgentStateStore(redis_client)
        self.scheduler = PacedScheduler()
        # The tenant's conference rooms on this node (one mixer per room in use).
        self.rooms = ConferenceRooms(self.scheduler, identity.tenant)
        self.prompts = prompts if prompts is not None else PromptLibrary()
        # Without one (tests, a node without an object store) nothing is recorded and
        # nobody has voicemail.
        self.recordings = (
            recordings
            if recordings is not None
            else RecordingService(spool.directory, None, self.events.publish)
        )
        # Without a client (tests), HTTP decision steps fall back as if the URL were down.
        self.decisions = decisions
        # Without one (no VPBX_CRM_URL), crm-lookup steps go on with the next step.
        self.crm = crm
        # How long the phones wait after call.offered (NodeSettings.screen_pop_lead_ms).
        self.screen_pop_lead_s = 0.0
        self.queues = QueueDispatcher(
            redis_client,
            identity.tenant,
            identity.node_name,
            config,
            self.agents,
            reachable=lambda extensions: bindings.registered(identity.tenant, extensions),
        )
        # Shipping per CDR would open the CDR store once per call; the shipper batches
        # on its own interval instead.
        self.spool_writer = SpoolWriter()
        self.registrar = Registrar(
            bindings,
            authenticator,
            config,
            min_expires=registrar_limits[0],
            max_expires=registrar_limits[1],
        )
        self.layer = layer_factory(self)
        # Tenant trunks' hosts pass the outbound URL policy (registrations and calls);
        # without one given, the strict one.
        self.url_policy = (
            url_policy if url_policy is not None else OutboundPolicy(allow_private=False)
        )
        self.trunks = TrunkRegistrations(
            self.layer,
            tenant=identity.tenant,
            city=identity.city,
            contact=identity.sip_address,
            store=TrunkStatusStore(redis_client),
            outbound=self.url_policy,
        )
        # Checks the edge's signed Via on calls from outside; without one (tests), no
        # INVITE counts as relayed by the edge: calls come from the tenant's trunks only.
        self.relay_proofs = relay_proofs
        self.trunk_sources = trunk_sources if trunk_sources is not None else TrunkSources()
        # Calls from outside that came neither through the edge nor from a trunk: counted,
        # logged at most once per interval (a scanner must not flood the log).
        self.not_from_trunks = ShedLog(
            logger, f"tenant={identity.tenant} node", level=logging.INFO, answered="403"
        )
        self.calls: dict[str, Call] = {}
        self.call_limit = TenantCallLimit(redis_client)
        self.outbound = OutboundGate(redis_client, identity.tenant)
        # Calls holding one of the plan's lines (concurrent_calls), released when they end.
        self._counted_calls: set[str] = set()
        # Calls past the number's channel check but not in self.calls yet (Call-ID ->
        # number): planning awaits Redis, and a second INVITE must count the first.
        self._arriving: dict[str, str] = {}
        self._legs: dict[str, Call] = {}
        # Calls the node placed, by the Call-ID of the device that took them (its requests).
        self._originators: dict[str, Call] = {}
        self._parked: dict[str, Call] = {}  # park slot -> the call waiting there
        self.originator = Originator(self)
        self.callbacks = QueueCallbacks(
            CallbackStore(redis_client),
            self.queues,
            self.originator,
            config,
            self._spawn,
            draining=lambda: self.draining,
        )
        self.commands = CommandListener(
            redis_client, identity.tenant, identity.city, identity.node_name, self, self._spawn
        )
        self._by_transaction: dict[int, Call] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.draining = False
        self._idle = asyncio.Event()
        self._idle.set()

    # --- identity ---------------------------------------------------------

    @property
    def tenant(self) -> str:
        return self.identity.tenant

    @property
    def city(self) -> str:
        return self.identity.city

    @property
    def node_name(self) -> str:
        return self.identity.node_name

    @property
    def sip_address(self) -> Address:
        return self.identity.sip_address

    @property
    def media_address(self) -> str:
        return self.identity.media_address

    @property
    def webrtc(self) -> WebRtcGateway | None:
        return self._webrtc

    def webrtc_failed(self, session_id: str, reason: str) -> None:
        """The gateway lost a browser's media (the session is keyed by its leg's Call-ID)."""
        call = self.call_by_dialog(session_id)
        logger.warning("tenant=%s WebRTC session %s failed: %s", self.tenant, session_id, reason)
        if call is not None:
            call.media_lost(reason)

    @property
    def contact_uri(self) -> SipUri:
        return SipUri(host=self.sip_address.host, port=self.sip_address.port, user="vpbx")

    # --- TransactionUser --------------------------------------------------

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def on_request(
        self, request: SipRequest, flow: Flow, transaction: ServerTransaction | None
    ) -> None:
        if transaction is None:
            return  # ACK for a 2xx we sent: the server transaction already stopped resending
        method = request.method
        if method == "REGISTER":
            self._spawn(self._register(request, transaction))
        elif method == "OPTIONS" and request.to.tag is None:
            transaction.respond(
                make_response(request, 200, extra=[("Allow", ALLOW), ("Accept", "application/sdp")])
            )
        elif request.to.tag is not None:
            self._in_dialog(request, transaction)
        elif method == "INVITE":
            self._spawn(self._new_call(request, transaction))
        elif method in ("BYE", "INFO", "UPDATE", "PRACK"):
            transaction.respond(make_response(request, 481))
        else:
            transaction.respond(make_response(request, 405, extra=[("Allow", ALLOW)]))

    def on_cancel(self, transaction: ServerTransaction, cancel: SipRequest) -> None:
        call = self._by_transaction.get(id(transaction))
        if call is not None:
            call.on_caller_cancel()
        else:
            transaction.respond(make_response(transaction.request, 487))

    def on_stray_response(self, response: SipResponse, flow: Flow) -> None:
        # Responses to the trunk REGISTERs reach their client transactions (self.trunks);
        # only a copy arriving after the transaction ended comes here, and is dropped.
        if response.is_success and response.cseq.method == "INVITE":
            call = self._legs.get(response.call_id)
            if call is not None:
                call.on_callee_2xx_retransmission(response)

    # --- requests ---------------------------------------------------------

    async def _register(self, request: SipRequest, transaction: ServerTransaction) -> None:
        try:
            response = await self.registrar.handle(request)
        except redis.RedisError as exc:
            logger.error("tenant=%s registrar storage failed: %s", self.tenant, exc)
            response = make_response(
                request, 503, "Registrar Unavailable", extra=[("Retry-After", "5")]
            )
        transaction.respond(response)

    def _in_dialog(self, request: SipRequest, transaction: ServerTransaction) -> None:
        side = Side.CALLER
        call = self.calls.get(request.call_id) or self._originators.get(request.call_id)
        if call is None:
            side = Side.CALLEE
            call = self._legs.get(request.call_id)
        if call is None:
            transaction.respond(make_response(request, 481))
            return
        webrtc = self._webrtc
        if (
            request.method == "INVITE"
            and webrtc is not None
            and is_webrtc(request.body)
            and webrtc.has(request.call_id)
        ):
            self._spawn(self._browser_reinvite(call, side, request, transaction))
            return
        call.on_in_dialog(side, request, transaction)

    async def _browser_reinvite(
        self, call: Call, side: Side, request: SipRequest, transaction: ServerTransaction
    ) -> None:
        """A browser's re-INVITE (hold, resume): the call sees the gateway's plain offer
        and answers it; the answer goes back translated (BrowserReinvite)."""
        assert self._webrtc is not None
        try:
            plain = await self._webrtc.offer_from_browser(request.call_id, request.body, again=True)
        except WebRtcSdpError as exc:
            transaction.respond(make_response(request, 488, f"Bad WebRTC SDP: {exc.reason}"[:80]))
            return
        except GatewayError:
            transaction.respond(make_response(request, 503, extra=[("Retry-After", "5")]))
            return
        translated = BrowserReinvite(transaction, self._webrtc, request.call_id)
        call.on_in_dialog(side, request.with_body(plain), cast(ServerTransaction, translated))

    async def _new_call(self, request: SipRequest, transaction: ServerTransaction) -> None:
        if self.draining:
            transaction.respond(
                make_response(request, 503, "Draining", extra=[("Retry-After", "1")])
            )
            return
        if self.config().suspended:
            # The edge refuses a suspended tenant too, but its routing table may lag.
            transaction.respond(make_response(request, 403, "Service Suspended"))
            return
        if request.call_id in self.calls or request.call_id in self._arriving:
            transaction.respond(make_response(request, 482))
            return
        try:
            planned = await self._plan(request, transaction)
        except redis.RedisError as exc:
            logger.error("tenant=%s cannot read registrations: %s", self.tenant, exc)
            transaction.respond(make_response(request, 503, extra=[("Retry-After", "5")]))
            self._free_line(request.call_id)
            return
        finally:
            self._arriving.pop(request.call_id, None)
        if planned is None:
            return
        caller = SipUasLeg(request, transaction)
        if is_webrtc(request.body):
            browser = await self._browser_caller(request, transaction)
            if browser is None:
                self._free_line(request.call_id)
                return
            caller = browser
        call = Call(
            self,
            caller,
            planned.facts,
            planned.target,
            outbound=planned.outbound,
        )
        self.calls[call.call_id] = call
        self._idle.clear()
        self._by_transaction[id(transaction)] = call
        await call.run()

    async def _browser_caller(
        self, request: SipRequest, transaction: ServerTransaction
    ) -> WebRtcUasLeg | None:
        """A browser's INVITE: the call goes on with the gateway's plain offer, or the
        browser is answered 488 (SDP we cannot bridge) or 503 (no gateway) here."""
        if self._webrtc is None:
            transaction.respond(make_response(request, 488, "WebRTC Not Available Here"))
            return None
        try:
            plain = await self._webrtc.offer_from_browser(request.call_id, request.body)
        except WebRtcSdpError as exc:
            transaction.respond(make_response(request, 488, f"Bad WebRTC SDP: {exc.reason}"[:80]))
            await self._webrtc.close(request.call_id)
            return None
        except GatewayError as exc:
            logger.warning(
                "call=%s tenant=%s WebRTC gateway: %s", request.call_id, self.tenant, exc
            )
            transaction.respond(make_response(request, 503, extra=[("Retry-After", "5")]))
            return None
        return WebRtcUasLeg(request.with_body(plain), transaction, self._webrtc)

    async def _plan(
        self, request: SipRequest, transaction: ServerTransaction
    ) -> PlannedCall | None:
        """Where the call starts (the number's entry, the extension dialled), or answer the
        request and return None."""
        config = self.config()
        uri = request.sip_uri
        if uri.host.lower() == config.sip_domain.lower():
            # A tenant phone calling: it must prove who it is (RFC 3261 22.3).
            username, challenge, status = self.auth.check(request, "Proxy-Authorization")
            if username is None:
                transaction.respond(make_response(request, status, extra=challenge))
                return None
            extension = config.extension_for(username)
            if extension is None:  # the device was removed a moment ago
                transaction.respond(make_response(request, 403))
                return None
            dialled = uri.user_unescaped or ""
            callee = config.user(dialled) if dialled else None
            room = config.conference_room(dialled) if dialled and callee is None else None
            user = config.user(extension)
            nobody = callee is None and room is None
            feature = parse_feature(dialled, config.feature_codes) if nobody else None
            if feature is not None:
                self._feature(request, transaction, extension, feature)
                return None
            if nobody:
                return await self._plan_outbound(request, transaction, extension, user, dialled)
            facts = CallFacts(
                call_id=request.call_id,
                node=self.identity.ref,
                direction=Direction.INTERNAL,
                number=dialled,
                label="",
                caller=extension,
                caller_display=user.name if user else None,
            )
            if room is not None:  # a conference room's extension: the phone joins it
                return PlannedCall(facts, ConferenceTarget(room=dialled, room_id=room.id))
            assert callee is not None
            return PlannedCall(facts, UserTarget(extension=dialled, user_id=callee.id))
        relayed = self.relay_proofs is not None and self.relay_proofs.verify(request)
        trunk = None if relayed else self.trunk_sources.match(transaction.flow.remote.host)
        if not relayed and trunk is None:
            self.not_from_trunks.shed(
                f"call={request.call_id} INVITE {uri} from {transaction.flow.remote}: "
                "neither through the edge nor from a trunk"
            )
            transaction.respond(make_response(request, 403, "Not From A Trunk"))
            return None
        number = _called_number(request, config, from_trunk=trunk is not None)
        if number is None:
            transaction.respond(make_response(request, 404))
            return None
        entry = config.number(number)
        if entry is None:
            transaction.respond(make_response(request, 404))
            return None
        if entry.channels and self._active_on(number) >= entry.channels:
            self._refuse_inbound(request, transaction, number, entry.label, "All Channels Busy")
            return None
        self._arriving[request.call_id] = number
        if config.concurrent_calls:
            # The plan's lines are shared by every number and city of the tenant.
            if not await self.call_limit.acquire(
                self.tenant, request.call_id, config.concurrent_calls
            ):
                logger.info(
                    "call=%s tenant=%s refused: all %d lines of the plan in use",
                    request.call_id,
                    self.tenant,
                    config.concurrent_calls,
                )
                self._refuse_inbound(
                    request, transaction, number, entry.label, "Plan Call Limit Reached"
                )
                return None
            self._counted_calls.add(request.call_id)
        caller, caller_display = _outside_caller(request, config.outbound.country)
        facts = CallFacts(
            call_id=request.call_id,
            node=self.identity.ref,
            direction=Direction.INBOUND,
            number=number,
            label=entry.label or "",
            caller=caller,
            caller_display=caller_display,
        )
        if trunk is not None:
            logger.info(
                "call=%s tenant=%s from trunk %s (%s) for %s",
                request.call_id,
                self.tenant,
                trunk.name,
                transaction.flow.remote,
                number,
            )
        return PlannedCall(facts, entry.target)

    def _feature(
        self, request: SipRequest, transaction: ServerTransaction, extension: str, feature: Feature
    ) -> None:
        """A phone dialled a feature code: take a ringing or parked call to it."""
        config = self.config()
        call: Call | None = None
        how = "pickup"
        if feature.kind is FeatureKind.PICKUP_GROUP:
            colleagues = {
                member
                for group in config.groups
                if extension in group.members
                for member in group.members
                if member != extension
            }
            call = self._oldest_ringing(lambda member: member in colleagues)
        elif feature.kind is FeatureKind.PICKUP_DIRECTED:
            call = self._oldest_ringing(lambda member: member == feature.argument)
        elif feature.kind is FeatureKind.PARK:
            call, how = self._parked.get(feature.argument), "retrieve"
        else:
            user = config.user(extension)
            if user is None or user.role not in SUPERVISING_ROLES:
                transaction.respond(make_response(request, 403, "Supervisors Only"))
                return
            how = str(feature.kind)
            call = next((c for c in self.calls.values() if c.talking_with(feature.argument)), None)
        if call is None:
            phrase = {"retrieve": "Nothing Parked There", "pickup": "Nothing To Pick Up"}.get(
                how, "No Call To Monitor"
            )
            transaction.respond(make_response(request, 404, phrase))
            return
        logger.info(
            "call=%s tenant=%s %s by %s (%s)", call.call_id, self.tenant, how, extension, feature
        )
        call.on_take(request, transaction, extension, how)

    def _oldest_ringing(self, wanted: Callable[[str], bool]) -> Call | None:
        ringing = [
            call
            for call in self.calls.values()
            if any(
                wanted(member) and call.ringing_for(member) for member in call.ringing_extensions
            )
        ]
        return min(ringing, key=lambda call: call.facts.start_ms, default=None)

    def park(self, call: Call, slot: str) -> str | None:
        free = [str(n) for n in PARK_SLOTS if str(n) not in self._parked]
        chosen = slot or (free[0] if free else "")
        if not chosen or chosen in self._parked:
            return None
        self._parked[chosen] = call
        return chosen

    def unpark(self, call: Call) -> None:
        for slot, parked in list(self._parked.items()):
            if parked is call:
                del self._parked[slot]

    async def _plan_outbound(
        self,
        request: SipRequest,
        transaction: ServerTransaction,
        extension: str,
        user: UserEntry | None,
        dialled: str,
    ) -> PlannedCall | None:
        """A tenant phone dialled something that is no extension: a call out, if allowed."""
        config = self.config()
        number = self.outbound.destination(dialled, config) if dialled else None
        if number is None:
            transaction.respond(make_response(request, 404))
            return None
        facts = CallFacts(
            call_id=request.call_id,
            node=self.identity.ref,
            direction=Direction.OUTBOUND,
            number=number,
            label="",
            caller=extension,
            caller_display=user.name if user else None,
        )
        entry = config.number(number)
        if entry is not None:
            # The tenant's own number: its route, without a round trip through a carrier.
            facts.direction = Direction.INTERNAL
            return PlannedCall(facts, entry.target)
        refusal = self.outbound.policy_refusal(number, config)
        caller_id = self.outbound.caller_id(config, user, number)
        if refusal is None and caller_id is not None:
            admission = await self.outbound.admit(request.call_id, config)
            if not isinstance(admission, OutboundRefusal):
                privacy = (request.header("Privacy") or "").lower().replace(" ", "").split(";")
                outbound = OutboundCall(number, caller_id, "id" in privacy, admission.max_talk_s)
                return PlannedCall(facts, ExternalTarget(number=number), outbound)
            refusal = admission
        self._refuse_outbound(request, transaction, facts, refusal or OutboundRefusal.NO_CALLER_ID)
        return None

    def _refuse_outbound(
        self,
        request: SipRequest,
        transaction: ServerTransaction,
        facts: CallFacts,
        refusal: OutboundRefusal,
    ) -> None:
        """Refuse a call out with a SIP answer that says why (and a CDR, event, count)."""
        status, phrase = refusal.sip_status
        transaction.respond(make_response(request, status, phrase))
        self.record_refusal(facts, refusal)

    def record_refusal(self, facts: CallFacts, refusal: OutboundRefusal) -> None:
        """A refused call out: its CDR, a call.refused event naming the rule, the count."""
        logger.info(
            "call=%s tenant=%s call out to %s refused: %s",
            facts.call_id,
            self.tenant,
            facts.number,
            refusal,
        )
        facts.end_reason = EndReason.REJECTED
        facts.sip_status = refusal.sip_status[0]
        facts.end_ms = facts.start_ms
        record = facts.record()
        self.spool_writer.submit(lambda: self.spool.append(record))
        event = facts.event(CallEventType.REFUSED)
        self._spawn(self._publish(dataclasses.replace(event, end_reason=str(refusal))))
        self._spawn(self._count_refusal(refusal))

    async def _count_refusal(self, refusal: OutboundRefusal) -> None:
        try:
            await self.outbound.count_refusal(refusal)
        except redis.RedisError as exc:
            logger.warning("tenant=%s refusal not counted: %s", self.tenant, exc)

    def _refuse_inbound(
        self,
        request: SipRequest,
        transaction: ServerTransaction,
        number: str,
        label: str | None,
        phrase: str,
    ) -> None:
        """Busy a customer's call before anyone rings; the tenant still sees it as missed."""
        transaction.respond(make_response(request, 486, phrase))
        caller, _display = _outside_caller(request, self.config().outbound.country)
        facts = CallFacts(
            call_id=request.call_id,
            node=self.identity.ref,
            direction=Direction.INBOUND,
            number=number,
            label=label or "",
            caller=caller,
            end_reason=EndReason.BUSY,
            sip_status=486,
            hangup_by=HangupBy.SYSTEM,
        )
        facts.end_ms = facts.start_ms
        record = facts.record()
        self.spool_writer.submit(lambda: self.spool.append(record))
        self._spawn(self._publish(facts.event(CallEventType.ENDED)))

    async def devices(self, extension: str) -> list[DeviceTarget]:
        bindings = await self.bindings.list(self.tenant, extension, time.time())
        return [DeviceTarget(extension, binding) for binding in bindings]

    async def agent_snapshot(self) -> AgentSnapshot:
        return AgentSnapshot.from_states(await self.agents.snapshot(self.tenant))

    def agent_talking(self, extension: str, call_id: str) -> None:
        self._spawn(self._agent_update(self.agents.call_answered, extension, call_id))

    def agent_free(self, extension: str, call_id: str) -> None:
        self._spawn(self._agent_update(self.agents.call_ended, extension, call_id))

    def forget_queued(self, call_id: str, group: str) -> None:
        self._spawn(self.queues.leave(call_id, group))

    def remember_last_member(self, group: str, extension: str) -> None:
        self._spawn(self._agent_update(self.agents.remember_last_member, group, extension))

    async def _agent_update(
        self, update: Callable[[str, str, str], Awaitable[None]], first: str, second: str
    ) -> None:
        try:
            await update(self.tenant, first, second)
        except redis.RedisError as exc:
            # Routing reads a slightly stale picture until the next update succeeds.
            logger.warning("tenant=%s agent state not updated: %s", self.tenant, exc)

    async def decide(
        self, url: str, body: dict[str, str], timeout_s: float
    ) -> DecisionReply | DecisionFailed:
        if self.decisions is None:
            return DecisionFailed("this node makes no HTTP requests")
        reply = await self.decisions.ask(
            url, body, secret=self.config().decision_secret, timeout_s=timeout_s
        )
        if reply.error is not None or reply.status is None:
            return DecisionFailed(reply.error or "no reply")
        # The router validates the reply itself, from the bytes, as it would any reply.
        return DecisionReply(reply.status, json.dumps(reply.document).encode())

    @property
    def crm_lookup_timeout_ms(self) -> int | None:
        return self.crm.timeout_ms if self.crm is not None else None

    async def look_up_caller(self, call_id: str, phone: str) -> CrmReply | CrmFailed:
        if self.crm is None:
            return CrmFailed("CRM not configured")
        started = time.monotonic()
        try:
            contact = await self.crm.lookup(self.tenant, phone)
        except CrmLookupError as exc:
            logger.warning(
                "call=%s tenant=%s CRM lookup failed after %d ms: %s",
                call_id,
                self.tenant,
                round((time.monotonic() - started) * 1000),
                exc,
            )
            return CrmFailed(str(exc))
        logger.info(
            "call=%s tenant=%s CRM lookup in %d ms: %s",
            call_id,
            self.tenant,
            round((time.monotonic() - started) * 1000),
            f"contact {contact.id}" if contact is not None else "unknown caller",
        )
        return CrmReply(contact)

    def _active_on(self, number: str) -> int:
        running = sum(1 for call in self.calls.values() if call.facts.number == number)
        return running + sum(1 for arriving in self._arriving.values() if arriving == number)

    # --- services for calls -------------------------------------------------

    async def open_relay(self, call_id: str) -> MediaRelay:
        relay = MediaRelay(self.media_address, self.ports, call_id=call_id)
        await relay.start()
        return relay

    def call_by_dialog(self, call_id: str) -> Call | None:
        return self.calls.get(call_id) or self._legs.get(call_id) or self._originators.get(call_id)

    def register_leg(self, call: Call, call_id: str) -> None:
        self._legs[call_id] = call

    def publish(self, call: Call, event_type: CallEventType) -> None:
        self._spawn(self._publish(call.facts.event(event_type)))

    def publish_event(self, event: CallEvent) -> None:
        self._spawn(self._publish(event))

    async def publish_now(self, event: CallEvent) -> None:
        """``call.offered``, on the stream before the phones ring: it feeds the CRM's screen
        pop, so a node without a CRM (no VPBX_CRM_URL) spends no Redis write on it."""
        if self.crm is None:
            return
        try:
            async with asyncio.timeout(OFFERED_PUBLISH_TIMEOUT_S):
                await self.events.publish(event)
        except (redis.RedisError, TimeoutError) as exc:
            logger.warning(
                "call=%s tenant=%s %s not published before ringing: %s",
                event.call_id,
                self.tenant,
                event.type,
                str(exc) or type(exc).__name__,
            )
            return
        if self.screen_pop_lead_s > 0:
            # The card's head start over the ring (no pop is coming when the XADD failed).
            await asyncio.sleep(self.screen_pop_lead_s)

    async def _publish(self, event: CallEvent) -> None:
        try:
            await self.events.publish(event)
        except redis.RedisError as exc:
            logger.warning(
                "call=%s tenant=%s event not published: %s", event.call_id, self.tenant, exc
            )

    def journal_begin(self, call: Call) -> None:
        open_call = call.facts.open_call()
        self.spool_writer.submit(lambda: self.spool.begin_call(open_call))

    def journal_answer(self, call: Call) -> None:
        self.journal_update(call)

    def journal_update(self, call: Call) -> None:
        open_call = call.facts.open_call()
        self.spool_writer.submit(lambda: self.spool.update_call(open_call))

    def call_finished(self, call: Call) -> None:
        record = call.facts.record()
        self.spool_writer.submit(lambda: self.spool.finish_call(record))
        self.metrics.call_ended(record, call.media_stats)
        self._free_line(call.call_id)
        self.calls.pop(call.call_id, None)
        if not self.calls:
            self._idle.set()
        self._by_transaction.pop(id(call.transaction), None)
        for leg in call.legs:
            self._legs.pop(leg.call_id, None)
        if isinstance(call.caller, OriginatorLeg):
            self._originators.pop(call.caller.device_call_id, None)
        elif isinstance(call.caller, WebRtcUasLeg):
            call.caller.close()
        self.unpark(call)

    def _free_line(self, call_id: str) -> None:
        """Give back the plan line the call held, if it held one."""
        if call_id in self._counted_calls:
            self._counted_calls.discard(call_id)
            self._spawn(self._release_line(call_id))

    # --- calls the control API asks for (vpbx_common.commands) ---------------------

    async def originate(self, command: NodeCommand, body: Originate) -> CommandReply:
        if self.draining:
            return CommandReply(status=ReplyStatus.FAILED, detail="the node is draining")
        return await self.originator.originate(command, body)

    async def transfer(self, command: NodeCommand, body: Transfer) -> CommandReply:
        call = self.calls.get(body.call_id)
        if call is None:
            return CommandReply(status=ReplyStatus.NOT_FOUND)
        by = f"api:{command.by_user or '-'}"
        if body.attended:
            refused = await call.consult(body.target, by=by, caller_id=body.caller_id)
        else:
            refused = await call.transfers.start(body.target, by=by)
        return _settled(call, refused)

    async def transfer_step(self, command: NodeCommand, body: TransferStep) -> CommandReply:
        call = self.calls.get(body.call_id)
        if call is None:
            return CommandReply(status=ReplyStatus.NOT_FOUND)
        return _settled(call, await call.end_consultation(complete=body.action == "complete"))

    async def monitor(self, command: NodeCommand, body: MonitorCall) -> CommandReply:
        call = self.calls.get(body.call_id)
        if call is None:
            return CommandReply(status=ReplyStatus.NOT_FOUND)
        user = self.config().user(body.extension)
        if user is None or user.role not in SUPERVISING_ROLES:
            return CommandReply(
                status=ReplyStatus.REFUSED, call_id=call.call_id, detail="supervisors only"
            )
        if not call.can_join():
            return CommandReply(
                status=ReplyStatus.REFUSED,
                call_id=call.call_id,
                detail="the call is not connected, or is being transferred or monitored",
            )
        devices = await self.devices(body.extension)
        if not devices:
            return CommandReply(
                status=ReplyStatus.REFUSED,
                call_id=call.call_id,
                detail="the user has no registered phone",
            )
        by = f"api:{command.by_user or '-'}"
        refused = await call.supervise(MonitorMode(body.mode), body.extension, devices, by)
        if refused is not None:
            return CommandReply(status=ReplyStatus.REFUSED, call_id=call.call_id, detail=refused[1])
        return CommandReply(status=ReplyStatus.ACCEPTED, call_id=call.call_id)

    async def conference(self, command: NodeCommand, body: AddParty) -> CommandReply:
        call = self.calls.get(body.call_id)
        if call is None:
            return CommandReply(status=ReplyStatus.NOT_FOUND)
        refused = await call.add_party(
            body.target, by=f"api:{command.by_user or '-'}", caller_id=body.caller_id
        )
        return _settled(call, refused)

    def spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        self._spawn(coroutine)

    def publish_facts(self, facts: CallFacts, event_type: CallEventType) -> None:
        self._spawn(self._publish(facts.event(event_type)))

    def finish_facts(self, facts: CallFacts) -> None:
        """The CDR and the end event of a call that never became a ``Call``."""
        record = facts.record()
        self.spool_writer.submit(lambda: self.spool.append(record))
        self.publish_facts(facts, CallEventType.ENDED)

    async def run_originated(self, call: Call, device_call_id: str) -> None:
        self.calls[call.call_id] = call
        self._originators[device_call_id] = call
        self._idle.clear()
        await call.run()

    def release_outbound(self, key: str, talked_s: float) -> None:
        self._spawn(self._release_outbound(key, talked_s))

    def count_refusal(self, refusal: OutboundRefusal) -> None:
        self._spawn(self._count_refusal(refusal))

    async def _release_outbound(self, call_id: str, talked_s: float) -> None:
        try:
            await self.outbound.release(call_id, talked_s)
        except redis.RedisError as exc:
            # The places free themselves when stale; the minutes are lost to the count.
            logger.warning(
                "call=%s tenant=%s outbound counters not updated: %s", call_id, self.tenant, exc
            )

    async def _release_line(self, call_id: str) -> None:
        try:
            await self.call_limit.release(self.tenant, call_id)
        except redis.RedisError as exc:
            # The line frees itself when its entry goes stale (calllimit.STALE_AFTER_S).
            logger.warning("call=%s tenant=%s line not released: %s", call_id, self.tenant, exc)

    # --- lifecycle --------------------------------------------------------

    def start(self) -> None:
        self._spawn(self.commands.run())
        self.spool_writer.start()
        self.scheduler.start()
        self.rooms.start()
        self.queues.start()
        self.callbacks.start()
        self.trunks.start(self.config())
        self.trunk_sources.start(self.config().trunks)
        self._spawn(self._touch_journal())

    def config_changed(self, config: NodeConfig) -> None:
        """A new config became current (ConfigHolder listener)."""
        self.trunks.update(config)
        self.trunk_sources.update(config.trunks)

    async def _touch_journal(self) -> None:
        """Keep open calls' journal entries and their agents' talking state fresh: a crash
        then dates their end closely, and frees the agents soon."""
        while True:
            await asyncio.sleep(self.journal_touch_interval)
            if self.calls:
                self.spool_writer.submit(self.spool.touch_open_calls)
                talking = [
                    (person, call.call_id)
                    for call in self.calls.values()
                    for person in call.people_on_it()
                ]
                try:
                    await self.agents.calls_go_on(self.tenant, talking)
                except redis.RedisError as exc:
                    # Talking entries last TALKING_STALE_AFTER_S; the next round refreshes them.
                    logger.warning("tenant=%s talking state not refreshed: %s", self.tenant, exc)

    async def drain(self, timeout: float) -> None:
        """Stop taking calls, let the ones in progress finish (bounded)."""
        self.draining = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)

    async def stop(self) -> None:
        # First, while the transport still runs: the trunks unregister (bounded wait).
        await self.trunks.stop()
        await self.trunk_sources.stop()
        await self.callbacks.stop()
        await self.queues.stop()
        self.rooms.stop()
        self.scheduler.stop()
        if self.decisions is not None:
            await self.decisions.stop()
        if self.crm is not None:
            await self.crm.stop()
        await self.spool_writer.stop()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.layer.stop()

    def recover(self) -> int:
        """Turn calls a crashed predecessor left open into CDRs (end reason node-lost)."""
        recovered = self.spool.recover_open_calls(now_ms())
        for record in recovered:
            logger.warning(
                "call=%s tenant=%s recovered as %s",
                record.call_id,
                self.tenant,
                EndReason.NODE_LOST,
            )
        return len(recovered)


def _e164(text: str, country: str) -> str | None:
    try:
        return normalize_e164(text, country)
    except InvalidPhoneNumber:
        return None


def _uri_number_text(uri: object) -> str:
    """The part of a URI a phone number would be in: a SIP URI's user, a tel: URI."""
    if isinstance(uri, SipUri):
        return uri.user_unescaped or ""
    text = str(uri)
    return text if text.lower().startswith("tel:") else ""


def _called_number(request: SipRequest, config: NodeConfig, *, from_trunk: bool) -> str | None:
    """The number a call from outside is for, in E.164; None when there is none.

    Through the edge: the Request-URI's user, which the edge routed by. Straight from a
    trunk: that too when it is one of the tenant's numbers, else the To header's (a
    registered trunk sends to ``sip:USERNAME@NODE``, the dialled number only in To),
    both read in the tenant's country.
    """
    dialled = request.sip_uri.user_unescaped or ""
    if not from_trunk:
        return _e164(dialled, "RU")  # as the edge read it
    country = config.outbound.country
    number = _e164(dialled, country)
    if number is not None and config.number(number) is not None:
        return number
    return _e164(_uri_number_text(request.to.uri), country) or number


def _asserted_identity(request: SipRequest, country: str) -> tuple[str, str | None] | None:
    """The first phone number in P-Asserted-Identity (RFC 3325) and its display name."""
    for line in request.headers.lines("P-Asserted-Identity"):
        for value in split_list(line):
            try:
                identity = NameAddr.parse(value)
            except SipParseError:
                continue  # a malformed entry asserts nothing; the next one may
            number = _e164(_uri_number_text(identity.uri), country)
            if number is not None:
                return number, identity.display_name
    return None


def _outside_caller(request: SipRequest, country: str = "RU") -> tuple[str, str | None]:
    """The caller of a call from outside and its display name.

    Only carriers send these calls (the edge and the node refuse anyone else), so the
    number in P-Asserted-Identity is trusted when there is one; else the From header's.
    In E.164 when it is a phone number; a caller ID that is none (anonymous, a SIP
    name) stays as sent.
    """
    asserted = _asserted_identity(request, country)
    if asserted is not None:
        number, display = asserted
        return number, display or request.from_.display_name
    caller_uri = request.from_.uri
    caller = (caller_uri.user_unescaped if isinstance(caller_uri, SipUri) else None) or "anonymous"
    with contextlib.suppress(InvalidPhoneNumber):
        caller = normalize_e164(caller, country)
    return caller, request.from_.display_name
