"""Trunk registration (node/trunks) against a fake carrier registrar on loopback UDP.

The registrar is a small datagram server that checks digest credentials with the
node's own server-side code (``DigestAuthenticator``), so a response computed wrongly
fails here. The registration runs on the real transaction layer (T1 = 10 ms, so an
unanswered REGISTER times out in 0.64 s) with a fake clock: every wait between
REGISTERs (refresh, backoff) is handed to the test, which checks its length and
decides when it ends.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, cast

import pytest
import redis.asyncio as redis

from vpbx_common.nodeconfig import NodeConfig
from vpbx_common.nodeconfig.model import TrunkEntry
from vpbx_common.outbound import OutboundPolicy
from vpbx_common.sipauth import DigestAlgorithm, ha1
from vpbx_common.trunks import RegistrationState, TrunkRegistrationStatus
from vpbx_media.node.configsource import ConfigHolder
from vpbx_media.node.trunks import (
    RegistrationTimings,
    TrunkRegistration,
    TrunkRegistrations,
    refresh_delay,
    trunk_destination,
)
from vpbx_media.node.trunks.registration import backoff_delay
from vpbx_media.sip.digest import (
    AuthOutcome,
    DigestAuthenticator,
    DigestChallenge,
    DigestCredentials,
    NonceService,
)
from vpbx_media.sip.headers import NameAddr
from vpbx_media.sip.message import SipRequest, SipResponse, make_response, parse_message
from vpbx_media.sip.transaction import ServerTransaction, Timers, TransactionLayer
from vpbx_media.sip.transport import Address, Flow, SipTransport
from vpbx_media.sip.uri import SipUri

REALM = "carrier.test"
USER = "trunk-user"
PASSWORD = "carrier-secret"
QUICK = Timers(t1=0.01, t2=0.08, t4=0.1, d=0.15)
WAIT = 3.0
JITTER = 0.5  # every backoff delay is shortened by 10% (0.2 * 0.5)
ALLOW_PRIVATE = OutboundPolicy(allow_private=True)

Step = int | tuple[int, list[tuple[str, str]]]


class FakeRegistrar(asyncio.DatagramProtocol):
    """A carrier's registrar: digest auth (the node's server code), bindings, scripted faults."""

    def __init__(
        self, algorithms: tuple[DigestAlgorithm, ...] = DigestAuthenticator.OFFERED
    ) -> None:
        self.nonce_clock = 1_000.0
        self.nonces = NonceService(secrets.token_bytes(16), lifetime_s=300, clock=self.clock)
        self.auth = DigestAuthenticator(self.nonces, REALM, algorithms)
        self.users = {USER: PASSWORD}
        self.requests: list[SipRequest] = []
        self.auth_outcomes: list[AuthOutcome] = []
        self.bindings: dict[str, int] = {}
        self.script: list[Step] = []  # answers for the next requests, before any auth
        self.silent = False  # drop every request (a carrier that does not answer)
        self.grant: int | None = None  # longest lifetime granted; None: what is asked
        self.min_expires: int | None = None
        self.transport: asyncio.DatagramTransport | None = None
        self.address = Address("127.0.0.1", 0)

    def clock(self) -> float:
        return self.nonce_clock

    def forget_nonces(self) -> None:
        """A restarted carrier: nonces it issued before are no longer its own."""
        self.nonces = NonceService(secrets.token_bytes(16), lifetime_s=300, clock=self.clock)
        self.auth = DigestAuthenticator(self.nonces, REALM, self.auth.offered)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        host, port = transport.get_extra_info("sockname")[:2]
        self.address = Address(host, port)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        request = parse_message(data)
        assert isinstance(request, SipRequest)
        self.requests.append(request)
        if self.silent:
            return
        response = self.answer(request)
        assert self.transport is not None
        self.transport.sendto(bytes(response), addr)

    def _reply(
        self, request: SipRequest, status: int, extra: Iterable[tuple[str, str]] = ()
    ) -> SipResponse:
        return make_response(request, status, to_tag="reg1", extra=list(extra))

    def _challenge(self, request: SipRequest, stale: bool = False) -> SipResponse:
        extra = [("WWW-Authenticate", str(c)) for c in self.auth.challenges(stale=stale)]
        return self._reply(request, 401, extra)

    def ha1_of(self, username: str, algorithm: DigestAlgorithm) -> str | None:
        password = self.users.get(username)
        return None if password is None else ha1(username, REALM, password, algorithm)

    def answer(self, request: SipRequest) -> SipResponse:
        if self.script:
            step = self.script.pop(0)
            status, extra = (step, []) if isinstance(step, int) else step
            return self._reply(request, status, extra)
        value = request.headers.get("Authorization")
        if value is None:
            return self._challenge(request)
        credentials = DigestCredentials.parse(value)
        result = self.auth.verify(
            credentials, "REGISTER", self.ha1_of, request_uri=str(request.uri)
        )
        self.auth_outcomes.append(result.outcome)
        if result.outcome is AuthOutcome.STALE:
            return self._challenge(request, stale=True)
        if not result.ok:
            return self._challenge(request)
        expires = int(request.headers.get("Expires") or "3600")
        contact = request.headers.get("Contact") or ""
        if expires == 0:
            self.bindings.pop(contact, None)
            return self._reply(request, 200)
        if self.min_expires is not None and expires < self.min_expires:
            return self._reply(request, 423, [("Min-Expires", str(self.min_expires))])
        granted = expires if self.grant is None else min(expires, self.grant)
        self.bindings[contact] = granted
        # Another node's binding of the same AOR is listed too, with another lifetime.
        return self._reply(
            request,
            200,
            [
                ("Contact", f"<sip:{USER}@192.0.2.7:5060>;expires=999"),
                ("Contact", f"{contact};expires={granted}"),
            ],
        )


class IgnoringUser:
    def on_request(
        self, request: SipRequest, flow: Flow, transaction: ServerTransaction | None
    ) -> None:
        raise AssertionError(f"unexpected request {request.method}")

    def on_cancel(self, transaction: ServerTransaction, cancel: SipRequest) -> None:
        raise AssertionError("unexpected CANCEL")

    def on_stray_response(self, response: SipResponse, flow: Flow) -> None:
        self.strays.append(response)

    def __init__(self) -> None:
        self.strays: list[SipResponse] = []


class FakeClock:
    """Wall time that only moves when a wait handed to the test is ended by it."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0
        self._sleeps: asyncio.Queue[tuple[float, asyncio.Future[None]]] = asyncio.Queue()
        self._current: tuple[float, asyncio.Future[None]] | None = None

    def time(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleeps.put_nowait((delay, future))
        await future

    async def next_sleep(self) -> float:
        """Wait until the code sleeps; the length of that sleep (it goes on until wake)."""
        self._current = await asyncio.wait_for(self._sleeps.get(), WAIT)
        return self._current[0]

    def wake(self) -> None:
        assert self._current is not None
        delay, future = self._current
        self.now += delay
        if not future.done():
            future.set_result(None)
        self._current = None


class RecordingSink:
    def __init__(self) -> None:
        self.puts: list[tuple[str, str, str, TrunkRegistrationStatus]] = []
        self.failures = 0

    async def put(
        self, tenant: str, trunk_id: str, city: str, status: TrunkRegistrationStatus
    ) -> None:
        if self.failures:
            self.failures -= 1
            raise redis.ConnectionError("Redis is down")
        self.puts.append((tenant, trunk_id, city, status))

    def states(self, trunk_id: str) -> list[RegistrationState]:
        return [status.state for _, trunk, _, status in self.puts if trunk == trunk_id]


async def until(predicate: Callable[[], bool], timeout: float = WAIT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


@pytest.fixture
async def registrar() -> AsyncIterator[FakeRegistrar]:
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        FakeRegistrar, local_addr=("127.0.0.1", 0)
    )
    yield protocol
    transport.close()


@pytest.fixture
async def layer() -> AsyncIterator[TransactionLayer]:
    transport = SipTransport("127.0.0.1", 0)
    layer = TransactionLayer(transport, IgnoringUser(), QUICK)
    await transport.start()
    yield layer
    await layer.stop()
    await transport.stop()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def make_trunk(registrar: FakeRegistrar, **overrides: Any) -> TrunkEntry:
    values: dict[str, Any] = {
        "id": "carrier",
        "name": "Carrier",
        "scope": "platform",
        "host": "127.0.0.1",
        "port": registrar.address.port,
        "registers": True,
        "username": USER,
        "password": PASSWORD,
        "register_expires_s": 300,
    }
    values.update(overrides)
    return TrunkEntry.model_validate(values)


class Harness:
    def __init__(self, layer: TransactionLayer, clock: FakeClock) -> None:
        self.layer = layer
        self.clock = clock
        self.statuses: list[TrunkRegistrationStatus] = []

    @property
    def node(self) -> Address:
        return self.layer.transport.local_address

    def registration(
        self, trunk: TrunkEntry, policy: OutboundPolicy = ALLOW_PRIVATE, **timings: Any
    ) -> TrunkRegistration:
        return TrunkRegistration(
            trunk,
            sender=self.layer,
            tenant="acme",
            contact=self.node,
            on_status=self.statuses.append,
            resolve=lambda entry: trunk_destination(entry, policy),
            timings=RegistrationTimings(**timings),
            clock=self.clock.time,
            sleep=self.clock.sleep,
            jitter=lambda: JITTER,
        )

    def states(self) -> list[RegistrationState]:
        return [status.state for status in self.statuses]


@pytest.fixture
def harness(layer: TransactionLayer, clock: FakeClock) -> Harness:
    return Harness(layer, clock)


def credentials(request: SipRequest) -> DigestCredentials | None:
    value = request.headers.get("Authorization")
    return None if value is None else DigestCredentials.parse(value)


# --- timing rules ----------------------------------------------------------------------


def test_refresh_comes_at_80_percent_but_32_s_before_lapse_at_the_latest() -> None:
    assert refresh_delay(3600) == 2880
    assert refresh_delay(300) == 240
    assert refresh_delay(120) == 88
    assert refresh_delay(60) == 30
    assert refresh_delay(20) == 10


def test_backoff_doubles_from_5_s_to_300_s_with_jitter_and_honours_retry_after() -> None:
    timings = RegistrationTimings()
    assert [backoff_delay(n, timings, 0.0, None) for n in range(1, 9)] == [
        5,
        10,
        20,
        40,
        80,
        160,
        300,
        300,
    ]
    assert backoff_delay(1, timings, 0.999, None) == pytest.approx(4.001)
    assert backoff_delay(1, timings, 0.0, 120) == 120
    assert backoff_delay(1, timings, 0.0, 100_000) == 300
    assert backoff_delay(10_000, timings, 0.0, None) == 300


# --- one registration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        (DigestAuthenticator.OFFERED, DigestAlgorithm.SHA256),
        ((DigestAlgorithm.MD5,), DigestAlgorithm.MD5),
    ],
)
async def test_registers_with_digest_and_reports_registered(
    registrar: FakeRegistrar,
    harness: Harness,
    offered: tuple[DigestAlgorithm, ...],
    answered: DigestAlgorithm,
) -> None:
    registrar.auth = DigestAuthenticator(registrar.nonces, REALM, offered)
    registrar.grant = 120
    registration = harness.registration(make_trunk(registrar))
    registration.start()

    assert await harness.clock.next_sleep() == refresh_delay(120)

    assert registration.state is RegistrationState.REGISTERED
    first, second = registrar.requests
    port = registrar.address.port
    node = harness.node
    for request in (first, second):
        assert str(request.uri) == f"sip:127.0.0.1:{port}"
        assert str(request.to.uri) == f"sip:{USER}@127.0.0.1"
        assert str(request.from_.uri) == f"sip:{USER}@127.0.0.1"
        assert request.headers.get("Contact") == f"<sip:{USER}@{node.host}:{node.port}>"
        assert request.headers.get("Expires") == "300"
    assert first.call_id == second.call_id == registration.call_id
    assert first.from_.tag == second.from_.tag == registration.from_tag
    assert (first.cseq.seq, second.cseq.seq) == (1, 2)
    assert credentials(first) is None
    answer = credentials(second)
    assert answer is not None
    assert (answer.algorithm, answer.qop, answer.nc, answer.username) == (
        answered,
        "auth",
        1,
        USER,
    )
    assert answer.uri == f"sip:127.0.0.1:{port}"
    assert registrar.auth_outcomes == [AuthOutcome.OK]
    assert harness.states() == [RegistrationState.REGISTERING, RegistrationState.REGISTERED]
    # The granted lifetime is our Contact's, not the other binding's 999 s.
    assert harness.statuses[-1].expires_at_ms == int((harness.clock.now + 120) * 1000)
    assert harness.statuses[-1].updated_at_ms == int(harness.clock.now * 1000)
    # The responses reached the REGISTER's client transactions, none the transaction user.
    assert cast(IgnoringUser, harness.layer.user).strays == []
    await registration.stop()


