"""Dialogs (RFC 3261 section 12): the peer-to-peer state that in-dialog requests use."""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import Enum

from .headers import CSeq, NameAddr
from .message import Headers, SipRequest, SipResponse
from .transport import Flow, flow_to
from .uri import SipUri, Uri

# Requests that refresh the remote target and so carry a Contact (RFC 3261 12.2,
# RFC 3311 UPDATE, RFC 6665 SUBSCRIBE/NOTIFY, RFC 3515 REFER).
TARGET_REFRESH_METHODS = frozenset({"INVITE", "UPDATE", "SUBSCRIBE", "NOTIFY", "REFER"})


class DialogState(Enum):
    EARLY = "early"
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


@dataclass(frozen=True, slots=True)
class DialogId:
    call_id: str
    local_tag: str
    remote_tag: str


@dataclass(slots=True)
class Dialog:
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: NameAddr
    remote_uri: NameAddr
    remote_target: Uri
    route_set: list[NameAddr]
    local_seq: int
    remote_seq: int | None
    local_contact: str
    state: DialogState = DialogState.EARLY

    @property
    def id(self) -> DialogId:
        return DialogId(self.call_id, self.local_tag, self.remote_tag)

    @classmethod
    def as_uas(cls, request: SipRequest, local_tag: str, local_contact: str) -> Dialog:
        """The dialog a UAS creates when it answers `request` (RFC 3261 12.1.1)."""
        contact = request.contacts[0].uri if request.contacts else request.from_.uri
        return cls(
            call_id=request.call_id,
            local_tag=local_tag,
            remote_tag=request.from_.tag or "",
            local_uri=NameAddr(request.to.uri, request.to.display_name),
            remote_uri=NameAddr(request.from_.uri, request.from_.display_name),
            remote_target=contact,
            route_set=request.record_routes,
            local_seq=0,
            remote_seq=request.cseq.seq,
            local_contact=local_contact,
        )

    @classmethod
    def as_uac(cls, request: SipRequest, response: SipResponse) -> Dialog:
        """The dialog a UAC gets from a 1xx/2xx with a To tag (RFC 3261 12.1.2)."""
        contact = response.contacts[0].uri if response.contacts else request.uri
        return cls(
            call_id=request.call_id,
            local_tag=request.from_.tag or "",
            remote_tag=response.to.tag or "",
            local_uri=NameAddr(request.from_.uri, request.from_.display_name),
            remote_uri=NameAddr(response.to.uri, response.to.display_name),
            remote_target=contact,
            route_set=list(reversed(response.record_routes)),
            local_seq=request.cseq.seq,
            remote_seq=None,
            local_contact=request.headers.get("Contact") or "",
            state=DialogState.CONFIRMED if response.is_success else DialogState.EARLY,
        )

    def update_from_response(self, response: SipResponse) -> None:
        """A 2xx refreshes the target and, for an early dialog, the route set."""
        if response.contacts:
            self.remote_target = response.contacts[0].uri
        if self.state is DialogState.EARLY and response.is_success:
            self.route_set = list(reversed(response.record_routes))
            self.state = DialogState.CONFIRMED

    def accept_remote_request(self, request: SipRequest) -> bool:
        """Check the CSeq order of an in-dialog request; refresh the target on re-INVITE."""
        seq = request.cseq.seq
        if request.method != "ACK" and request.method != "CANCEL":
            if self.remote_seq is not None and seq <= self.remote_seq:
                return False
            self.remote_seq = seq
        if request.method in TARGET_REFRESH_METHODS and request.contacts:
            self.remote_target = request.contacts[0].uri
        return True

    def create_request(
        self,
        method: str,
        via: str,
        *,
        body: bytes = b"",
        content_type: str | None = None,
        seq: int | None = None,
    ) -> SipRequest:
        """A new in-dialog request, routed per RFC 3261 12.2.1.1."""
        if seq is None:
            self.local_seq += 1
            seq = self.local_seq
        request_uri: Uri = self.remote_target
        routes = [str(route) for route in self.route_set]
        first = self.route_set[0].uri if self.route_set else None
        if isinstance(first, SipUri) and first.param("lr") is None:
            # A strict router (RFC 2543) expects itself in the Request-URI and the
            # real target as the last Route.
            request_uri = first.without_param("method")
            routes = [*routes[1:], f"<{self.remote_target}>"]
        headers = Headers().add("Via", via)
        for route in routes:
            headers = headers.add("Route", route)
        headers = headers.add("Max-Forwards", "70")
        headers = headers.add("From", str(self.local_uri.with_tag(self.local_tag)))
        remote = self.remote_uri.with_tag(self.remote_tag) if self.remote_tag else self.remote_uri
        headers = headers.add("To", str(remote))
        headers = headers.add("Call-ID", self.call_id)
        headers = headers.add("CSeq", str(CSeq(seq, method)))
        if self.local_contact and method in TARGET_REFRESH_METHODS:
            headers = headers.add("Contact", self.local_contact)
        if content_type is not None:
            headers = headers.add("Content-Type", content_type)
        return SipRequest(method=method, uri=request_uri, headers=headers, body=body)

    def next_hop(self, fallback: Flow | None = None) -> Flow:
        """Where an in-dialog request goes: the first route, else the remote target."""
        target = self.route_set[0].uri if self.route_set else self.remote_target
        if isinstance(target, SipUri):
            return flow_to(target)
        if fallback is None:
            raise ValueError(f"cannot route to {target}")
        return fallback

    def with_state(self, state: DialogState) -> Dialog:
        return replace(self, state=state)
