"""Calls from outside reach a node only through the edge or straight from a trunk.

In one process: a real node (tests/services/sippeers.py) and scripted peers on
loopback addresses of their own (127.0.0.0/8 is all loopback). A "Carrier" with
``via_edge`` stands for a carrier behind the edge (its Via signed as the edge signs
it); without, it sends straight to the node, as a registered trunk does.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tests.services.sippeers import (
    EDGE_SECRET,
    HOST,
    NUMBER,
    Carrier,
    Phone,
    Trunk,
    config,
    response_text,
)

from vpbx_common.nodeconfig import NodeConfig
from vpbx_common.nodeconfig.model import TrunkEntry
from vpbx_media.edge.relayproof import MAX_SKEW_S, PROOF_PARAM, RelayProofs
from vpbx_media.node.trunks.sources import TrunkSources
from vpbx_media.sip.headers import NameAddr, Via
from vpbx_media.sip.message import SipRequest, parse_message
from vpbx_media.sip.uri import SipUri

TRUNK_USER = "acme-trunk"
ASSERTED = "+79130000077"


def with_trunks(*trunks: dict[str, Any]) -> NodeConfig:
    """The harness's tenant (number NUMBER rings 101), with these trunks."""
    document = config({"strategy": "ring-all", "members": ["101"]}).model_dump(mode="json")
    document["trunks"] = [
        {"id": f"t{index}", "name": f"trunk-{index}", "host": HOST, "port": 5060, **trunk}
        for index, trunk in enumerate(trunks)
    ]
    document.pop("version", None)
    return NodeConfig.model_validate(document).with_version()


async def busy_call(carrier: Carrier, phone: Phone) -> int:
    """The carrier calls, the phone rings and is busy: the carrier's final status."""
    carrier.invite()
    await phone.ringing()
    phone.reply(486)
    return (await carrier.final()).status


