"""Blind transfer: the person on a call hands the other party to someone else.

A phone asks with REFER (RFC 3515) on its own dialog; the control API asks with a
``Transfer`` command. The node (a B2BUA, so the transferee never sees the REFER)
puts the other party on hold with music, rings the target like any member (an
extension's devices, or a number through the trunks), and when the target
answers points the relay at them and lets the transferor go. The transferor
hears how it went through NOTIFYs carrying a sipfrag (RFC 3420) of the target's
answers. Each step is on the call's route: who transferred to whom, and how it
ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import unquote

from ...sip.dialog import Dialog
from ...sip.errors import SipParseError
from ...sip.headers import NameAddr
from ...sip.message import SipRequest
from ...sip.transaction import TransactionLayer
from ...sip.transport import Flow, TransportKind
from ...sip.uri import SipUri
from ..legs.sip import SipUacLeg

SIPFRAG = "message/sipfrag;version=2.0"
# The target rings at most this long before the transfer is given up.
TRANSFER_RING_S = 30.0


class TransferError(ValueError):
    """A REFER the node cannot act on; ``status`` is the answer it gets."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class ReferTarget:
    """Who a REFER names: the user part of its Refer-To (an extension or a number)."""

    user: str
    replaces: str | None  # attended transfer (Replaces=...): not taken yet


def refer_target(request: SipRequest) -> ReferTarget:
    """The target of a REFER, or TransferError (400 no Refer-To, 416 not a SIP URI)."""
    values = request.headers.values("Refer-To") or request.headers.values("r")
    if len(values) != 1:
        raise TransferError(400, "Exactly One Refer-To Required")
    try:
        uri = NameAddr.parse(values[0]).uri
    except SipParseError as exc:
        raise TransferError(400, "Bad Refer-To") from exc
    if not isinstance(uri, SipUri) or not uri.user:
        raise TransferError(416, "Unsupported Refer-To URI")
    replaces = None
    for header in filter(None, uri.headers.split("&")):
        name, _, value = header.partition("=")
        if name.lower() == "replaces":
            replaces = unquote(value)
    return ReferTarget(uri.user_unescaped or uri.user, replaces)


def sipfrag(status: int, reason: str) -> bytes:
    return f"SIP/2.0 {status} {reason}\r\n".encode()


@dataclass(slots=True)
class PendingTransfer:
    target: str  # as asked: an extension or an E.164 number
    by: str  # who asked: the transferor's extension, or "api:<user id>"
    started: float  # loop time
    # Where the progress NOTIFYs go: the transferor's dialog (None: asked by the API).
    notify_dialog: Dialog | None
    notify_flow: Flow | None
    transferor: SipUacLeg | None  # the party that leaves once the target answers
    transferor_gone: bool = False  # hung up already (blind transfers usually do)
    legs: list[SipUacLeg] = field(default_factory=list)

    @property
    def deadline(self) -> float:
        return self.started + TRANSFER_RING_S


def notify_progress(
    layer: TransactionLayer,
    transfer: PendingTransfer,
    status: int,
    reason: str,
) -> None:
    """Tell the transferor how the target answered (the last one ends the subscription)."""
    if transfer.notify_dialog is not None and not transfer.transferor_gone:
        notify_refer(layer, transfer.notify_dialog, transfer.notify_flow, status, reason)


def notify_refer(
    layer: TransactionLayer, dialog: Dialog, flow: Flow | None, status: int, reason: str
) -> None:
    """A NOTIFY of the implicit subscription a REFER made (RFC 3515), with a sipfrag of
    ``status``; a final status ends the subscription."""
    final = status >= 200
    via = str(layer.via_for(TransportKind.UDP))
    request = dialog.create_request(
        "NOTIFY", via, body=sipfrag(status, reason), content_type=SIPFRAG
    )
    state = "terminated;reason=noresource" if final else "active;expires=60"
    request = request.with_headers(
        request.headers.add("Event", "refer").add("Subscription-State", state)
    )
    # Its answer matters to nobody (a transferor gone answers 481): sent and left.
    layer.send_request(request, dialog.next_hop(flow))
