"""`make bench-phoneregion`: what region look-ups and local-presence choices cost.

Outbound caller ID is chosen on every call a tenant's agent places, so
``LocalPresence.choose`` sits on the call-setup path. This measures, in one
process on this machine:

- the one-off load of the shipped Russian data (first ``region_for``);
- ``region_for`` per call for Russian mobile and landline numbers (bisect over
  the shipped ranges), and for a foreign number once its answer is cached;
- ``LocalPresence.choose`` for Russian callees (same-region and nearest-region
  choices, as the random callees fall);
- ``destination_class`` (a phonenumbers parse and type look-up).

Figures are the best of ``--repeat`` rounds of ``--loops`` calls each, in
microseconds per call; nothing is asserted.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable, Sequence

from vpbx_common.phoneregion import LocalPresence, destination_class, region_for, russia

# Mobile ranges of the shipped register extract and landline zones (see
# libs/vpbx-common/tests/test_phoneregion.py for where each comes from).
_RUSSIAN_PREFIXES = (
    "7903",  # Moscow mobile
    "79137",  # Novosibirsk mobile
    "79122",  # Yekaterinburg mobile
    "79213",  # St Petersburg mobile
    "79172",  # Tatarstan mobile
    "791385",  # Tomsk mobile
    "7495",
    "7383",
    "7343",
    "7812",
    "7843",
    "7382",
)
_TENANT_NUMBERS = ("+74951234567", "+73832123456", "+78432123456", "+78121234567")


def _russian_numbers(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    numbers = []
    for _ in range(count):
        prefix = rng.choice(_RUSSIAN_PREFIXES)
        rest = "".join(rng.choice("0123456789") for _ in range(11 - len(prefix)))
        numbers.append(f"+{prefix}{rest}")
    return numbers


def _microseconds_per_call(
    function: Callable[[str], object], inputs: Sequence[str], loops: int, repeat: int
) -> float:
    best = float("inf")
    size = len(inputs)
    for _ in range(repeat):
        started = time.perf_counter_ns()
        for index in range(loops):
            function(inputs[index % size])
        best = min(best, (time.perf_counter_ns() - started) / loops / 1000)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--loops", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    arguments = parser.parse_args(argv)

    callees = _russian_numbers(10_000, arguments.seed)
    started = time.perf_counter()
    region_for(callees[0])
    load_ms = (time.perf_counter() - started) * 1000
    print(f"first region_for (loads {len(russia.ranges().starts)} ranges): {load_ms:.1f} ms")

    started = time.perf_counter()
    region_for("+493012345678")
    print(f"first foreign region_for (imports the geocoder): {time.perf_counter() - started:.2f} s")

    tenant = LocalPresence(_TENANT_NUMBERS)
    reasons: dict[str, int] = {}
    for callee in callees:
        reason = tenant.choose(callee).reason
        reasons[reason] = reasons.get(reason, 0) + 1
    print(f"callee mix by choice: {dict(sorted(reasons.items()))}")

    loops, repeat = arguments.loops, arguments.repeat
    figures = {
        "region_for, Russian numbers": _microseconds_per_call(region_for, callees, loops, repeat),
        "region_for, foreign number (cached)": _microseconds_per_call(
            region_for, ["+493012345678"], loops, repeat
        ),
        "LocalPresence.choose, Russian callees": _microseconds_per_call(
            tenant.choose, callees, loops, repeat
        ),
        "destination_class, Russian numbers": _microseconds_per_call(
            lambda number: destination_class(number, "RU"), callees, loops // 10, repeat
        ),
    }
    for name, microseconds in figures.items():
        print(f"{name}: {microseconds:.2f} us/call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
