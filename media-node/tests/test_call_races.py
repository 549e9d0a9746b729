"""Call logic in one process: a real node (SIP stack, relay, routing engine, Redis) and
scripted SIP peers on loopback standing in for phones and carriers.

The peers answer, ring, refuse or stay silent exactly when a test says, so the
races a call must decide in one place (two devices answering at once, a CANCEL
crossing a 200, an answer crossing the end of a member's turn) are reproduced
on purpose instead of by luck, in well under a second each.
"""

from __future__ import annotations

import asyncio
from typing import Any

from tests.services.sippeers import NUMBER, Carrier, Phone, config

from vpbx_common.nodeconfig import NodeConfig
from vpbx_media.sip.message import SipRequest


async def test_two_devices_answering_at_once_give_one_call_and_the_other_a_bye(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(config({"strategy": "ring-all", "members": ["101", "102"]}))
    anna, boris = await peers(Phone("101")), await peers(Phone("102"))
    for phone in (anna, boris):
        await node.register(phone)
    carrier = await peers(Carrier(node.address))

    carrier.invite()
    await asyncio.gather(anna.ringing(), boris.ringing())
    anna.answer()
    boris.answer()  # in the same instant: both 200s reach the node
    final = await carrier.final()

    assert final.status == 200
    # Exactly one of them keeps the call; the other is hung up.
    loser = await asyncio.wait_for(_first_bye(anna, boris), 5)
    await loser.bye_answered()
    carrier.bye()
    winner = boris if loser is anna else anna
    await winner.bye_answered()
    [record] = await node.records(1)
    assert record.answered_by == winner.extension
    assert record.end_reason == "completed"


async def _first_bye(*phones: Phone) -> Phone:
    async with asyncio.timeout(5):
        while True:
            for phone in phones:
                if any(isinstance(m, SipRequest) and m.method == "BYE" for m in phone.seen):
                    return phone
            await asyncio.sleep(0.02)


async def test_a_cancel_crossing_the_answer_leaves_no_half_call(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(config({"strategy": "ring-all", "members": ["101"]}))
    anna = await peers(Phone("101"))
    await node.register(anna)
    carrier = await peers(Carrier(node.address))

    carrier.invite()
    await anna.ringing()
    anna.answer()
    carrier.cancel()  # crosses the 200 on the wire
    final = await carrier.final()

    if final.status == 200:
        # The answer won: a normal call that the caller ends at once.
        carrier.bye()
        await anna.bye_answered()
        [record] = await node.records(1)
        assert (record.answered_by, record.end_reason) == ("101", "completed")
    else:
        # The CANCEL won: the caller hears 487 and the device that answered is hung up.
        assert final.status == 487
        await anna.bye_answered()
        [record] = await node.records(1)
        assert (record.answered_by, record.end_reason) == ("", "cancelled")


async def test_an_answer_after_the_members_turn_ended_is_hung_up_and_the_next_one_rings(
    node_factory: Any, peers: Any
) -> None:
    group = {"strategy": "sequential", "members": ["101", "102"], "member_ring_s": 1}
    node = await node_factory(config(group))
    slow, quick = await peers(Phone("101")), await peers(Phone("102"))
    for phone in (slow, quick):
        await node.register(phone)
    carrier = await peers(Carrier(node.address))

    carrier.invite()
    await slow.ringing()
    await slow.answers_cancel()  # its turn is over after 1 s
    await quick.ringing()
    slow.answer()  # too late: 101 answers its (already cancelled) INVITE anyway
    quick.answer()
    final = await carrier.final()

    assert final.status == 200
    carrier.bye()
    await quick.bye_answered()
    [record] = await node.records(1)
    assert record.answered_by == "102"
    assert [step.outcome for step in record.route if step.member == "101"] == [
        "ringing",
        "no-answer",
    ]


async def test_every_member_busy_gives_the_caller_busy_at_once(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(config({"strategy": "ring-all", "members": ["101", "102"]}))
    anna, boris = await peers(Phone("101")), await peers(Phone("102"))
    for phone in (anna, boris):
        await node.register(phone)
    carrier = await peers(Carrier(node.address))
    loop = asyncio.get_running_loop()

    started = loop.time()
    carrier.invite()
    await asyncio.gather(anna.ringing(), boris.ringing())
    anna.reply(486)
    boris.reply(486)
    final = await carrier.final()

    assert final.status == 486
    assert loop.time() - started < 2  # not after the group's 3 s
    [record] = await node.records(1)
    assert record.end_reason == "busy"


async def test_a_dtmf_info_that_is_not_a_key_gets_400_and_a_good_one_chooses(
    node_factory: Any, peers: Any
) -> None:
    cfg = config({"strategy": "ring-all", "members": ["101"]})
    cfg = NodeConfig.model_validate(
        {
            **cfg.model_dump(mode="json"),
            "ivr_menus": [
                {
                    "name": "main",
                    "prompt": {"kind": "tone", "frequency_hz": 600, "duration_ms": 200},
                    "options": {"1": {"type": "user", "extension": "101"}},
                    "timeout_s": 10,
                }
            ],
            "numbers": [
                {
                    "number": NUMBER,
                    "city": "msk",
                    "label": None,
                    "channels": 0,
                    "target": {"type": "ivr", "name": "main"},
                }
            ],
        }
    ).with_version()
    node = await node_factory(cfg)
    anna = await peers(Phone("101"))
    await node.register(anna)
    carrier = await peers(Carrier(node.address))

    carrier.invite()
    assert (await carrier.final()).status == 200  # the menu answers
    bad = carrier.info("application/dtmf-relay", "Signal=x\r\nDuration=160\r\n")
    assert (await carrier.response_to(bad)).status == 400
    good = carrier.info("application/dtmf-relay", "Signal=1\r\nDuration=160\r\n")
    assert (await carrier.response_to(good)).status == 200
    await anna.ringing()