async def test_refresh_keeps_call_id_raises_cseq_and_reuses_the_nonce(
    registrar: FakeRegistrar, harness: Harness
) -> None:
    registrar.grant = 60
    registration = harness.registration(make_trunk(registrar))
    registration.start()
    assert await harness.clock.next_sleep() == 30
    registered_until = harness.statuses[-1].expires_at_ms

    harness.clock.wake()
    assert await harness.clock.next_sleep() == 30

    assert len(registrar.requests) == 3  # the refresh needed no new challenge
    refresh = registrar.requests[2]
    assert refresh.call_id == registration.call_id
    assert refresh.from_.tag == registration.from_tag
    assert refresh.cseq.seq == 3
    first_answer, refresh_answer = credentials(registrar.requests[1]), credentials(refresh)
    assert first_answer is not None
    assert refresh_answer is not None
    assert refresh_answer.nonce == first_answer.nonce
    assert refresh_answer.nc == 2
    assert refresh_answer.cnonce != first_answer.cnonce
    assert registrar.auth_outcomes == [AuthOutcome.OK, AuthOutcome.OK]
    assert harness.states()[-2:] == [RegistrationState.REGISTERED] * 2
    assert harness.statuses[-1].expires_at_ms == registered_until + 30_000
    await registration.stop()


