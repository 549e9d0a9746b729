"""A call leg to a phone number through the tenant's carrier trunks.

The leg tries the trunks in their order (the tenant's own first, then the
platform's, each by priority) and goes on to the next one when a trunk
answers 5xx or 408, or does not answer at all (failover). A 401/407 challenge
is answered once per trunk with the trunk's credentials. Any other final
answer (busy, no such number, declined) is the callee's answer and ends the
leg: another carrier would only ring the same person again.

To the call the leg looks like any UAC leg: it reports provisional answers, the
answer or the final failure, and its ``request`` and ``flow`` are those of the
attempt that is current, so the dialog, the ACK and the CANCEL go where the
answer came from. One Call-ID and From tag serve every attempt (RFC 3261 8.1.3.5
for the authenticated retry; the same for failover keeps in-dialog routing of
the call one entry).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from vpbx_common.cdr import RouteStep
from vpbx_common.nodeconfig import TrunkEntry
from vpbx_common.outbound import OutboundPolicy
from vpbx_common.trunks import TrunkTransport

from ...sip.digest import DigestChallenge, DigestParseError, build_credentials, preferred_challenge
from ...sip.headers import CSeq, NameAddr
from ...sip.message import Headers, SipRequest, SipResponse
from ...sip.transaction import TransactionLayer, new_call_id, new_tag
from ...sip.transport import Address, Flow, TransportKind
from ...sip.uri import SipUri
from ..trunks.destination import TrunkUnreachableError, trunk_destination
from .sip import ALLOW_IN_CALL, SDP, Answered, Failed, LegEvent, Provisional, SipUacLeg

logger = logging.getLogger(__name__)

# Final answers after which the next trunk is tried: the carrier failed or refused us
# (authentication, not allowed, overloaded, silent), not the callee.
_CARRIER_FAILURES = frozenset({401, 403, 407, 408})


def is_failover_status(status: int) -> bool:
    return status in _CARRIER_FAILURES or 500 <= status < 600


@dataclass(frozen=True, slots=True)
class OutboundIdentity:
    """Who the call shows as coming from on the trunk (E.164), and whether it is withheld."""

    number: str
    withheld: bool = False


@dataclass(slots=True)
class TrunkAttempt:
    """What one trunk answered, for the call's route."""

    trunk: str
    status: int
    reason: str
    at: float  # loop time of the answer


