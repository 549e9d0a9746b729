"""Synthetic CDR sets for the analytics tests, with the ground truth each call was made from.

Each call is built from a scenario (answered in a group, abandoned in the queue, ...) that
knows, independently of the derivation and the SQL, which group the call reached, which
extension rang last, where the caller gave up and how long they waited in a queue. The tests
compute the expected report figures from these truths in plain Python.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date

from vpbx_common.analytics import ReportPeriod
from vpbx_common.cdr import CallRecord, Direction, EndReason, HangupBy, RouteStep

FIRST_DAY = date(2025, 3, 3)  # a Monday; New York moves its clocks forward on Sunday 9 March
LAST_DAY = date(2025, 3, 16)
ZONES = ("Europe/Moscow", "America/New_York")


@dataclass(frozen=True, slots=True)
class Call:
    record: CallRecord
    group: str  # the group the call reached, '' if none
    last_rung: str  # the last extension that rang, '' if none
    abandoned: str  # '', 'queue', 'ivr', 'ring'
    queue_wait_ms: int  # time waited in a queue, 0 if never queued

    @property
    def queued(self) -> bool:
        return self.queue_wait_ms > 0 or self.abandoned == "queue"


@dataclass(frozen=True, slots=True)
class Tenant:
    name: str
    callers: tuple[str, ...]  # real numbers that call in
    numbers: dict[str, str]  # the tenant's numbers -> their ad-channel label
    extensions: tuple[str, ...]
    groups: tuple[str, ...]
    categories: tuple[str, ...]


ACME = Tenant(
    name="acme",
    callers=tuple(f"+791300000{i:02d}" for i in range(14)),
    numbers={"+74951110000": "yandex", "+74951110001": "billboard", "+74951110002": ""},
    extensions=("101", "102", "103", "104"),
    groups=("sales", "support"),
    categories=("client", "supplier", "partner"),
)
GLOBEX = Tenant(
    name="globex",
    callers=tuple(f"+792300000{i:02d}" for i in range(9)),
    numbers={"+74952220000": "globex-radio", "+74952220001": ""},
    extensions=("201", "202"),
    groups=("globex-desk",),
    categories=("globex-cat",),
)
NOT_REAL = ("anonymous", "5555")
# Inbound scenarios, drawn uniformly (a plain group answer twice as often).
SCENARIOS = (
    "group",
    "group",
    "queue",
    "queue-left",
    "ivr-left",
    "ivr-group",
    "ring-left",
    "voicemail",
    "no-answer",
    "busy",
)  # callers that are no phone number: never called back


def _step(
    after_ms: int, subject: str, outcome: str, member: str | None = None, detail: str = ""
) -> RouteStep:
    return RouteStep(after_ms / 1000, subject, outcome, member, detail)


class _Maker:
    def __init__(self, tenant: Tenant, rng: random.Random) -> None:
        self.tenant = tenant
        self.rng = rng
        self.serial = 0
        self.calls: list[Call] = []

    def contact(self, caller: str, start_ms: int) -> dict[str, object]:
        """Who the CRM knew the caller as when they called: about two thirds of the real
        numbers are contacts, and one became a contact only in the middle of the period."""
        if caller not in self.tenant.callers:
            return {}
        index = self.tenant.callers.index(caller)
        if index % 3 == 2:
            return {}
        if index == 1 and start_ms < local_ms(date(2025, 3, 10), 0, 0, 0, "UTC"):
            return {}
        categories = self.tenant.categories
        return {
            "contact_id": f"{self.tenant.name}-ct-{index}",
            "contact_category": categories[(index // 3) % len(categories)],
            "contact_vip": index % 4 == 0,
            "contact_owner_user_id": f"{self.tenant.name}-owner-{index % 2}",
        }

    def add(
        self,
        *,
        start_ms: int,
        direction: Direction = Direction.INBOUND,
        caller: str,
        dialled: str,
        ring_ms: int,
        talk_ms: int | None,  # None: not answered
        end_reason: EndReason,
        hangup_by: HangupBy = HangupBy.CALLER,
        answered_by: str = "",
        route: tuple[RouteStep, ...] = (),
        group: str = "",
        last_rung: str = "",
        abandoned: str = "",
        queue_wait_ms: int = 0,
        contact: dict[str, object] | None = None,
    ) -> Call:
        self.serial += 1
        answered = talk_ms is not None
        answer_ms = start_ms + ring_ms if answered else None
        end_ms = start_ms + ring_ms + (talk_ms or 0)
        label = self.tenant.numbers.get(dialled, "") if direction is Direction.INBOUND else ""
        known = self.contact(caller, start_ms) if contact is None else contact
        record = CallRecord.build(
            call_id=f"{self.tenant.name}-{self.serial:04d}",
            tenant=self.tenant.name,
            city="msk",
            node="msk-0",
            direction=direction,
            caller=caller,
            dialled=dialled,
            label=label,
            answered_by=answered_by,
            start_ms=start_ms,
            answer_ms=answer_ms,
            end_ms=end_ms,
            end_reason=end_reason,
            sip_status=200 if answered or end_reason is EndReason.VOICEMAIL else 487,
            hangup_by=hangup_by,
            route=route,
            **known,  # type: ignore[arg-type]
        )
        call = Call(record, group, last_rung, abandoned, queue_wait_ms)
        self.calls.append(call)
        return call

    # -- inbound scenarios --------------------------------------------------------------

    def inbound(self, start_ms: int, caller: str, dialled: str) -> Call:
        rng = self.rng
        ext = rng.choice(self.tenant.extensions)
        group = rng.choice(self.tenant.groups)
        ring = rng.randrange(1_000, 45_000)
        talk = rng.randrange(5_000, 600_000)
        scenario = rng.choice(SCENARIOS)
        common = {"start_ms": start_ms, "caller": caller, "dialled": dialled}
        subject = f"group:{group}"
        match scenario:
            case "group":
                route = (
                    _step(0, subject, "entered", None, "entry"),
                    _step(0, subject, "ringing", ext),
                    _step(ring, subject, "answered", ext),
                )
                return self.add(
                    **common, ring_ms=ring, talk_ms=talk, end_reason=EndReason.COMPLETED,
                    answered_by=ext, route=route, group=group, last_rung=ext,
                )  # fmt: skip
            case "queue":
                plan = "plan:main step 1 (queue)"
                offer = max(0, ring - 2_000)
                route = (
                    _step(0, plan, "entered", None, f"queue of group:{group}"),
                    _step(0, plan, "queued", None, "joined"),
                    _step(offer, plan, "queued", ext, "offered"),
                    _step(offer, plan, "ringing", ext),
                    _step(ring, plan, "answered", ext),
                )
                return self.add(
                    **common, ring_ms=ring, talk_ms=talk, end_reason=EndReason.COMPLETED,
                    answered_by=ext, route=route, group=group, last_rung=ext, queue_wait_ms=ring,
                )  # fmt: skip
            case "queue-left":
                plan = "plan:main step 1 (queue)"
                offered = rng.random() < 0.5
                route = (
                    _step(0, plan, "entered", None, f"queue of group:{group}"),
                    _step(0, plan, "queued", None, "joined"),
                    *(
                        (
                            _step(500, plan, "queued", ext, "offered"),
                            _step(500, plan, "ringing", ext),
                            _step(900, plan, "no-answer", ext, "declined"),
                            _step(900, plan, "queued", ext, "back at its place: declined"),
                        )
                        if offered
                        else ()
                    ),
                    _step(ring, "call", "caller-left", None, "while queued"),
                )
                return self.add(
                    **common, ring_ms=ring, talk_ms=None, end_reason=EndReason.CANCELLED,
                    route=route, group=group, last_rung=ext if offered else "",
                    abandoned="queue", queue_wait_ms=ring,
                )  # fmt: skip
            case "ivr-left":
                route = (
                    _step(0, "ivr:main", "entered", None, "entry"),
                    _step(0, "ivr:main", "prompted"),
                    _step(ring, "call", "caller-left", None, "while ivr"),
                )
                return self.add(
                    **common, ring_ms=ring, talk_ms=None, end_reason=EndReason.CANCELLED,
                    route=route, abandoned="ivr",
                )  # fmt: skip
            case "ivr-group":
                chose = min(ring, 500)
                route = (
                    _step(0, "ivr:main", "entered", None, "entry"),
                    _step(0, "ivr:main", "prompted"),
                    _step(chose, "ivr:main", "decided", None, "digit 1"),
                    _step(chose, subject, "entered", None, "ivr:main: digit 1"),
                    _step(chose, subject, "ringing", ext),
                    _step(ring, subject, "answered", ext),
                )
                return self.add(
                    **common, ring_ms=ring, talk_ms=talk, end_reason=EndReason.COMPLETED,
                    answered_by=ext, route=route, group=group, last_rung=ext,
                )  # fmt: skip
            case "ring-left":
                route = (
                    _step(0, subject, "entered", None, "entry"),
                    _step(0, subject, "ringing", ext),
                    _step(ring, subject, "no-answer", ext, "caller hung up"),
                    _step(ring, "call", "caller-left", None, "while ringing"),
                )
                return self.add(
                    **common, ring_ms=ring, talk_ms=None, end_reason=EndReason.CANCELLED,
                    route=route, group=group, last_rung=ext, abandoned="ring",
                )  # fmt: skip
            case "voicemail":
                route = (
                    _step(0, subject, "entered", None, "entry"),
                    _step(0, subject, "ringing", ext),
                    _step(20_000, subject, "no-answer", None, "nobody answered in time"),
                    _step(20_000, "voicemail", "entered", None, f"group:{group}: overflow"),
                    _step(50_000, "voicemail", "recorded"),
                )
                return self.add(
                    **common, ring_ms=50_000, talk_ms=None, end_reason=EndReason.VOICEMAIL,
                    route=route, group=group, last_rung=ext,
                )  # fmt: skip
            case "no-answer":
                route = (
                    _step(0, subject, "entered", None, "entry"),
                    _step(0, subject, "ringing", ext),
                    _step(30_000, subject, "no-answer", None, "nobody answered in time"),
                    _step(30_000, "call", "hung-up", None, "480 no-answer, no overflow"),
                )
                return self.add(
                    **common, ring_ms=30_000, talk_ms=None, end_reason=EndReason.NO_ANSWER,
                    hangup_by=HangupBy.SYSTEM, route=route, group=group, last_rung=ext,
                )  # fmt: skip
            case _:
                return self.add(
                    **common, ring_ms=0, talk_ms=None, end_reason=EndReason.BUSY,
                    hangup_by=HangupBy.SYSTEM,
                )  # fmt: skip

    def outbound(self, start_ms: int, ext: str, number: str, answered: bool) -> Call:
        ring = self.rng.randrange(2_000, 30_000)
        route = (_step(0, "trunk:main", "answered" if answered else "failed", number),)
        return self.add(
            start_ms=start_ms, direction=Direction.OUTBOUND, caller=ext, dialled=number,
            ring_ms=ring, talk_ms=self.rng.randrange(10_000, 300_000) if answered else None,
            end_reason=EndReason.COMPLETED if answered else EndReason.NO_ANSWER,
            hangup_by=HangupBy.CALLEE, answered_by=number if answered else "", route=route,
            contact={},
        )  # fmt: skip

    def internal(self, start_ms: int) -> Call:
        caller, callee = self.rng.sample(self.tenant.extensions, 2)
        ring = self.rng.randrange(1_000, 10_000)
        route = (
            _step(0, f"user:{callee}", "entered", None, "entry"),
            _step(0, f"user:{callee}", "ringing", callee),
            _step(ring, f"user:{callee}", "answered", callee),
        )
        return self.add(
            start_ms=start_ms, direction=Direction.INTERNAL, caller=caller, dialled=callee,
            ring_ms=ring, talk_ms=60_000, end_reason=EndReason.COMPLETED, answered_by=callee,
            route=route, last_rung=callee, contact={},
        )  # fmt: skip


def local_ms(day: date, hour: int, minute: int, second: int, tz: str) -> int:
    from datetime import datetime, time
    from zoneinfo import ZoneInfo

    moment = datetime.combine(day, time(hour, minute, second), tzinfo=ZoneInfo(tz))
    return int(moment.timestamp()) * 1000


def generate(tenant: Tenant, seed: int, calls: int) -> list[Call]:
    """``calls`` random calls from two days before the first day to three after the last (in
    UTC terms, so both zones' periods have calls just outside them), plus fixed edge cases."""
    rng = random.Random(seed)
    maker = _Maker(tenant, rng)
    wide = ReportPeriod.from_dates(FIRST_DAY, LAST_DAY, "UTC")
    low, high = wide.start_ms - 2 * 86_400_000, wide.end_ms + 3 * 86_400_000
    numbers = list(tenant.numbers)
    for _ in range(calls):
        start = rng.randrange(low, high) // 1000 * 1000 + rng.randrange(0, 1000)
        kind = rng.random()
        if kind < 0.7:
            caller = rng.choice(tenant.callers + NOT_REAL) if rng.random() < 0.9 else NOT_REAL[0]
            maker.inbound(start, caller, rng.choice(numbers))
        elif kind < 0.92:
            ext = rng.choice(tenant.extensions)
            maker.outbound(start, ext, rng.choice(tenant.callers), rng.random() < 0.6)
        else:
            maker.internal(start)
    # Edges of local days: 23:59 local is still that day, whatever the UTC date says.
    for tz in ZONES:
        for day in (date(2025, 3, 5), date(2025, 3, 9), LAST_DAY):
            maker.inbound(local_ms(day, 23, 59, 30, tz), tenant.callers[0], numbers[0])
        maker.inbound(local_ms(FIRST_DAY, 0, 0, 0, tz), tenant.callers[1], numbers[0])
        # Exactly at the period's end (excluded) and just before its start (excluded).
        period = ReportPeriod.from_dates(FIRST_DAY, LAST_DAY, tz)
        maker.inbound(period.end_ms, tenant.callers[1], numbers[1])
        maker.inbound(period.start_ms - 1, tenant.callers[1], numbers[1])
    # New York's short day: 01:30 EST and 03:30 EDT are two hours of the same local day.
    for hour in (1, 3):
        maker.inbound(
            local_ms(date(2025, 3, 9), hour, 30, 0, ZONES[1]), tenant.callers[2], numbers[1]
        )
    # Callbacks: one returned the day after the period, one answered only before the miss.
    missed_late = local_ms(LAST_DAY, 18, 0, 0, ZONES[0])
    number = tenant.callers[3]
    _missed(maker, missed_late, number, numbers[0])
    maker.outbound(missed_late + 20 * 3_600_000, tenant.extensions[0], number, answered=True)
    number = tenant.callers[4]
    maker.outbound(
        local_ms(FIRST_DAY, 12, 0, 0, ZONES[0]) - 3_600_000,
        tenant.extensions[1],
        number,
        answered=True,
    )
    _missed(maker, local_ms(date(2025, 3, 10), 12, 0, 0, ZONES[0]), number, numbers[0])
    return maker.calls


def _missed(maker: _Maker, start_ms: int, caller: str, dialled: str) -> Call:
    group = maker.tenant.groups[0]
    ext = maker.tenant.extensions[0]
    route = (
        _step(0, f"group:{group}", "entered", None, "entry"),
        _step(0, f"group:{group}", "ringing", ext),
        _step(7_000, f"group:{group}", "no-answer", ext, "caller hung up"),
        _step(7_000, "call", "caller-left", None, "while ringing"),
    )
    return maker.add(
        start_ms=start_ms, caller=caller, dialled=dialled, ring_ms=7_000, talk_ms=None,
        end_reason=EndReason.CANCELLED, route=route, group=group, last_rung=ext, abandoned="ring",
    )  # fmt: skip


def dataset() -> dict[str, list[Call]]:
    return {
        ACME.name: generate(ACME, seed=12, calls=400),
        GLOBEX.name: generate(GLOBEX, seed=34, calls=150),
    }