async def test_a_refresh_answers_a_new_challenge_when_the_carrier_forgot_its_nonce(
    registrar: FakeRegistrar, harness: Harness
) -> None:
    registration = harness.registration(make_trunk(registrar))
    registration.start()
    await harness.clock.next_sleep()

    registrar.forget_nonces()  # the old nonce is not stale, just unknown: a plain 401
    harness.clock.wake()
    await harness.clock.next_sleep()

    assert [request.cseq.seq for request in registrar.requests] == [1, 2, 3, 4]
    fourth = credentials(registrar.requests[3])
    assert fourth is not None
    assert fourth.nc == 1
    assert registrar.auth_outcomes == [AuthOutcome.OK, AuthOutcome.FAILED, AuthOutcome.OK]
    assert registration.state is RegistrationState.REGISTERED
    await registration.stop()


async def test_a_stale_nonce_is_answered_again(registrar: FakeRegistrar, harness: Harness) -> None:
    registration = harness.registration(make_trunk(registrar))
    registration.start()
    await harness.clock.next_sleep()

    registrar.nonce_clock += 301  # the nonce outlived its 300 s: 401 with stale=true
    harness.clock.wake()
    await harness.clock.next_sleep()

    assert registrar.auth_outcomes == [AuthOutcome.OK, AuthOutcome.STALE, AuthOutcome.OK]
    assert registration.state is RegistrationState.REGISTERED
    await registration.stop()


