"""Pickup and park in one process: a real node, scripted phones and a carrier on loopback.

A colleague answers a call ringing someone else (group pickup with *8, directed with
** + extension); an agent parks a caller on a slot (a transfer to *7N) and any phone
takes them back by dialling the slot.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.services.sippeers import Carrier, Dialler, Phone, config, with_devices

from vpbx_common.nodeconfig import NodeConfig

PASSWORDS = {"101": "pw-101-secret", "102": "pw-102-secret", "103": "pw-103-secret"}


def node_config(group: dict[str, Any]) -> Any:
    return with_devices(config(group), PASSWORDS)


def recall_config(seconds: int) -> Any:
    document = node_config({"strategy": "ring-all", "members": ["101"]}).model_dump(mode="json")
    document["feature_codes"] = {"park_recall_s": seconds}
    return NodeConfig.model_validate(document).with_version()


async def parked_by_anna(node: Any, peers: Any, slot: str = "1") -> tuple[Phone, Carrier]:
    """A caller Anna (101) answered, then parked on ``slot`` (a transfer to *7<slot>)."""
    anna = await peers(Phone("101"))
    await node.register(anna)
    carrier = await peers(Carrier(node.address))
    carrier.invite()
    await anna.ringing()
    anna.answer()
    assert (await carrier.final()).status == 200
    anna.request("REFER", f"Refer-To: <sip:*7{slot}@acme.test>\r\n")
    assert (await anna.next_response()).status == 202
    assert "200 OK" in await anna.notified()
    await anna.bye_answered()
    return anna, carrier


async def test_group_pickup_answers_the_call_ringing_a_colleague(
    node_factory: Any, peers: Any
) -> None:
    group = {"strategy": "sequential", "members": ["101", "103"], "member_ring_s": 10}
    node = await node_factory(node_config(group))
    anna = await peers(Phone("101"))
    await node.register(anna)
    carrier = await peers(Carrier(node.address))
    carrier.invite()
    await anna.ringing()

    olga = await peers(Dialler("103", PASSWORDS["103"], domain="acme.test"))
    await olga.dial(node.address, "*8")
    assert (await olga.final()).status == 200
    assert (await carrier.final()).status == 200
    await anna.answers_cancel()  # Anna's phone stops ringing

    carrier.bye()
    await olga.bye_answered()
    [record] = await node.records(1)
    assert record.answered_by == "103"
    assert [s.subject for s in record.route][-1] == "pickup"


async def test_directed_pickup_takes_the_call_ringing_that_extension(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(node_config({"strategy": "ring-all", "members": ["101"]}))
    anna = await peers(Phone("101"))
    await node.register(anna)
    carrier = await peers(Carrier(node.address))
    carrier.invite()
    await anna.ringing()

    boris = await peers(Dialler("102", PASSWORDS["102"], domain="acme.test"))
    await boris.dial(node.address, "**101")
    assert (await boris.final()).status == 200
    assert (await carrier.final()).status == 200
    await anna.answers_cancel()

    nothing = await peers(Dialler("103", PASSWORDS["103"], domain="acme.test"))
    await nothing.dial(node.address, "**101")  # nothing rings 101 any more
    refused = await nothing.final()
    assert (refused.status, refused.reason) == (404, "Nothing To Pick Up")

    boris.bye()
    await carrier.next(method="BYE")
    [record] = await node.records(1)
    assert record.answered_by == "102"


async def test_a_parked_caller_is_taken_back_by_dialling_the_slot(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(node_config({"strategy": "ring-all", "members": ["101"]}))
    _, carrier = await parked_by_anna(node, peers, slot="3")  # parked: Anna is free
    await asyncio.sleep(0.1)

    boris = await peers(Dialler("102", PASSWORDS["102"], domain="acme.test"))
    await boris.dial(node.address, "*73")
    assert (await boris.final()).status == 200
    again = await peers(Dialler("103", PASSWORDS["103"], domain="acme.test"))
    await again.dial(node.address, "*73")
    assert (await again.final()).status == 404  # the slot is free again

    carrier.bye()
    await boris.bye_answered()
    [record] = await node.records(1)
    steps = [(s.outcome, s.member) for s in record.route if s.subject == "transfer"]
    assert steps == [("parked", "3"), ("retrieved", "102")]


async def test_a_call_parked_too_long_rings_whoever_parked_it(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(recall_config(1))
    anna, carrier = await parked_by_anna(node, peers)

    recall = await anna.ringing()  # after a second on the slot, Anna's phone rings again
    assert "+79130000001" in (recall.headers.get("From") or "")  # showing the caller
    anna.answer()
    await asyncio.sleep(0.2)
    late = await peers(Dialler("102", PASSWORDS["102"], domain="acme.test"))
    await late.dial(node.address, "*71")
    assert (await late.final()).status == 404  # taken back: the slot is free

    carrier.bye()
    await anna.bye_answered()
    [record] = await node.records(1)
    steps = [(s.outcome, s.member) for s in record.route if s.subject == "transfer"]
    assert steps == [("parked", "1"), ("recall", "101"), ("retrieved", "101")]
    assert record.answered_by == "101"


async def test_a_parked_call_nobody_takes_back_is_let_go_after_three_recalls(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(recall_config(1))
    anna, carrier = await parked_by_anna(node, peers)

    for _ in range(3):
        await anna.ringing()
        anna.reply(486)
    await carrier.bye_answered()  # the caller is let go
    [record] = await node.records(1)
    outcomes = [s.outcome for s in record.route if s.subject == "transfer"]
    assert outcomes == ["parked"] + ["recall", "recall-unanswered"] * 3
