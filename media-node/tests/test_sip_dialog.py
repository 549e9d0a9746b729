"""Dialogs (RFC 3261 section 12) built from parsed messages and from a real call on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from vpbx_media.sip.dialog import Dialog, DialogId, DialogState
from vpbx_media.sip.message import SipRequest, SipResponse, make_response, parse_message
from vpbx_media.sip.transaction import ServerTransaction, Timers, TransactionLayer
from vpbx_media.sip.transport import Address, Flow, SipTransport, TransportKind
from vpbx_media.sip.uri import SipUri

WAIT = 2.0
VIA = "SIP/2.0/UDP 192.0.2.99:5060;branch=z9hG4bK-dlg"


def parse_request(text: str) -> SipRequest:
    message = parse_message(text.replace("\n", "\r\n").encode())
    assert isinstance(message, SipRequest)
    return message


def parse_response(text: str) -> SipResponse:
    message = parse_message(text.replace("\n", "\r\n").encode())
    assert isinstance(message, SipResponse)
    return message


# An INVITE that went through two proxies: p1 (next to Alice) then p2 (next to Bob).
INVITE = parse_request(
    "INVITE sip:bob@biloxi.test SIP/2.0\n"
    "Via: SIP/2.0/UDP p2.test;branch=z9hG4bK-p2\n"
    "Via: SIP/2.0/UDP p1.test;branch=z9hG4bK-p1\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-alice\n"
    "Record-Route: <sip:p2.test;lr>\n"
    "Record-Route: <sip:p1.test:5070;lr;transport=tcp>\n"
    "Max-Forwards: 68\n"
    'From: "Alice" <sip:alice@atlanta.test>;tag=alice-tag\n'
    "To: Bob <sip:bob@biloxi.test>\n"
    "Call-ID: dlg-1@atlanta.test\n"
    "CSeq: 314 INVITE\n"
    "Contact: <sip:alice@192.0.2.10:5062>\n"
    "Content-Length: 0\n\n"
)

# Bob's 200 as Alice receives it (proxies removed their Vias; Record-Route is kept).
OK_FOR_ALICE = parse_response(
    "SIP/2.0 200 OK\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-alice\n"
    "Record-Route: <sip:p2.test;lr>\n"
    "Record-Route: <sip:p1.test:5070;lr;transport=tcp>\n"
    'From: "Alice" <sip:alice@atlanta.test>;tag=alice-tag\n'
    "To: Bob <sip:bob@biloxi.test>;tag=bob-tag\n"
    "Call-ID: dlg-1@atlanta.test\n"
    "CSeq: 314 INVITE\n"
    "Contact: <sip:bob@192.0.2.20:5064>\n"
    "Content-Length: 0\n\n"
)


def in_dialog(method: str, seq: int, *, contact: str | None = None) -> SipRequest:
    """A request from Alice inside the dialog of INVITE."""
    contact_line = f"Contact: {contact}\n" if contact else ""
    return parse_request(
        f"{method} sip:bob@192.0.2.20:5064 SIP/2.0\n"
        f"Via: {VIA}\n"
        "From: <sip:alice@atlanta.test>;tag=alice-tag\n"
        "To: <sip:bob@biloxi.test>;tag=bob-tag\n"
        "Call-ID: dlg-1@atlanta.test\n"
        f"CSeq: {seq} {method}\n"
        f"{contact_line}"
        "Content-Length: 0\n\n"
    )


def bob_dialog() -> Dialog:
    return Dialog.as_uas(INVITE, "bob-tag", "<sip:bob@192.0.2.20:5064>")


# --- UAS ---------------------------------------------------------------------------------


def test_uas_dialog_takes_its_state_from_the_invite() -> None:
    dialog = bob_dialog()
    assert dialog.id == DialogId("dlg-1@atlanta.test", "bob-tag", "alice-tag")
    assert dialog.state is DialogState.EARLY
    assert str(dialog.remote_target) == "sip:alice@192.0.2.10:5062"
    assert dialog.remote_seq == 314
    assert str(dialog.local_uri.uri) == "sip:bob@biloxi.test"
    assert str(dialog.remote_uri.uri) == "sip:alice@atlanta.test"
    # The UAS keeps the Record-Route order: the proxy nearest to it comes first.
    assert [str(route.uri) for route in dialog.route_set] == [
        "sip:p2.test;lr",
        "sip:p1.test:5070;lr;transport=tcp",
    ]
    assert dialog.next_hop() == Flow(TransportKind.UDP, Address("p2.test", 5060))


def test_uas_in_dialog_request_swaps_tags_routes_via_the_route_set_and_counts_cseq() -> None:
    dialog = bob_dialog()
    bye = dialog.create_request("BYE", VIA)
    assert bye.method == "BYE"
    assert str(bye.uri) == "sip:alice@192.0.2.10:5062"
    assert bye.headers.values("Route") == [
        "<sip:p2.test;lr>",
        "<sip:p1.test:5070;lr;transport=tcp>",
    ]
    assert bye.from_.tag == "bob-tag"
    assert str(bye.from_.uri) == "sip:bob@biloxi.test"
    assert bye.to.tag == "alice-tag"
    assert str(bye.to.uri) == "sip:alice@atlanta.test"
    assert bye.call_id == "dlg-1@atlanta.test"
    assert str(bye.cseq) == "1 BYE"
    assert bye.header("Contact") is None  # BYE is not a target refresh
    assert bye.max_forwards == 70
    # What goes on the wire parses back to the same request.
    assert parse_message(bytes(bye)) == bye

    reinvite = dialog.create_request("INVITE", VIA, body=b"v=0\r\n", content_type="application/sdp")
    assert str(reinvite.cseq) == "2 INVITE"
    assert reinvite.header("Contact") == "<sip:bob@192.0.2.20:5064>"
    assert reinvite.content_type == "application/sdp"
    assert parse_message(bytes(reinvite)) == reinvite
    assert dialog.local_seq == 2


def test_remote_cseq_must_increase_and_ack_is_exempt() -> None:
    dialog = bob_dialog()
    assert not dialog.accept_remote_request(in_dialog("INFO", 313))
    assert not dialog.accept_remote_request(in_dialog("INFO", 314))
    assert dialog.remote_seq == 314
    # The ACK carries the INVITE's CSeq number, and so does a CANCEL.
    assert dialog.accept_remote_request(in_dialog("ACK", 314))
    assert dialog.accept_remote_request(in_dialog("INFO", 315))
    assert dialog.remote_seq == 315
    assert not dialog.accept_remote_request(in_dialog("BYE", 315))
    # Gaps are allowed (requests may be lost or consumed by proxies).
    assert dialog.accept_remote_request(in_dialog("BYE", 400))
    assert dialog.remote_seq == 400


def test_target_refresh_requests_update_the_remote_target_only_when_accepted() -> None:
    dialog = bob_dialog()
    refused = in_dialog("INVITE", 300, contact="<sip:alice@198.51.100.1>")
    assert not dialog.accept_remote_request(refused)
    assert str(dialog.remote_target) == "sip:alice@192.0.2.10:5062"

    assert dialog.accept_remote_request(
        in_dialog("INVITE", 315, contact="<sip:alice@198.51.100.2>")
    )
    assert str(dialog.remote_target) == "sip:alice@198.51.100.2"
    # RFC 3311: UPDATE is a target refresh too.
    assert dialog.accept_remote_request(
        in_dialog("UPDATE", 316, contact="<sip:alice@198.51.100.3>")
    )
    assert str(dialog.remote_target) == "sip:alice@198.51.100.3"
    # INFO is not, whatever it carries.
    assert dialog.accept_remote_request(in_dialog("INFO", 317, contact="<sip:alice@198.51.100.4>"))
    assert str(dialog.remote_target) == "sip:alice@198.51.100.3"
    assert str(dialog.create_request("BYE", VIA).uri) == "sip:alice@198.51.100.3"


# --- UAC ---------------------------------------------------------------------------------


def test_uac_dialog_from_2xx_reverses_the_route_set() -> None:
    dialog = Dialog.as_uac(INVITE, OK_FOR_ALICE)
    assert dialog.id == DialogId("dlg-1@atlanta.test", "alice-tag", "bob-tag")
    assert dialog.state is DialogState.CONFIRMED
    assert str(dialog.remote_target) == "sip:bob@192.0.2.20:5064"
    assert dialog.remote_seq is None
    assert dialog.local_seq == 314
    # Alice's first hop is p1, the proxy nearest to her, over the transport it asked for.
    assert [str(route.uri) for route in dialog.route_set] == [
        "sip:p1.test:5070;lr;transport=tcp",
        "sip:p2.test;lr",
    ]
    assert dialog.next_hop() == Flow(TransportKind.TCP, Address("p1.test", 5070))

    ack = dialog.create_request("ACK", VIA, seq=INVITE.cseq.seq)
    assert str(ack.cseq) == "314 ACK"
    assert dialog.local_seq == 314  # an ACK reuses the INVITE's number
    bye = dialog.create_request("BYE", VIA)
    assert str(bye.cseq) == "315 BYE"
    assert bye.headers.values("Route") == [
        "<sip:p1.test:5070;lr;transport=tcp>",
        "<sip:p2.test;lr>",
    ]
    assert str(bye.uri) == "sip:bob@192.0.2.20:5064"
    assert (bye.from_.tag, bye.to.tag) == ("alice-tag", "bob-tag")
    assert bye.from_.display_name == "Alice"

    # Any CSeq is fine for the first request Bob sends.
    assert dialog.accept_remote_request(
        parse_request(
            "BYE sip:alice@192.0.2.10:5062 SIP/2.0\n"
            f"Via: {VIA}\n"
            "From: <sip:bob@biloxi.test>;tag=bob-tag\n"
            "To: <sip:alice@atlanta.test>;tag=alice-tag\n"
            "Call-ID: dlg-1@atlanta.test\n"
            "CSeq: 1 BYE\n"
            "Content-Length: 0\n\n"
        )
    )
    assert dialog.remote_seq == 1


def test_early_dialog_is_confirmed_by_2xx_with_its_own_route_set_and_target() -> None:
    ringing = parse_response(
        "SIP/2.0 180 Ringing\n"
        "Via: SIP/2.0/UDP 192.0.2.10:5062;branch=z9hG4bK-alice\n"
        "Record-Route: <sip:early.test;lr>\n"
        "From: <sip:alice@atlanta.test>;tag=alice-tag\n"
        "To: <sip:bob@biloxi.test>;tag=bob-tag\n"
        "Call-ID: dlg-1@atlanta.test\n"
        "CSeq: 314 INVITE\n"
        "Contact: <sip:bob@203.0.113.5>\n"
        "Content-Length: 0\n\n"
    )
    dialog = Dialog.as_uac(INVITE, ringing)
    assert dialog.with_state(DialogState.EARLY) == dialog  # early until a 2xx
    assert [str(route.uri) for route in dialog.route_set] == ["sip:early.test;lr"]

    dialog.update_from_response(OK_FOR_ALICE)
    assert dialog.state is DialogState.CONFIRMED
    assert str(dialog.remote_target) == "sip:bob@192.0.2.20:5064"
    assert [str(route.uri) for route in dialog.route_set] == [
        "sip:p1.test:5070;lr;transport=tcp",
        "sip:p2.test;lr",
    ]

    # Once confirmed, a 2xx (to a re-INVITE) refreshes the target but not the routes.
    refreshed = OK_FOR_ALICE.with_headers(
        OK_FOR_ALICE.headers.set("Contact", "<sip:bob@203.0.113.9>").remove("Record-Route")
    )
    dialog.update_from_response(refreshed)
    assert str(dialog.remote_target) == "sip:bob@203.0.113.9"
    assert len(dialog.route_set) == 2


def test_strict_router_first_in_the_route_set_gets_the_request_uri() -> None:
    strict_ok = OK_FOR_ALICE.with_headers(
        OK_FOR_ALICE.headers.remove("Record-Route")
        .add("Record-Route", "<sip:loose.test;lr>")
        .add("Record-Route", "<sip:strict.test;maddr=192.0.2.50>")
    )
    dialog = Dialog.as_uac(INVITE, strict_ok)
    bye = dialog.create_request("BYE", VIA)
    # RFC 3261 12.2.1.1: the strict router's URI becomes the Request-URI and the
    # remote target travels as the last Route.
    assert str(bye.uri) == "sip:strict.test;maddr=192.0.2.50"
    assert bye.headers.values("Route") == ["<sip:loose.test;lr>", "<sip:bob@192.0.2.20:5064>"]
    assert dialog.next_hop() == Flow(TransportKind.UDP, Address("strict.test", 5060))
    assert parse_message(bytes(bye)) == bye


def test_next_hop_needs_a_fallback_for_a_non_sip_target() -> None:
    tel_ok = OK_FOR_ALICE.with_headers(
        OK_FOR_ALICE.headers.set("Contact", "<tel:+15551234567>").remove("Record-Route")
    )
    dialog = Dialog.as_uac(INVITE, tel_ok)
    with pytest.raises(ValueError, match="cannot route"):
        dialog.next_hop()
    fallback = Flow(TransportKind.UDP, Address("127.0.0.1", 5060))
    assert dialog.next_hop(fallback) is fallback


# --- a real call over two transaction layers ---------------------------------------------


class Inbox:
    """A transaction user that queues requests for the test to handle."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue[tuple[SipRequest, ServerTransaction | None]] = asyncio.Queue()

    def on_request(
        self, request: SipRequest, flow: Flow, transaction: ServerTransaction | None
    ) -> None:
        self.requests.put_nowait((request, transaction))

    def on_cancel(self, transaction: ServerTransaction, cancel: SipRequest) -> None:
        raise AssertionError("no CANCEL expected")

    def on_stray_response(self, response: SipResponse, flow: Flow) -> None:
        """Retransmitted 2xx may arrive; they need no handling here."""

    async def next(self) -> tuple[SipRequest, ServerTransaction | None]:
        return await asyncio.wait_for(self.requests.get(), WAIT)