async def test_a_wrong_password_fails_without_looping(
    registrar: FakeRegistrar, harness: Harness
) -> None:
    registration = harness.registration(make_trunk(registrar, password="not-the-password"))
    registration.start()

    assert await harness.clock.next_sleep() == pytest.approx(4.5)  # 5 s less 10% jitter
    await asyncio.sleep(0.1)
    assert len(registrar.requests) == 2  # one challenge answered, then no more
    assert registration.state is RegistrationState.FAILED
    assert registration.status.reason == "401 Unauthorized"
    assert harness.states() == [RegistrationState.REGISTERING, RegistrationState.FAILED]

    harness.clock.wake()  # the retry answers one fresh challenge again, then backs off more
    assert await harness.clock.next_sleep() == pytest.approx(9.0)
    assert len(registrar.requests) == 4
    assert credentials(registrar.requests[2]) is None
    await registration.stop()
    assert len(registrar.requests) == 4  # never bound: nothing to unregister


async def test_refusals_and_silence_back_off_exponentially(
    registrar: FakeRegistrar, harness: Harness
) -> None:
    registrar.script = [503, (503, [("Retry-After", "120")])]
    registration = harness.registration(make_trunk(registrar))
    registration.start()

    assert await harness.clock.next_sleep() == pytest.approx(4.5)
    assert registration.status.reason == "503 Service Unavailable"
    harness.clock.wake()
    assert await harness.clock.next_sleep() == 120  # Retry-After beats the 9 s backoff
    registrar.silent = True
    harness.clock.wake()
    assert await harness.clock.next_sleep() == pytest.approx(18.0)
    assert registration.state is RegistrationState.FAILED
    assert registration.status.reason == "no answer"
    assert len(registrar.requests) > 3  # the REGISTER was retransmitted before timer F

    registrar.silent = False
    harness.clock.wake()
    assert await harness.clock.next_sleep() == refresh_delay(300)
    assert harness.states() == [
        RegistrationState.REGISTERING,
        RegistrationState.FAILED,
        RegistrationState.FAILED,  # same state, another reason: "no answer"
        RegistrationState.REGISTERED,
    ]

    registrar.script = [403]  # a refused refresh fails at once; the backoff starts over
    harness.clock.wake()
    assert await harness.clock.next_sleep() == pytest.approx(4.5)
    assert registration.status.reason == "403 Forbidden"
    await registration.stop()


