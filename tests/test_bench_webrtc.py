"""The WebRTC legs benchmark end to end at a tiny size: real gateway worker, real client
process, packets counted at both ends."""

from __future__ import annotations

from loadtest.bench_webrtc import step


async def test_two_legs_carry_audio_both_ways_and_the_worker_cpu_is_measured() -> None:
    result = await step(legs=2, clients=1, settle=0.5, seconds=1.0)
    assert result["legs"] == 2
    assert result["to_browser"] > 0.9
    assert result["to_relay"] > 0.9
    assert result["cpu_pct"] > 0