@pytest.fixture
async def two_layers() -> AsyncIterator[tuple[TransactionLayer, Inbox, TransactionLayer, Inbox]]:
    timers = Timers(t1=0.01, t2=0.08, t4=0.1, d=0.15)
    layers: list[TransactionLayer] = []
    inboxes: list[Inbox] = []
    for _ in range(2):
        inbox = Inbox()
        transport = SipTransport("127.0.0.1", 0)
        layer = TransactionLayer(transport, inbox, timers)
        await transport.start()
        layers.append(layer)
        inboxes.append(inbox)
    yield layers[0], inboxes[0], layers[1], inboxes[1]
    for layer in layers:
        await layer.stop()
        await layer.transport.stop()


def contact_of(layer: TransactionLayer, user: str) -> str:
    local = layer.transport.local_address
    return f"<sip:{user}@{local.host}:{local.port}>"


async def test_dialog_from_a_real_call_carries_bye_both_ways(
    two_layers: tuple[TransactionLayer, Inbox, TransactionLayer, Inbox],
) -> None:
    alice, alice_inbox, bob, bob_inbox = two_layers
    bob_address = bob.transport.local_address
    invite = parse_request(
        f"INVITE sip:bob@{bob_address} SIP/2.0\n"
        f"Via: {alice.via_for(TransportKind.UDP)}\n"
        "Max-Forwards: 70\n"
        "From: <sip:alice@test>;tag=a-1\n"
        "To: <sip:bob@test>\n"
        "Call-ID: real-call@test\n"
        "CSeq: 20 INVITE\n"
        f"Contact: {contact_of(alice, 'alice')}\n"
        "Content-Length: 0\n\n"
    )
    client = alice.send_request(invite, Flow(TransportKind.UDP, bob_address))

    received, server = await bob_inbox.next()
    assert server is not None
    bob_dialog = Dialog.as_uas(received, "b-1", contact_of(bob, "bob"))
    server.respond(
        make_response(received, 200, to_tag="b-1", extra=[("Contact", bob_dialog.local_contact)])
    )
    bob_dialog = bob_dialog.with_state(DialogState.CONFIRMED)

    ok = await asyncio.wait_for(client.final, WAIT)
    alice_dialog = Dialog.as_uac(invite, ok)
    assert alice_dialog.id == DialogId("real-call@test", "a-1", "b-1")
    assert bob_dialog.id == DialogId("real-call@test", "b-1", "a-1")
    assert alice_dialog.next_hop() == Flow(TransportKind.UDP, bob_address)
    assert bob_dialog.next_hop() == Flow(TransportKind.UDP, alice.transport.local_address)

    # The 2xx ACK is built from the dialog and stops Bob's 2xx retransmissions.
    ack = alice_dialog.create_request("ACK", str(alice.via_for(TransportKind.UDP)), seq=20)
    await alice.send_stateless(ack, alice_dialog.next_hop())
    acked, no_transaction = await bob_inbox.next()
    assert (acked.method, no_transaction) == ("ACK", None)
    assert bob_dialog.accept_remote_request(acked)
    assert await asyncio.wait_for(server.confirmed, WAIT) is True

    # Bob hangs up: an in-dialog BYE reaches Alice at her Contact.
    bye = bob_dialog.create_request("BYE", str(bob.via_for(TransportKind.UDP)))
    bye_client = bob.send_request(bye, bob_dialog.next_hop())
    received_bye, bye_server = await alice_inbox.next()
    assert received_bye.method == "BYE"
    assert (received_bye.from_.tag, received_bye.to.tag) == ("b-1", "a-1")
    assert alice_dialog.accept_remote_request(received_bye)
    assert not alice_dialog.accept_remote_request(received_bye)  # same CSeq again
    assert bye_server is not None
    bye_server.respond(make_response(received_bye, 200))
    assert (await asyncio.wait_for(bye_client.final, WAIT)).status == 200


def test_sip_uri_transport_param_picks_tcp() -> None:
    dialog = bob_dialog()
    dialog.route_set = []
    dialog.remote_target = SipUri(host="192.0.2.10", port=5080, params=(("transport", "TCP"),))
    assert dialog.next_hop() == Flow(TransportKind.TCP, Address("192.0.2.10", 5080))