async def test_interval_too_brief_is_asked_again_with_min_expires(
    registrar: FakeRegistrar, harness: Harness
) -> None:
    registrar.min_expires = 600
    registration = harness.registration(make_trunk(registrar))
    registration.start()

    assert await harness.clock.next_sleep() == refresh_delay(600)
    assert [request.headers.get("Expires") for request in registrar.requests] == [
        "300",
        "300",
        "600",
    ]
    assert registration.expires_s == 600
    harness.clock.wake()
    await harness.clock.next_sleep()
    assert registrar.requests[-1].headers.get("Expires") == "600"
    assert registration.state is RegistrationState.REGISTERED
    await registration.stop()


async def test_interval_too_brief_without_min_expires_fails(
    registrar: FakeRegistrar, harness: Harness
) -> None:
    registrar.script = [423]
    registration = harness.registration(make_trunk(registrar))
    registration.start()
    await harness.clock.next_sleep()
    assert registration.state is RegistrationState.FAILED
    assert registration.status.reason == "423 Interval Too Brief"
    await registration.stop()


async def test_stop_unregisters_our_contact_only(
    registrar: FakeRegistrar, harness: Harness
) -> None:
    registration = harness.registration(make_trunk(registrar))
    registration.start()
    await harness.clock.next_sleep()
    assert len(registrar.bindings) == 1

    await registration.stop()

    unregister = registrar.requests[-1]
    assert unregister.headers.get("Expires") == "0"
    assert unregister.headers.get("Contact") == registrar.requests[0].headers.get("Contact")
    assert unregister.call_id == registration.call_id
    assert unregister.cseq.seq == 3
    answer = credentials(unregister)
    assert answer is not None
    assert answer.nc == 2  # sent with credentials straight away
    assert registrar.bindings == {}
    assert registration.state is RegistrationState.NOT_REGISTERING
    assert harness.states()[-1] is RegistrationState.NOT_REGISTERING


async def test_stop_waits_a_bounded_time_for_a_silent_carrier(
    registrar: FakeRegistrar, harness: Harness
) -> None:
    registration = harness.registration(make_trunk(registrar), unregister_timeout_s=0.3)
    registration.start()
    await harness.clock.next_sleep()
    registrar.silent = True
    started = asyncio.get_running_loop().time()
    await registration.stop()
    assert asyncio.get_running_loop().time() - started < 0.6
    assert registrar.requests[-1].headers.get("Expires") == "0"
    assert registration.state is RegistrationState.NOT_REGISTERING