@dataclass(slots=True)
class TrunkUacLeg(SipUacLeg):
    """An INVITE to ``member`` (E.164) through ``trunks`` in order, with failover."""

    trunks: tuple[TrunkEntry, ...] = ()
    url_policy: OutboundPolicy = field(default_factory=lambda: OutboundPolicy(allow_private=False))
    identity: OutboundIdentity | None = None
    contact: SipUri | None = None
    sdp: bytes = b""
    attempts: list[TrunkAttempt] = field(default_factory=list)
    trunk: TrunkEntry | None = None  # the trunk of the current attempt
    cancelled: bool = False

    @classmethod
    def to_number(
        cls,
        number: str,
        trunks: tuple[TrunkEntry, ...],
        *,
        node_address: Address,
        contact: SipUri,
        identity: OutboundIdentity,
        sdp: bytes,
        url_policy: OutboundPolicy,
    ) -> TrunkUacLeg:
        # A placeholder request until the first attempt is built: the call registers the
        # leg by its Call-ID before the task runs.
        call_id = new_call_id(node_address.host)
        headers = (
            Headers()
            .add("Call-ID", call_id)
            .add("From", f"<sip:{identity.number}@invalid>;tag={new_tag()}")
        )
        placeholder = SipRequest("INVITE", SipUri(host="invalid", user=number), headers, b"")
        return cls(
            member=number,
            request=placeholder,
            flow=Flow(TransportKind.UDP, Address("0.0.0.0", 0)),
            trunks=trunks,
            url_policy=url_policy,
            identity=identity,
            contact=contact,
            sdp=sdp,
        )

    def cancel(self) -> None:
        self.cancelled = True
        SipUacLeg.cancel(self)

    async def _drive(self, layer: TransactionLayer, report: Callable[[LegEvent], None]) -> None:
        last_status = 503
        seq = 0
        for trunk in self.trunks:
            if self.cancelled:
                break
            self.trunk = trunk
            try:
                self.flow = await trunk_destination(trunk, self.url_policy)
            except TrunkUnreachableError as exc:
                logger.warning("trunk=%s unreachable: %s", trunk.name, exc)
                self._note(trunk, 503, str(exc))
                last_status = 503
                continue
            seq += 1
            self.request = self._invite(layer, trunk, seq)
            final = await self._attempt(layer, report)
            if final is not None and final.status in (401, 407):
                seq += 1
                authorised = self._authorised(layer, trunk, final, seq)
                if authorised is not None:
                    self.request = authorised
                    final = await self._attempt(layer, report)
            status = final.status if final is not None else 408
            reason = final.reason if final is not None else "no answer"
            self._note(trunk, status, reason)
            if status < 300:
                return
            last_status = status
            if not is_failover_status(status):
                break  # the callee's answer: another carrier would ring the same person
        report(Failed(self, last_status))

    def _note(self, trunk: TrunkEntry, status: int, reason: str) -> None:
        now = asyncio.get_running_loop().time()
        self.attempts.append(TrunkAttempt(trunk.name, status, reason, now))
        if status >= 300:
            logger.info(
                "call-leg=%s trunk=%s answered %d %s", self.call_id, trunk.name, status, reason
            )

    def route_steps(self, routing_started: float) -> list[RouteStep]:
        """The trunks tried, as steps of the call's route (after_s from routing's start)."""
        return [
            RouteStep(
                after_s=max(0.0, attempt.at - routing_started),
                subject=f"trunk:{attempt.trunk}",
                outcome="answered" if attempt.status < 300 else "failed",
                member=self.member,
                detail=f"{attempt.status} {attempt.reason}".strip(),
            )
            for attempt in self.attempts
        ]

    async def _attempt(
        self, layer: TransactionLayer, report: Callable[[LegEvent], None]
    ) -> SipResponse | None:
        """Send the current request; its final response (a 2xx reported as the answer)."""
        self.transaction = layer.send_request(self.request, self.flow)
        if self.cancelled:
            self.transaction.cancel()
        async for response in self.transaction:
            if response.status == 100:
                continue
            if response.status < 200:
                report(Provisional(self, response))
                continue
            if response.status < 300:
                report(Answered(self, response))
            return response
        return None

    def _invite(self, layer: TransactionLayer, trunk: TrunkEntry, seq: int) -> SipRequest:
        assert self.identity is not None
        assert self.contact is not None
        domain = trunk.host if ":" not in trunk.host else f"[{trunk.host}]"
        transport = "tcp" if trunk.transport is TrunkTransport.TCP else None
        params = (("transport", transport),) if transport else ()
        uri = SipUri(host=domain, port=trunk.port, user=self.member, params=params)
        shown = SipUri(host=domain, user=self.identity.number)
        tag = self.request.from_.tag or new_tag()
        via = layer.via_for(self.flow.transport)
        headers = Headers().add("Via", str(via)).add("Max-Forwards", "70")
        if self.identity.withheld:
            anonymous = SipUri(host="anonymous.invalid", user="anonymous")
            headers = headers.add("From", str(NameAddr(anonymous, "Anonymous", (("tag", tag),))))
        else:
            headers = headers.add("From", str(NameAddr(shown, None, (("tag", tag),))))
        headers = headers.add("To", str(NameAddr(SipUri(host=domain, user=self.member))))
        headers = headers.add("Call-ID", self.request.call_id)
        headers = headers.add("CSeq", str(CSeq(seq, "INVITE")))
        headers = headers.add("Contact", f"<{self.contact}>")
        # RFC 3325: the network asserts who calls even when the callee must not see it.
        headers = headers.add("P-Asserted-Identity", f"<{shown}>")
        headers = headers.add("Privacy", "id" if self.identity.withheld else "none")
        headers = headers.add("Allow", ALLOW_IN_CALL)
        headers = headers.add("Content-Type", SDP)
        return SipRequest("INVITE", uri, headers, self.sdp)

    def _authorised(
        self, layer: TransactionLayer, trunk: TrunkEntry, response: SipResponse, seq: int
    ) -> SipRequest | None:
        """The INVITE again with credentials for the challenge; None when none fit."""
        if trunk.username is None or trunk.password is None:
            return None
        proxy = response.status == 407
        header = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        try:
            challenges = [DigestChallenge.parse(value) for value in response.headers.values(header)]
            challenge = preferred_challenge(challenges)
            credentials = build_credentials(
                challenge, trunk.username, trunk.password, "INVITE", str(self.request.uri)
            )
        except (DigestParseError, ValueError) as exc:
            logger.warning("trunk=%s unusable challenge: %s", trunk.name, exc)
            return None
        request = self._invite(layer, trunk, seq)
        name = "Proxy-Authorization" if proxy else "Authorization"
        return request.with_headers(request.headers.add(name, str(credentials)))
