"""The node's Prometheus metrics, scraped over HTTP after real calls on loopback.

What the operator's dashboard and alerts read (charts/vpbx/dashboards, the chart's
PrometheusRule): calls ended and answered, calls in progress, RTP packet loss seen
by sequence numbers, the CDR spool's backlog, the process's CPU.
"""

from __future__ import annotations

import asyncio
import urllib.request
from typing import Any

from tests.services.metrics import sample_sum
from tests.services.ports import free_port
from tests.services.sippeers import Carrier, Phone, TonePeer, config

from vpbx_media.metrics import serve_metrics

LABELS = {"tenant": "acme", "city": "msk"}


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        body: bytes = response.read()
    return body.decode()


class _DroppingTransport:
    """Sends through the real transport, except every ``every``-th datagram."""

    def __init__(self, inner: Any, every: int) -> None:
        self.inner = inner
        self.every = every
        self.sent = 0
        self.dropped = 0

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        self.sent += 1
        if self.sent % self.every == 0:
            self.dropped += 1
            return
        self.inner.sendto(data, addr)

    def close(self) -> None:
        self.inner.close()


async def test_an_answered_call_with_lossy_media_and_a_missed_call_are_counted(
    node_factory: Any, peers: Any
) -> None:
    node = await node_factory(config({"strategy": "ring-all", "members": ["101"]}))
    port = free_port()
    server = serve_metrics(node.service.metrics.registry, "127.0.0.1", port)
    assert server is not None
    try:
        anna = await peers(Phone("101"))
        await node.register(anna)

        carrier = await peers(Carrier(node.address))
        caller_media = TonePeer(carrier.port + 1000, 400.0)
        await caller_media.open()
        lossy = _DroppingTransport(caller_media.transport, every=10)
        caller_media.transport = lossy  # type: ignore[assignment]
        carrier.invite()
        invite = await anna.ringing()
        agent_media = TonePeer(anna.port + 1000, 1000.0)
        await agent_media.open()
        anna.answer()
        answered = await carrier.final()
        assert answered.status == 200
        caller_media.talk_to(answered.body)
        agent_media.talk_to(invite.body)
        await asyncio.sleep(0.2)
        during = await asyncio.to_thread(scrape, port)
        assert sample_sum(during, "vpbx_node_active_calls", LABELS) == 1
        await asyncio.sleep(0.8)
        carrier.bye()
        await anna.bye_answered()
        caller_media.close()
        agent_media.close()
        await node.records(1)

        # A second caller gives up while the phone rings.
        quitter = await peers(Carrier(node.address))
        quitter.invite()
        await anna.ringing()
        quitter.cancel()
        await node.records(2)

        text = await asyncio.to_thread(scrape, port)
    finally:
        server.shutdown()

    inbound = {**LABELS, "direction": "inbound"}
    assert sample_sum(text, "vpbx_node_calls_total", {**inbound, "end_reason": "completed"}) == 1
    assert sample_sum(text, "vpbx_node_calls_total", {**inbound, "end_reason": "cancelled"}) == 1
    assert sample_sum(text, "vpbx_node_calls_answered_total", inbound) == 1
    assert sample_sum(text, "vpbx_node_active_calls", LABELS) == 0
    # The caller's side lost every tenth packet on the way in; the agent's none.
    expected = sample_sum(text, "vpbx_node_rtp_expected_packets_total", LABELS)
    lost = sample_sum(text, "vpbx_node_rtp_lost_packets_total", LABELS)
    assert expected is not None
    assert expected >= 60, text
    assert lost is not None
    assert 0.5 * lossy.dropped <= lost <= lossy.dropped + 1, (lost, lossy.dropped)
    # No shipper in this node: both CDRs wait in the spool.
    assert sample_sum(text, "vpbx_cdr_spool_backlog", LABELS) == 2
    cpu = sample_sum(text, "process_cpu_seconds_total")
    assert cpu is not None
    assert cpu > 0