async def test_stop_during_an_unanswered_register_still_unregisters(
    registrar: FakeRegistrar, harness: Harness
) -> None:
    registrar.silent = True
    registration = harness.registration(make_trunk(registrar), unregister_timeout_s=0.3)
    registration.start()
    await until(lambda: len(registrar.requests) >= 1)
    await registration.stop()  # the REGISTER might still arrive: withdraw it
    assert any(request.headers.get("Expires") == "0" for request in registrar.requests)


async def test_a_tenant_trunk_on_a_private_address_is_refused_by_the_outbound_policy(
    registrar: FakeRegistrar, harness: Harness
) -> None:
    strict = OutboundPolicy(allow_private=False)
    registration = harness.registration(make_trunk(registrar, scope="tenant"), strict)
    registration.start()
    await harness.clock.next_sleep()
    assert registration.state is RegistrationState.FAILED
    assert registration.status.reason.startswith("refused by outbound policy")
    assert registrar.requests == []
    await registration.stop()


async def test_a_trunk_without_username_fails_without_sending(
    registrar: FakeRegistrar, harness: Harness
) -> None:
    registration = harness.registration(make_trunk(registrar, username=None))
    registration.start()
    await until(lambda: registration.state is RegistrationState.FAILED)
    assert registration.status.reason == "no username configured"
    assert registrar.requests == []
    await registration.stop()


async def test_nothing_is_logged_with_the_password(
    registrar: FakeRegistrar, harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    registration = harness.registration(make_trunk(registrar, password="wrong-pw-42"))
    registration.start()
    await harness.clock.next_sleep()
    await registration.stop()
    assert "tenant=acme trunk=carrier registration registering -> failed" in caplog.text
    assert "wrong-pw-42" not in caplog.text


# --- the node's set of registrations ---------------------------------------------------


def node_config(*trunks: TrunkEntry) -> NodeConfig:
    return NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": "acme.vpbx.test",
            "city": "msk",
            "suspended": False,
            "users": [],
            "groups": [],
            "numbers": [],
            "trunks": [trunk.model_dump() for trunk in trunks],
        }
    ).with_version()


@pytest.fixture
async def manager(
    layer: TransactionLayer, clock: FakeClock
) -> AsyncIterator[tuple[TrunkRegistrations, RecordingSink]]:
    sink = RecordingSink()
    registrations = TrunkRegistrations(
        layer,
        tenant="acme",
        city="msk",
        contact=layer.transport.local_address,
        store=sink,
        outbound=ALLOW_PRIVATE,
        timings=RegistrationTimings(unregister_timeout_s=1.0),
        clock=clock.time,
        sleep=clock.sleep,
        jitter=lambda: JITTER,
    )
    yield registrations, sink
    await registrations.stop()


def registered(registrations: TrunkRegistrations, *trunk_ids: str) -> Callable[[], bool]:
    def check() -> bool:
        current = registrations.registrations
        return all(
            trunk_id in current and current[trunk_id].state is RegistrationState.REGISTERED
            for trunk_id in trunk_ids
        )

    return check


def unregisters(registrar: FakeRegistrar, call_id: str) -> list[SipRequest]:
    return [
        request
        for request in registrar.requests
        if request.call_id == call_id and request.headers.get("Expires") == "0"
    ]


