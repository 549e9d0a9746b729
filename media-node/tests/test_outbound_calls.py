"""Calls out through carrier trunks, in one process: a real node and scripted peers.

The phone dials a number in a local form; the trunks (loopback peers) see what a
carrier would: the E.164 callee, the caller ID chosen for the callee's region in
From and P-Asserted-Identity, digest answers, failover to the next trunk. The
tenant's policy refuses what it must with a SIP answer that says why.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
from typing import Any

import pytest
import redis.asyncio as redis
from tests.services.sippeers import HOST, Carrier, Dialler, Phone, Trunk, shown_number

from vpbx_common.commands import AddParty, NodeCommand, Originate, ReplyStatus, send_command
from vpbx_common.nodeconfig import NodeConfig
from vpbx_media.sip.digest import DigestAuthenticator, DigestCredentials, NonceService

PASSWORD = "secret-password-101"
MOSCOW, NOVOSIBIRSK, YEKATERINBURG = "+74950000001", "+73832000001", "+73432000001"


def _ha1(user: str, realm: str, password: str, name: str) -> str:
    return hashlib.new(name, f"{user}:{realm}:{password}".encode()).hexdigest()


def outbound_config(
    trunks: list[Trunk], *, outbound: dict[str, Any] | None = None, **trunk_fields: Any
) -> NodeConfig:
    return NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.test",
            "city": "msk",
            "suspended": False,
            "users": [{"extension": "101", "name": "Anna", "city": "msk"}],
            "devices": [
                {
                    "username": "101",
                    "extension": "101",
                    "ha1_md5": _ha1("101", "acme.test", PASSWORD, "md5"),
                    "ha1_sha256": _ha1("101", "acme.test", PASSWORD, "sha256"),
                }
            ],
            "groups": [],
            "numbers": [
                {"number": number, "city": "msk", "label": None, "channels": 0}
                for number in (MOSCOW, NOVOSIBIRSK, YEKATERINBURG)
            ],
            "trunks": [
                {
                    "id": f"t{index}",
                    "name": trunk.name,
                    "host": HOST,
                    "port": trunk.port,
                    "priority": index,
                    **trunk_fields,
                }
                for index, trunk in enumerate(trunks)
            ],
            "outbound": outbound or {},
        }
    ).with_version()


async def test_a_local_form_goes_out_as_e164_showing_the_callees_region_number(
    node_factory: Any, peers: Any
) -> None:
    carrier = await peers(Trunk("carrier"))
    node = await node_factory(outbound_config([carrier]))
    phone = await peers(Dialler("101", PASSWORD))

    await phone.dial(node.address, "8(383)2000099")
    invite = await carrier.invite()
    carrier.answer(invite)
    assert (await phone.final()).status == 200

    assert invite.uri.user == "+73832000099"
    assert shown_number(invite, "From") == NOVOSIBIRSK
    assert shown_number(invite, "P-Asserted-Identity") == NOVOSIBIRSK
    phone.bye()
    await carrier.bye_answered()
    [record] = await node.records(1)
    assert (record.direction, record.caller, record.dialled) == ("outbound", "101", "+73832000099")
    assert record.end_reason == "completed"
    assert [step.subject for step in record.route if step.subject.startswith("trunk:")] == [
        "trunk:carrier"
    ]


async def test_a_trunk_failing_with_503_hands_the_call_to_the_next(
    node_factory: Any, peers: Any
) -> None:
    broken, backup = await peers(Trunk("broken")), await peers(Trunk("backup"))
    node = await node_factory(outbound_config([broken, backup]))
    phone = await peers(Dialler("101", PASSWORD))

    await phone.dial(node.address, "+73432000077")
    first = await broken.invite()
    broken.reply(first, 503)
    second = await backup.invite()
    backup.answer(second)

    assert (await phone.final()).status == 200
    assert second.call_id == first.call_id
    assert shown_number(second, "From") == YEKATERINBURG
    phone.bye()
    await backup.bye_answered()
    [record] = await node.records(1)
    trunk_steps = [(s.subject, s.detail.split()[0]) for s in record.route if "trunk:" in s.subject]
    assert trunk_steps == [("trunk:broken", "503"), ("trunk:backup", "200")]


async def test_the_callee_being_busy_is_not_a_reason_to_try_another_carrier(
    node_factory: Any, peers: Any
) -> None:
    first, second = await peers(Trunk("first")), await peers(Trunk("second"))
    node = await node_factory(outbound_config([first, second]))
    phone = await peers(Dialler("101", PASSWORD))

    await phone.dial(node.address, "89161234567")
    first.reply(await first.invite(), 486)

    assert (await phone.final()).status == 486
    assert second.invites == []
    with pytest.raises(TimeoutError):
        await second.invite(timeout=0.3)
    [record] = await node.records(1)
    assert record.end_reason in ("busy", "unavailable")


async def test_a_trunk_challenge_is_answered_with_the_trunks_credentials(
    node_factory: Any, peers: Any
) -> None:
    carrier = await peers(Trunk("carrier"))
    node = await node_factory(
        outbound_config([carrier], username="acme-trunk", password="trunk-pass-1")
    )
    phone = await peers(Dialler("101", PASSWORD))
    realm = "carrier.example"
    digest = DigestAuthenticator(NonceService(b"c" * 16), realm)

    await phone.dial(node.address, "+74951112233")
    invite = await carrier.invite()
    challenge = str(digest.challenges(md5_only=True)[0])
    carrier.reply(invite, 407, extra=f"Proxy-Authenticate: {challenge}\r\n")
    retried = await carrier.invite()
    credentials = DigestCredentials.parse(retried.headers.get("Proxy-Authorization") or "")
    ha1 = _ha1("acme-trunk", realm, "trunk-pass-1", "md5")
    result = digest.verify(
        credentials, "INVITE", lambda _user, _algorithm: ha1, request_uri=str(retried.uri)
    )
    assert result.ok
    assert retried.cseq.seq == invite.cseq.seq + 1
    carrier.answer(retried)
    assert (await phone.final()).status == 200
    phone.bye()
    await carrier.bye_answered()
    await node.records(1)


async def test_calls_abroad_are_refused_unless_the_policy_allows_them(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    carrier = await peers(Trunk("carrier"))
    node = await node_factory(outbound_config([carrier]))
    phone = await peers(Dialler("101", PASSWORD))

    await phone.dial(node.address, "+493012345678")
    final = await phone.final()

    assert (final.status, final.reason) == (403, "International Calls Not Allowed")
    assert carrier.invites == []
    [record] = await node.records(1)
    assert (record.direction, record.end_reason) == ("outbound", "rejected")
    client = redis.Redis.from_url(flushed_redis)
    try:
        counted = await client.hget("vpbx:outbound:refused:acme", "international")
    finally:
        await client.aclose()
    assert counted == b"1"


async def test_premium_numbers_are_refused_by_default(node_factory: Any, peers: Any) -> None:
    carrier = await peers(Trunk("carrier"))
    node = await node_factory(outbound_config([carrier]))
    phone = await peers(Dialler("101", PASSWORD))

    await phone.dial(node.address, "88091234567")

    final = await phone.final()
    assert (final.status, final.reason) == (403, "Premium-Rate Numbers Not Allowed")


async def test_the_outbound_cap_refuses_a_second_call_while_the_first_talks(
    node_factory: Any, peers: Any
) -> None:
    carrier = await peers(Trunk("carrier"))
    node = await node_factory(outbound_config([carrier], outbound={"max_concurrent": 1}))
    first, second = await peers(Dialler("101", PASSWORD)), await peers(Dialler("101", PASSWORD))

    await first.dial(node.address, "+74951112233")
    carrier.answer(await carrier.invite())
    assert (await first.final()).status == 200
    await second.dial(node.address, "+74951112244")
    refused = await second.final()
    assert (refused.status, refused.reason) == (486, "Outbound Call Limit Reached")

    first.bye()
    await carrier.bye_answered()
    await asyncio.sleep(0.2)  # the place is given back after the call's end
    third = await peers(Dialler("101", PASSWORD))
    await third.dial(node.address, "+74951112255")
    carrier.answer(await carrier.invite())
    assert (await third.final()).status == 200


async def test_the_daily_minutes_cap_refuses_calls_once_used_up(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    carrier = await peers(Trunk("carrier"))
    node = await node_factory(outbound_config([carrier], outbound={"max_minutes_per_day": 1}))
    client = redis.Redis.from_url(flushed_redis)
    try:
        keys = [key async for key in client.scan_iter("vpbx:outbound:seconds:acme:*")]
        assert keys == []
        day = dt.datetime.now(dt.UTC).strftime("%Y%m%d")
        await client.set(f"vpbx:outbound:seconds:acme:{day}", 60)
    finally:
        await client.aclose()
    phone = await peers(Dialler("101", PASSWORD))

    await phone.dial(node.address, "+74951112233")

    final = await phone.final()
    assert (final.status, final.reason) == (403, "Daily Outbound Minutes Used Up")
    assert carrier.invites == []
    await node.records(1)


async def test_a_caller_asking_for_privacy_is_anonymous_but_asserted(
    node_factory: Any, peers: Any
) -> None:
    carrier = await peers(Trunk("carrier"))
    node = await node_factory(outbound_config([carrier]))
    phone = await peers(Dialler("101", PASSWORD))

    await phone.dial(node.address, "+74951112233", extra="Privacy: id\r\n")
    invite = await carrier.invite()

    assert shown_number(invite, "From") == "anonymous"
    assert shown_number(invite, "P-Asserted-Identity") == MOSCOW
    assert invite.headers.get("Privacy") == "id"
    carrier.reply(invite, 480)
    assert (await phone.final()).status == 480
    await node.records(1)


def follow_me_config(carrier: Trunk, settings: dict[str, Any]) -> NodeConfig:
    base = outbound_config([carrier]).model_dump(mode="json")
    base["users"].append(
        {
            "extension": "102",
            "name": "Boris",
            "city": "msk",
            "mobile": "+79161234567",
            "settings": {"voicemail": False, **settings},
        }
    )
    return NodeConfig.model_validate(base).with_version()


async def test_follow_me_rings_the_mobile_after_the_delay_and_counts_the_user_as_answering(
    node_factory: Any, peers: Any
) -> None:
    carrier = await peers(Trunk("carrier"))
    node = await node_factory(
        follow_me_config(carrier, {"forward_to_mobile": True, "forward_after_s": 1})
    )
    desk = await peers(Phone("102"))
    await node.register(desk)
    phone = await peers(Dialler("101", PASSWORD))

    await phone.dial(node.address, "102")
    await desk.ringing()
    loop = asyncio.get_running_loop()
    desk_rang_at = loop.time()
    invite = await carrier.invite(timeout=5)
    assert loop.time() - desk_rang_at >= 0.8  # the desk phone's head start
    assert invite.uri.user == "+79161234567"
    carrier.answer(invite)
    await desk.answers_cancel()  # the desk phone stops ringing once the mobile answered
    assert (await phone.final()).status == 200

    phone.bye()
    await carrier.bye_answered()
    [record] = await node.records(1)
    assert (record.answered_by, record.direction) == ("102", "internal")


async def test_forward_all_sends_calls_to_the_number_only(node_factory: Any, peers: Any) -> None:
    carrier = await peers(Trunk("carrier"))
    node = await node_factory(follow_me_config(carrier, {"forward_all_to": "+79169876543"}))
    desk = await peers(Phone("102"))
    await node.register(desk)
    phone = await peers(Dialler("101", PASSWORD))

    await phone.dial(node.address, "102")
    invite = await carrier.invite()
    assert invite.uri.user == "+79169876543"
    carrier.reply(invite, 486)

    assert (await phone.final()).status == 486
    assert desk.seen == []
    await node.records(1)


async def test_click_to_call_rings_the_user_first_then_the_number(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    carrier = await peers(Trunk("carrier"))
    node = await node_factory(outbound_config([carrier]))
    desk = await peers(Phone("101"))
    await node.register(desk)
    await asyncio.wait_for(node.service.commands.subscribed.wait(), 5)
    client = redis.Redis.from_url(flushed_redis)
    try:
        command = NodeCommand(
            tenant="acme",
            by_user="u-1",
            body=Originate(city="msk", extension="101", to="8 383 200 00 99"),
        )
        reply = await send_command(client, command, 5)
    finally:
        await client.aclose()
    assert reply is not None
    assert reply.status is ReplyStatus.ACCEPTED

    ringing = await desk.ringing()
    assert shown_number(ringing, "From") == "+73832000099"  # the phone shows whom it calls
    assert b"c=IN IP4 127.0.0.1" in ringing.body  # media at the relay, not a hold offer
    assert b"0.0.0.0" not in ringing.body
    assert carrier.invites == []  # nobody else rings before the user answers
    desk.answer()
    invite = await carrier.invite()
    assert invite.uri.user == "+73832000099"
    assert shown_number(invite, "P-Asserted-Identity") == NOVOSIBIRSK
    carrier.reply(invite, 180)
    carrier.answer(invite)
    await asyncio.sleep(0.2)
    carrier.hang_up(invite)
    await desk.bye_answered()

    [record] = await node.records(1)
    assert record.call_id == reply.call_id
    assert (record.direction, record.caller, record.dialled) == ("outbound", "101", "+73832000099")
    assert record.end_reason == "completed"
    assert record.route[0].subject == "click-to-call"


async def test_click_to_call_abroad_is_refused_before_anything_rings(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    carrier = await peers(Trunk("carrier"))
    node = await node_factory(outbound_config([carrier]))
    desk = await peers(Phone("101"))
    await node.register(desk)
    await asyncio.wait_for(node.service.commands.subscribed.wait(), 5)
    client = redis.Redis.from_url(flushed_redis)
    try:
        command = NodeCommand(
            tenant="acme", body=Originate(city="msk", extension="101", to="+493012345678")
        )
        reply = await send_command(client, command, 5)
    finally:
        await client.aclose()

    assert reply is not None
    assert (reply.status, reply.detail) == (ReplyStatus.REFUSED, "international")
    assert desk.seen == []
    [record] = await node.records(1)
    assert record.end_reason == "rejected"


async def test_a_forward_abroad_is_refused_by_the_same_policy(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    carrier = await peers(Trunk("carrier"))
    node = await node_factory(follow_me_config(carrier, {"forward_all_to": "+442079460000"}))
    phone = await peers(Dialler("101", PASSWORD))

    await phone.dial(node.address, "102")

    assert (await phone.final()).status == 480
    assert carrier.invites == []
    [record] = await node.records(1)
    refused = [s for s in record.route if s.outcome == "refused"]
    assert [(s.member, s.detail) for s in refused] == [
        ("+442079460000", "call out refused: international")
    ]


async def test_a_group_member_outside_rings_through_the_trunk_with_the_desk_phones(
    node_factory: Any, peers: Any
) -> None:
    carrier = await peers(Trunk("carrier"))
    base = outbound_config([carrier]).model_dump(mode="json")
    base["groups"] = [{"name": "night", "members": ["101", "+79161234567"], "ring_timeout_s": 20}]
    base["numbers"][0]["target"] = {"type": "group", "name": "night"}
    node = await node_factory(NodeConfig.model_validate(base).with_version())
    desk = await peers(Phone("101"))
    await node.register(desk)
    caller = await peers(Carrier(node.address, to_user=MOSCOW, uri_user=MOSCOW))

    caller.invite()
    await desk.ringing()
    invite = await carrier.invite()
    assert invite.uri.user == "+79161234567"
    carrier.answer(invite)
    await desk.answers_cancel()  # the desk phone stops once the number outside answered
    assert (await caller.final()).status == 200
    caller.bye()
    await carrier.bye_answered()

    [record] = await node.records(1)
    assert (record.direction, record.answered_by, record.end_reason) == (
        "inbound",
        "+79161234567",
        "completed",
    )


async def test_a_party_added_to_a_call_out_is_judged_by_the_policy_too(
    node_factory: Any, peers: Any, flushed_redis: str
) -> None:
    carrier = await peers(Trunk("carrier"))
    node = await node_factory(outbound_config([carrier]))
    phone = await peers(Dialler("101", PASSWORD))
    await phone.dial(node.address, "8(383)2000099")
    invite = await carrier.invite()
    carrier.answer(invite)
    assert (await phone.final()).status == 200
    await asyncio.wait_for(node.service.commands.subscribed.wait(), 5)

    client = redis.Redis.from_url(flushed_redis)
    try:
        abroad = AddParty(call_id=phone.call_id, target="+493012345678")
        reply = await send_command(client, NodeCommand(tenant="acme", body=abroad), 5)
    finally:
        await client.aclose()
    assert reply is not None
    assert (reply.status, reply.detail) == (ReplyStatus.REFUSED, "International Calls Not Allowed")
    assert len(carrier.invites) == 1  # nothing more was dialled

    phone.bye()
    await carrier.bye_answered()