async def test_an_invite_neither_through_the_edge_nor_from_a_trunk_is_refused(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(with_trunks({"allowed_addresses": ["127.0.0.3/32"]}))
    phone = await peers(Phone("101"))
    await node.register(phone)

    stranger = await peers(Carrier(node.address, via_edge=False, host="127.0.0.2"))
    stranger.invite()
    answer = await stranger.final()
    assert (answer.status, answer.reason) == (403, "Not From A Trunk")

    # A Via "signed" with another secret is no proof.
    forged = await peers(Carrier(node.address, via_edge=False, host="127.0.0.2"))
    via = RelayProofs(b"guessed-secret").sign(
        Via.parse(f"SIP/2.0/UDP 127.0.0.2:{forged.port};branch={forged.branch};rport"),
        forged.call_id,
    )
    forged.extra = ""
    head = forged._head("INVITE", 1, forged.branch)
    forged.send(
        head.replace(head.split("\r\n")[1], f"Via: {via}", 1) + "Content-Length: 0\r\n\r\n",
        node.address,
    )
    answer = await forged.final()
    assert (answer.status, answer.reason) == (403, "Not From A Trunk")
    assert node.service.not_from_trunks.total == 2
    assert node.service.calls == {}
    assert phone.seen == []


async def test_a_registered_trunks_call_to_the_nodes_contact_is_taken_by_the_number_in_to(
    node_factory: Any, peers: Any
) -> None:
    carrier = await peers(Trunk("carrier"))
    node = await node_factory(
        with_trunks(
            {
                "port": carrier.port,
                "registers": True,
                "username": TRUNK_USER,
                "password": "carrier-secret",
                "register_expires_s": 300,
            }
        )
    )
    phone = await peers(Phone("101"))
    await node.register(phone)

    # The node registers; the carrier keeps the Contact it gave.
    register = await carrier.next(method="REGISTER")
    assert isinstance(register, SipRequest)
    contact = NameAddr.parse(register.headers.get("Contact") or "").uri
    assert isinstance(contact, SipUri)
    assert (contact.user, contact.host, contact.port) == (TRUNK_USER, *node.address)
    carrier.send(
        response_text(register, 200, "reg", f"Contact: <{contact}>;expires=300\r\n"),
        carrier.last_from,
    )

    # The carrier's call for the tenant's number, dialled nationally, arrives at that
    # Contact: the number only in To. The caller is asserted; it asks for privacy.
    call = await peers(
        Carrier(
            (contact.host, contact.port or 5060),
            via_edge=False,
            uri_user=TRUNK_USER,
            to_user="84950000001",
            caller="anonymous",
            extra=f'P-Asserted-Identity: "Client" <sip:{ASSERTED}@carrier.test>\r\nPrivacy: id\r\n',
        )
    )
    call.invite()
    invite = await phone.ringing()
    # The tenant's phone sees the caller: the tenant is inside the trust domain.
    from_uri = NameAddr.parse(invite.headers.get("From") or "").uri
    assert isinstance(from_uri, SipUri)
    assert from_uri.user == ASSERTED
    phone.answer()
    assert (await call.final()).status == 200
    call.bye()
    await phone.bye_answered()

    [record] = await node.records(1)
    assert (record.direction, record.dialled, record.caller, record.end_reason) == (
        "inbound",
        NUMBER,
        ASSERTED,
        "completed",
    )


async def test_a_trunks_allowed_addresses_are_where_its_calls_come_from(
    node_factory: Any, peers: Any
) -> None:
    # Host 127.0.0.1, but its calls come from 127.0.0.3: only the CIDRs count.
    node = await node_factory(with_trunks({"allowed_addresses": ["127.0.0.3/32"]}))
    phone = await peers(Phone("101"))
    await node.register(phone)

    trunk = await peers(Carrier(node.address, via_edge=False, host="127.0.0.3"))
    assert await busy_call(trunk, phone) >= 400  # taken: the phone rang
    host = await peers(Carrier(node.address, via_edge=False, host="127.0.0.1"))
    host.invite()
    assert (await host.final()).status == 403
    [record] = await node.records(1)
    assert (record.dialled, record.caller) == (NUMBER, "+79130000001")  # no PAI: From


async def test_through_the_edge_the_request_uri_is_the_number_and_pai_the_caller(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(with_trunks())
    phone = await peers(Phone("101"))
    await node.register(phone)

    # The edge routed by the Request-URI's number: To does not count there.
    odd = await peers(Carrier(node.address, uri_user=TRUNK_USER, to_user=NUMBER))
    odd.invite()
    assert (await odd.final()).status == 404

    relayed = await peers(
        Carrier(node.address, extra=f"P-Asserted-Identity: <tel:{ASSERTED}>, <sip:x@y>\r\n")
    )
    assert await busy_call(relayed, phone) >= 400
    [record] = await node.records(1)
    assert record.caller == ASSERTED


# --- the edge's proof (pure) -------------------------------------------------------------


def signed_invite(proofs: RelayProofs, call_id: str = "c1", branch: str = "z9hG4bK-1") -> bytes:
    via = proofs.sign(Via.parse(f"SIP/2.0/UDP 10.0.0.1:5060;branch={branch}"), call_id)
    return (
        f"INVITE sip:{NUMBER}@10.0.0.2 SIP/2.0\r\nVia: {via}\r\n"
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK-outside\r\n"
        "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: c1\r\nCSeq: 1 INVITE\r\n"
        "Max-Forwards: 69\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def as_request(data: bytes) -> SipRequest:
    message = parse_message(data)
    assert isinstance(message, SipRequest)
    return message


def test_a_proof_is_good_for_its_call_branch_secret_and_time_only() -> None:
    now = [1_700_000_000.0]
    proofs = RelayProofs(EDGE_SECRET, clock=lambda: now[0])
    good = as_request(signed_invite(proofs))
    assert proofs.verify(good)
    assert Via.parse(good.headers.values("Via")[0]).param(PROOF_PARAM)
    assert not RelayProofs(b"other-secret", clock=lambda: now[0]).verify(good)
    assert not proofs.verify(as_request(signed_invite(proofs, call_id="c2")))  # made for c2
    assert not proofs.verify(  # another branch than the one signed
        as_request(signed_invite(proofs).replace(b"branch=z9hG4bK-1", b"branch=z9hG4bK-2"))
    )
    # Only the top Via counts: a proof further down is someone else's.
    swapped = signed_invite(proofs).split(b"\r\n")
    swapped[1], swapped[2] = swapped[2], swapped[1]
    assert not proofs.verify(as_request(b"\r\n".join(swapped)))
    now[0] += MAX_SKEW_S + 1
    assert not proofs.verify(good)
    now[0] -= 2 * (MAX_SKEW_S + 1)
    assert not proofs.verify(good)
    for garbage in (b"1.x", b"x.y", b"17", b"1700000000."):
        text = signed_invite(proofs).decode()
        top = text.split("\r\n")[1]
        forged = text.replace(
            top, top.split(f";{PROOF_PARAM}=")[0] + f";{PROOF_PARAM}=" + garbage.decode()
        )
        assert not proofs.verify(as_request(forged.encode()))


# --- which trunk a source is (pure, a fake resolver) -------------------------------------


def trunk(name: str, host: str, priority: int = 100, **fields: Any) -> TrunkEntry:
    return TrunkEntry.model_validate(
        {"id": name, "name": name, "host": host, "priority": priority, **fields}
    )


def named(sources: TrunkSources, source: str) -> str | None:
    found = sources.match(source)
    return None if found is None else found.name


async def test_trunk_sources_match_by_cidrs_address_or_resolved_name_in_priority_order() -> None:
    answers = {"carrier.example": ["198.51.100.7"], "other.example": []}
    asked: list[str] = []

    async def resolve(host: str) -> list[str]:
        asked.append(host)
        return answers[host]

    sources = TrunkSources(resolve=resolve, refresh_s=3600)
    sources.start(
        [
            trunk("wide", "192.0.2.1", 50, allowed_addresses=["203.0.113.0/24"]),
            trunk("narrow", "192.0.2.2", 10, allowed_addresses=["203.0.113.8/29"]),
            trunk("literal", "192.0.2.3"),
            trunk("named", "carrier.example"),
            trunk("unresolved", "other.example"),
        ]
    )
    try:
        assert named(sources, "203.0.113.9") == "narrow"
        assert named(sources, "203.0.113.200") == "wide"
        assert sources.match("192.0.2.1") is None  # its CIDRs, not its host
        assert named(sources, "192.0.2.3") == "literal"
        await until(lambda: sources.resolutions == 1)
        assert sorted(asked) == ["carrier.example", "other.example"]
        assert named(sources, "198.51.100.7") == "named"

        # The name stops resolving: the last answer is kept. A new config resolves again.
        answers["carrier.example"] = []
        sources.update([trunk("named", "carrier.example")])
        await until(lambda: sources.resolutions == 2)
        assert named(sources, "198.51.100.7") == "named"
        answers["carrier.example"] = ["198.51.100.8"]
        sources.update([trunk("named", "carrier.example", 5)])
        await until(lambda: sources.resolutions == 3)
        assert sources.match("198.51.100.7") is None
        assert named(sources, "198.51.100.8") == "named"
        sources.update([])
        assert sources.match("198.51.100.8") is None
    finally:
        await sources.stop()


async def until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        await asyncio.sleep(0.01)