async def test_the_manager_follows_the_config(
    registrar: FakeRegistrar,
    manager: tuple[TrunkRegistrations, RecordingSink],
) -> None:
    registrations, sink = manager
    registrar.users["other-user"] = "other-secret"
    first = make_trunk(registrar, id="first")
    silent = make_trunk(registrar, id="ip-auth", registers=False)
    registrations.start(node_config(first, silent))
    await registrations.settled()
    await until(registered(registrations, "first"))
    await until(lambda: len(sink.puts) == 2)
    assert sink.states("first") == [RegistrationState.REGISTERING, RegistrationState.REGISTERED]
    assert {(tenant, city) for tenant, _, city, _ in sink.puts} == {("acme", "msk")}
    assert set(registrations.registrations) == {"first"}
    original = registrations.registrations["first"]

    # A new trunk starts; an unchanged one (renamed only) keeps its registration.
    second = make_trunk(registrar, id="second", username="other-user", password="other-secret")
    registrations.update(node_config(first.model_copy(update={"name": "Renamed"}), second))
    await registrations.settled()
    await until(registered(registrations, "first", "second"))
    assert registrations.registrations["first"] is original

    # A changed expiry: unregister, then a new registration (a new Call-ID).
    changed = first.model_copy(update={"register_expires_s": 600})
    registrations.update(node_config(changed, second))
    await registrations.settled()
    await until(registered(registrations, "first"))
    replacement = registrations.registrations["first"]
    assert replacement is not original
    assert replacement.call_id != original.call_id
    assert len(unregisters(registrar, original.call_id)) == 1
    assert registrar.requests[-1].headers.get("Expires") == "600"

    # Register turned off for one, the other removed: both unregister; only the first
    # is written, as not-registering.
    second_call_id = registrations.registrations["second"].call_id
    puts_before = len(sink.puts)
    registrations.update(node_config(changed.model_copy(update={"registers": False})))
    await registrations.settled()
    assert registrations.registrations == {}
    assert len(unregisters(registrar, replacement.call_id)) == 1
    assert len(unregisters(registrar, second_call_id)) == 1
    await until(lambda: len(sink.puts) > puts_before)
    await asyncio.sleep(0.05)
    assert [(trunk, status.state) for _, trunk, _, status in sink.puts[puts_before:]] == [
        ("first", RegistrationState.NOT_REGISTERING)
    ]
    assert registrar.bindings == {}


async def test_the_manager_unregisters_on_stop_and_writes_nothing_then(
    registrar: FakeRegistrar,
    manager: tuple[TrunkRegistrations, RecordingSink],
) -> None:
    registrations, sink = manager
    registrations.start(node_config(make_trunk(registrar)))
    await until(registered(registrations, "carrier"))
    call_id = registrations.registrations["carrier"].call_id
    await until(lambda: len(sink.puts) == 2)

    await registrations.stop()

    assert len(unregisters(registrar, call_id)) == 1
    assert registrar.bindings == {}
    assert sink.states("carrier")[-1] is RegistrationState.REGISTERED


async def test_status_writes_that_fail_are_logged_and_retried_with_the_next_change(
    registrar: FakeRegistrar,
    manager: tuple[TrunkRegistrations, RecordingSink],
    caplog: pytest.LogCaptureFixture,
) -> None:
    registrations, sink = manager
    sink.failures = 100
    config = node_config(make_trunk(registrar))
    registrations.start(config)
    await until(registered(registrations, "carrier"))
    await until(lambda: "registration status registered not stored" in caplog.text)
    assert sink.puts == []

    sink.failures = 0
    registrations.update(config)  # any change: what could not be written is written now
    await registrations.settled()
    await until(lambda: len(sink.puts) == 1)
    assert sink.states("carrier") == [RegistrationState.REGISTERED]


def test_the_config_holder_tells_its_listeners() -> None:
    holder = ConfigHolder(node_config())
    seen: list[NodeConfig] = []

    def broken(config: NodeConfig) -> None:
        raise RuntimeError("listener bug")

    holder.listen(broken)
    holder.listen(seen.append)
    newer = node_config(
        TrunkEntry(id="t", name="T", host="192.0.2.1", registers=True, username="u")
    )
    holder.current = newer
    assert holder() is newer
    assert seen == [newer]


def test_challenge_parsing_matches_what_the_fake_registrar_sends() -> None:
    # Guards the fixture: the registrar's challenges parse with the client-side parser.
    nonces = NonceService(secrets.token_bytes(16))
    challenges = DigestAuthenticator(nonces, REALM).challenges()
    assert [DigestChallenge.parse(str(c)).algorithm for c in challenges] == [
        DigestAlgorithm.SHA256,
        DigestAlgorithm.MD5,
    ]
    assert NameAddr.parse(f"<sip:{USER}@127.0.0.1:5060>").uri == SipUri(
        host="127.0.0.1", port=5060, user=USER
    )
