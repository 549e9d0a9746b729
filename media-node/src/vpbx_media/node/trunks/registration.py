"""RFC 3261 section 10 client registration of carrier trunks, with digest authentication.

A carrier that sends a trunk's inbound calls to whoever registered it needs the node
registered: ``TrunkRegistration`` keeps one binding for one trunk (AOR
``sip:USERNAME@HOST``, Contact ``<sip:USERNAME@NODE_HOST:NODE_PORT>``, the node's own
SIP address), and ``TrunkRegistrations`` keeps one registration per trunk of the
node's config with ``registers`` on, writing each one's status to Redis
(``vpbx_common.trunks.TrunkStatusStore``) where the control API reads it.

The choices, in numbers (``RegistrationTimings``):

- One Call-ID and From tag for the life of a registration, CSeq + 1 per REGISTER
  (RFC 3261 10.2.4), so the carrier sees refreshes of one binding, not new ones.
- Digest (RFC 7616/8760, qop=auth, MD5 or SHA-256, SHA-256 preferred): a 401/407 is
  answered once. Later REGISTERs (refreshes, the unregister) carry credentials for the
  last challenge right away, ``nc`` counting up per nonce; a carrier that expired that
  nonce challenges again and is answered again. A second challenge right after
  credentials built from a fresh challenge, not marked ``stale=true``, means the
  password is wrong: the registration fails with "401 Unauthorized" instead of looping.
- 423 Interval Too Brief: ask again at once with the Min-Expires given (and keep it
  for the refreshes); at most twice per attempt.
- The lifetime granted is the ``expires`` of our Contact in the 200 (RFC 3261 10.2.4),
  else its Expires header, else what was asked for. The refresh is sent after
  ``refresh_delay(granted)``: 80% of it, but at least 32 s (a whole UDP transaction
  timeout, 64*T1) before the binding lapses, and half of it for lifetimes of 64 s or
  less. 300 s -> 240 s, 120 s -> 88 s, 60 s -> 30 s, 3600 s -> 2880 s.
- Failures (a refusal, no answer, an unresolvable host) are retried after 5 s,
  doubling up to 300 s, each delay shortened by up to 20% at random so that nodes
  restarted together do not retry together; a Retry-After from the carrier is honoured
  up to the same ceiling. A refusal of a refresh fails the registration at once (its
  status says why) even if the old binding has some time left.
- ``stop()`` removes the binding (Expires: 0 for our own Contact only, never ``*``: the
  same AOR is registered by the tenant's nodes in other cities and by a rolling
  update's new pod) and waits for the answer at most 5 s; a carrier that does not
  answer lets the binding lapse.

States (``RegistrationState``): not-registering -> registering -> registered; a failed
attempt -> failed (``reason``), retried from there; stop -> not-registering. Every
change is logged once by ``_set_state`` and handed to ``on_status``; a refresh that
extends the binding is handed on too (its ``expires_at_ms`` moved).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol
from urllib.parse import quote

import redis.asyncio as redis

from vpbx_common.nodeconfig import NodeConfig
from vpbx_common.nodeconfig.model import TrunkEntry
from vpbx_common.outbound import OutboundPolicy
from vpbx_common.trunks import RegistrationState, TrunkRegistrationStatus, TrunkTransport

from ...sip.digest import (
    DigestChallenge,
    DigestParseError,
    build_credentials,
    preferred_challenge,
)
from ...sip.errors import SipParseError
from ...sip.headers import CSeq, NameAddr, Via
from ...sip.message import Headers, SipRequest, SipResponse, reason_phrase
from ...sip.transaction import ClientTransaction, new_call_id, new_tag
from ...sip.transport import Address, Flow, TransportKind
from ...sip.uri import SipUri
from .destination import TrunkUnreachableError, trunk_destination

logger = logging.getLogger(__name__)

USER_AGENT = "vpbx"
# What a SIP URI's user part may carry unescaped (RFC 3261 25.1: unreserved, user-unreserved).
_USER_SAFE = "-_.!~*'()&=+$,;?/"
_LEADING_DIGITS = re.compile(r"^\s*(\d{1,10})")
_UNPRINTABLE = re.compile(r"[\x00-\x1f\x7f]")


class RequestSender(Protocol):
    """What a registration needs of the transaction layer (``TransactionLayer`` is one)."""

    def send_request(self, request: SipRequest, flow: Flow) -> ClientTransaction: ...

    def via_for(self, transport: TransportKind) -> Via: ...


class StatusSink(Protocol):
    """Where statuses go (``vpbx_common.trunks.TrunkStatusStore`` is one)."""

    async def put(
        self, tenant: str, trunk_id: str, city: str, status: TrunkRegistrationStatus
    ) -> None: ...


Resolver = Callable[[TrunkEntry], Awaitable[Flow]]
Sleep = Callable[[float], Awaitable[None]]
StatusCallback = Callable[[TrunkRegistrationStatus], None]


@dataclass(frozen=True, slots=True)
class RegistrationTimings:
    backoff_first_s: float = 5.0
    backoff_max_s: float = 300.0
    jitter: float = 0.2  # each retry delay is shortened by up to this fraction
    unregister_timeout_s: float = 5.0
    max_interval_retries: int = 2  # 423s answered per attempt
    max_auth_rounds: int = 4  # challenges answered per attempt (stale nonces, proxy + registrar)


def refresh_delay(granted_s: float) -> float:
    """Seconds after a granted registration to refresh it (see the module docstring)."""
    if granted_s <= 64:
        return granted_s / 2
    return min(granted_s * 0.8, granted_s - 32)


def backoff_delay(
    failures: int, timings: RegistrationTimings, jitter: float, retry_after_s: float | None
) -> float:
    """Delay before retry number ``failures`` (1, 2, ...); ``jitter`` in [0, 1)."""
    doubling = float(2 ** min(failures - 1, 30))
    base = min(timings.backoff_first_s * doubling, timings.backoff_max_s)
    delay = base * (1 - timings.jitter * jitter)
    if retry_after_s is not None:
        delay = max(delay, min(retry_after_s, timings.backoff_max_s))
    return delay


def registration_key(trunk: TrunkEntry) -> tuple[object, ...]:
    """What a registration is made of: a change to any of these restarts it."""
    return (
        trunk.scope,
        trunk.host.lower(),
        trunk.port,
        trunk.transport,
        trunk.username,
        trunk.password,
        trunk.register_expires_s,
    )


@dataclass(frozen=True, slots=True)
class _Granted:
    expires_s: int


@dataclass(frozen=True, slots=True)
class _Refused:
    reason: str
    retry_after_s: float | None = None


@dataclass(slots=True)
class _Answer:
    """The challenge our credentials answer, and how often its nonce was used."""

    challenge: DigestChallenge
    nc: int = 0


_AuthHeader = Literal["Authorization", "Proxy-Authorization"]


def _seconds(value: str | None) -> int | None:
    if value is None:
        return None
    match = _LEADING_DIGITS.match(value)
    return None if match is None else int(match.group(1))


def _describe(response: SipResponse) -> str:
    """``403 Forbidden``: the carrier's status and phrase, made safe to store and show."""
    phrase = _UNPRINTABLE.sub(" ", response.reason).strip()[:80] or reason_phrase(response.status)
    return f"{response.status} {phrase}"


def _uri_host(host: str) -> str:
    host = host.strip("[]")
    return f"[{host}]" if ":" in host else host


class TrunkRegistration:
    """One trunk's binding at its carrier: registered, refreshed, retried, removed on stop."""

    def __init__(
        self,
        trunk: TrunkEntry,
        *,
        sender: RequestSender,
        tenant: str,
        contact: Address,
        on_status: StatusCallback,
        resolve: Resolver,
        timings: RegistrationTimings | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.trunk = trunk
        self.key = registration_key(trunk)
        self.tenant = tenant
        self._sender = sender
        self._on_status = on_status
        self._resolve = resolve
        self._timings = timings or RegistrationTimings()
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self.state = RegistrationState.NOT_REGISTERING
        self.status = TrunkRegistrationStatus(state=self.state, name=trunk.name)
        self.call_id = new_call_id(contact.host.strip("[]"))
        self.from_tag = new_tag()
        self.expires_s = trunk.register_expires_s  # raised by a 423's Min-Expires
        self._cseq = 0
        self._answers: dict[_AuthHeader, _Answer] = {}
        # The carrier holds our binding (a 2xx granted one, none withdrew it since), or may
        # (a REGISTER asking for one is unanswered yet): stop() then unregisters.
        self._bound = False
        self._in_flight = False
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        user = quote(trunk.username or "", safe=_USER_SAFE)
        host = _uri_host(trunk.host)
        tcp = trunk.transport is TrunkTransport.TCP
        params: tuple[tuple[str, str | None], ...] = (("transport", "tcp"),) if tcp else ()
        self.aor = SipUri(host=host, user=user)
        self.request_uri = SipUri(host=host, port=trunk.port, params=params)
        self.contact_uri = SipUri(
            host=_uri_host(contact.host), port=contact.port, user=user, params=params
        )

    # --- state -------------------------------------------------------------------------

    def _set_state(
        self,
        state: RegistrationState,
        reason: str = "",
        *,
        expires_at_ms: int = 0,
        note: str = "",
    ) -> None:
        previous = self.status
        if (state, reason, expires_at_ms) == (
            previous.state,
            previous.reason,
            previous.expires_at_ms,
        ):
            return
        self.state = state
        self.status = TrunkRegistrationStatus(
            state=state,
            reason=reason,
            expires_at_ms=expires_at_ms,
            updated_at_ms=int(self._clock() * 1000),
            name=self.trunk.name,
        )
        why = reason or note
        if state is previous.state and state is RegistrationState.REGISTERED:
            logger.debug(
                "tenant=%s trunk=%s registration refreshed (%s)", self.tenant, self.trunk.id, why
            )
        else:
            level = logging.WARNING if state is RegistrationState.FAILED else logging.INFO
            logger.log(
                level,
                "tenant=%s trunk=%s registration %s -> %s (%s)",
                self.tenant,
                self.trunk.id,
                previous.state.value,
                state.value,
                why,
            )
        self._on_status(self.status)

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        if self._task is not None or self._stopped:
            return
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"trunk-register-{self.trunk.id}"
        )
        self._task.add_done_callback(self._on_task_done)

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            logger.error(
                "tenant=%s trunk=%s registration stopped by an error",
                self.tenant,
                self.trunk.id,
                exc_info=error,
            )
            self._set_state(RegistrationState.FAILED, "internal error")

    async def stop(self) -> None:
        """Stop refreshing and remove the binding (bounded wait); once only, no restart."""
        if self._stopped:
            return
        self._stopped = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            # asyncio.wait never raises the task's CancelledError into this coroutine;
            # an unexpected error was logged by _on_task_done.
            await asyncio.wait([task])
        if self._bound or self._in_flight:
            await self._unregister()
        self._set_state(RegistrationState.NOT_REGISTERING, note="stopped")

    async def _unregister(self) -> None:
        timeout = self._timings.unregister_timeout_s
        try:
            outcome = await asyncio.wait_for(self._register(0), timeout)
        except TimeoutError:
            logger.info(
                "tenant=%s trunk=%s no answer to the unregister within %.0f s; "
                "the binding lapses on its own",
                self.tenant,
                self.trunk.id,
                timeout,
            )
            return
        if isinstance(outcome, _Refused):
            logger.info(
                "tenant=%s trunk=%s unregister refused (%s); the binding lapses on its own",
                self.tenant,
                self.trunk.id,
                outcome.reason,
            )
        else:
            logger.info("tenant=%s trunk=%s unregistered", self.tenant, self.trunk.id)

    def _config_problem(self) -> str | None:
        if not self.trunk.username:
            return "no username configured"
        if self.trunk.register_expires_s < 1:
            return "register_expires_s must be at least 1"
        return None

    async def _run(self) -> None:
        problem = self._config_problem()
        if problem is not None:
            # Nothing to retry: a config change brings a new registration.
            self._set_state(RegistrationState.FAILED, problem)
            return
        self._set_state(RegistrationState.REGISTERING, note=f"to {self.request_uri}")
        failures = 0
        while True:
            outcome = await self._register(self.expires_s)
            if isinstance(outcome, _Granted):
                failures = 0
                expires_at_ms = int((self._clock() + outcome.expires_s) * 1000)
                self._set_state(
                    RegistrationState.REGISTERED,
                    expires_at_ms=expires_at_ms,
                    note=f"for {outcome.expires_s} s",
                )
                await self._sleep(refresh_delay(outcome.expires_s))
                continue
            failures += 1
            delay = backoff_delay(failures, self._timings, self._jitter(), outcome.retry_after_s)
            self._set_state(RegistrationState.FAILED, outcome.reason)
            logger.info(
                "tenant=%s trunk=%s REGISTER again in %.1f s (failure %d: %s)",
                self.tenant,
                self.trunk.id,
                delay,
                failures,
                outcome.reason,
            )
            await self._sleep(delay)

    # --- one attempt -------------------------------------------------------------------

    async def _register(self, expires: int) -> _Granted | _Refused:
        """One REGISTER asking for ``expires`` s, through its challenges and 423s."""
        try:
            flow = await self._resolve(self.trunk)
        except TrunkUnreachableError as exc:
            return _Refused(str(exc))
        fresh: set[_AuthHeader] = set()  # answered with a challenge of this attempt
        auth_rounds = interval_rounds = 0
        while True:
            response, from_peer = await self._send(flow, expires)
            status = response.status
            if not from_peer:
                if status == 408:
                    return _Refused("no answer")
                return _Refused(f"cannot reach {flow.remote}")
            if status in (401, 407):
                auth_rounds += 1
                refused = self._take_challenge(response, fresh, auth_rounds)
                if refused is not None:
                    return refused
                continue
            if status == 423 and expires > 0:
                interval_rounds += 1
                minimum = _seconds(response.headers.get("Min-Expires"))
                if (
                    minimum is None
                    or minimum <= expires
                    or interval_rounds > self._timings.max_interval_retries
                ):
                    return _Refused(_describe(response))
                logger.info(
                    "tenant=%s trunk=%s registrar wants at least %d s (asked %d s)",
                    self.tenant,
                    self.trunk.id,
                    minimum,
                    expires,
                )
                expires = self.expires_s = minimum
                continue
            if 200 <= status < 300:
                if expires == 0:
                    self._bound = False
                    return _Granted(0)
                granted = self._granted(response, expires)
                if granted <= 0:
                    return _Refused(f"{_describe(response)} without our binding")
                self._bound = True
                return _Granted(granted)
            return _Refused(_describe(response), _seconds(response.headers.get("Retry-After")))

    async def _send(self, flow: Flow, expires: int) -> tuple[SipResponse, bool]:
        """Send one REGISTER; its final response and whether the carrier sent it."""
        request = self._request(expires, flow.transport)
        self._in_flight = expires > 0
        transaction = self._sender.send_request(request, flow)
        # Shielded: cancelling this wait (stop) must not cancel the transaction's future.
        # Left set when cancelled: the unanswered REGISTER may still create a binding.
        response = await asyncio.shield(transaction.final)
        self._in_flight = False
        last = transaction.last_response
        # A 408 (timer F) or 503 (transport error) made up locally is not in last_response.
        return response, last is not None and last.status >= 200

    def _request(self, expires: int, transport: TransportKind) -> SipRequest:
        self._cseq += 1
        headers = Headers.of(
            [
                ("Via", str(self._sender.via_for(transport))),
                ("Max-Forwards", "70"),
                ("From", str(NameAddr(self.aor, params=(("tag", self.from_tag),)))),
                ("To", str(NameAddr(self.aor))),
                ("Call-ID", self.call_id),
                ("CSeq", str(CSeq(self._cseq, "REGISTER"))),
                ("Contact", str(NameAddr(self.contact_uri))),
                ("Expires", str(expires)),
                ("User-Agent", USER_AGENT),
            ]
        )
        for header, answer in self._answers.items():
            answer.nc += 1
            credentials = build_credentials(
                answer.challenge,
                self.trunk.username or "",
                self.trunk.password or "",
                "REGISTER",
                str(self.request_uri),
                nc=answer.nc,
            )
            headers = headers.add(header, str(credentials))
        return SipRequest("REGISTER", self.request_uri, headers)

    def _take_challenge(
        self, response: SipResponse, fresh: set[_AuthHeader], rounds: int
    ) -> _Refused | None:
        """Remember the challenge to answer next, or say why the attempt failed."""
        proxy = response.status == 407
        header: _AuthHeader = "Proxy-Authorization" if proxy else "Authorization"
        usable: list[DigestChallenge] = []
        for value in response.headers.lines("Proxy-Authenticate" if proxy else "WWW-Authenticate"):
            try:
                challenge = DigestChallenge.parse(value)
            except DigestParseError as exc:
                logger.debug(
                    "tenant=%s trunk=%s challenge skipped: %s", self.tenant, self.trunk.id, exc
                )
                continue
            if not challenge.qop or "auth" in challenge.qop:
                usable.append(challenge)
        if not usable:
            return _Refused(f"{_describe(response)} (no digest challenge this node can answer)")
        if not self.trunk.password:
            return _Refused(f"{_describe(response)} (no password configured)")
        challenge = preferred_challenge(usable)
        if header in fresh and not challenge.stale:
            # Credentials made for a challenge of this very attempt were refused.
            self._answers.pop(header, None)
            return _Refused(_describe(response))
        if rounds > self._timings.max_auth_rounds:
            return _Refused(f"{_describe(response)} (challenged {rounds} times)")
        self._answers[header] = _Answer(challenge)
        fresh.add(header)
        return None

    def _granted(self, response: SipResponse, asked: int) -> int:
        """The lifetime the registrar gave our Contact (RFC 3261 10.2.4)."""
        for value in response.headers.values("Contact"):
            try:
                contact = NameAddr.parse(value)
            except SipParseError:
                continue
            if isinstance(contact.uri, SipUri) and self._is_our_contact(contact.uri):
                seconds = _seconds(contact.param("expires"))
                if seconds is not None:
                    return seconds
        seconds = _seconds(response.headers.get("Expires"))
        return asked if seconds is None else seconds

    def _is_our_contact(self, uri: SipUri) -> bool:
        ours = self.contact_uri
        return (
            (uri.user_unescaped or "") == (ours.user_unescaped or "")
            and uri.host.strip("[]").lower() == ours.host.strip("[]").lower()
            and (uri.port or 5060) == (ours.port or 5060)
        )


class TrunkRegistrations:
    """One ``TrunkRegistration`` per trunk with ``registers`` on, kept in step with the config.

    ``start(config)`` and every ``update(config)`` reconcile: new trunks start registering,
    removed ones (and ones with ``registers`` off) unregister, and ones whose host, port,
    transport, username, password or expires changed unregister and register anew. The
    latest config wins; reconciling runs in the manager's own task, one at a time.

    Statuses go to ``store`` (Redis) in order, per trunk only the latest; a write that
    fails is logged and retried with the next change. A trunk that stays in the config
    with ``registers`` off is written as not-registering; a removed trunk is not written
    (the control API forgets its statuses). On ``stop()`` the registrations unregister
    but nothing is written: in a rolling update the new pod of the same city already
    reported its own registration, and a stopped node's entry lapses by expires_at_ms.
    """

    def __init__(
        self,
        sender: RequestSender,
        *,
        tenant: str,
        city: str,
        contact: Address,
        store: StatusSink | None,
        outbound: OutboundPolicy,
        timings: RegistrationTimings | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
        resolve: Resolver | None = None,
    ) -> None:
        self.tenant = tenant
        self.city = city
        self.contact = contact
        self._sender = sender
        self._store = store
        self._timings = timings
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._resolve: Resolver = resolve or (lambda trunk: trunk_destination(trunk, outbound))
        self._registrations: dict[str, TrunkRegistration] = {}
        self._desired: NodeConfig | None = None
        self._wanted = asyncio.Event()
        self._settled = asyncio.Event()
        self._settled.set()
        self._unwritten: dict[str, TrunkRegistrationStatus] = {}
        self._write_wanted = asyncio.Event()
        self._retiring: set[asyncio.Task[None]] = set()
        self._runner: asyncio.Task[None] | None = None
        self._stopping = False

    @property
    def registrations(self) -> Mapping[str, TrunkRegistration]:
        return self._registrations

    def start(self, config: NodeConfig) -> None:
        if self._runner is None:
            self._stopping = False
            self._runner = asyncio.get_running_loop().create_task(
                self._run(), name="trunk-registrations"
            )
        self.update(config)

    def update(self, config: NodeConfig) -> None:
        """Reconcile with ``config`` soon (call on every config change)."""
        self._desired = config
        self._settled.clear()
        self._wanted.set()

    async def settled(self) -> None:
        """Wait until the latest config given has been reconciled."""
        await self._settled.wait()

    async def stop(self) -> None:
        self._stopping = True
        runner, self._runner = self._runner, None
        if runner is not None and not runner.done():
            runner.cancel()
            await asyncio.wait([runner])
        registrations = list(self._registrations.values())
        self._registrations.clear()
        pending = list(self._retiring)
        pending += [asyncio.get_running_loop().create_task(r.stop()) for r in registrations]
        if pending:
            await asyncio.wait(pending)
        self._report_errors(pending)
        self._settled.set()

    async def _run(self) -> None:
        async with asyncio.TaskGroup() as group:
            group.create_task(self._reconcile_loop())
            group.create_task(self._write_loop())

    async def _reconcile_loop(self) -> None:
        while True:
            await self._wanted.wait()
            self._wanted.clear()
            config = self._desired
            if config is not None:
                try:
                    await self._reconcile(config)
                except Exception:
                    # The registrations already running go on; the next change tries again.
                    logger.exception("tenant=%s trunk registrations not reconciled", self.tenant)
            if not self._wanted.is_set():
                self._settled.set()

    async def _reconcile(self, config: NodeConfig) -> None:
        wanted = {trunk.id: trunk for trunk in config.trunks if trunk.registers}
        listed = {trunk.id for trunk in config.trunks}
        retiring: list[TrunkRegistration] = []
        turned_off: list[str] = []
        for trunk_id, registration in list(self._registrations.items()):
            trunk = wanted.get(trunk_id)
            if trunk is not None and registration_key(trunk) == registration.key:
                continue
            if trunk is not None:
                why = "changed"
            elif trunk_id in listed:
                why = "register turned off"
                turned_off.append(trunk_id)
            else:
                why = "removed"
            logger.info("tenant=%s trunk=%s %s: unregistering", self.tenant, trunk_id, why)
            del self._registrations[trunk_id]
            retiring.append(registration)
        if retiring:
            await self._retire(retiring)
        for trunk_id in turned_off:
            self._queue_write(
                trunk_id,
                TrunkRegistrationStatus(
                    state=RegistrationState.NOT_REGISTERING,
                    updated_at_ms=int(self._clock() * 1000),
                ),
            )
        for trunk_id, trunk in wanted.items():
            if trunk_id not in self._registrations:
                registration = self._new_registration(trunk)
                self._registrations[trunk_id] = registration
                registration.start()
        if self._unwritten:
            self._write_wanted.set()  # retry what failed before

    async def _retire(self, registrations: list[TrunkRegistration]) -> None:
        """Unregister (bounded) before a changed trunk registers anew: an unregister
        arriving after the new REGISTER would remove the new binding."""
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(registration.stop()) for registration in registrations]
        self._retiring.update(tasks)
        try:
            await asyncio.wait(tasks)
        finally:
            self._retiring.difference_update(task for task in tasks if task.done())
        self._report_errors(tasks)

    def _report_errors(self, tasks: list[asyncio.Task[None]]) -> None:
        for task in tasks:
            if task.done() and not task.cancelled() and task.exception() is not None:
                logger.error(
                    "tenant=%s trunk registration did not stop cleanly",
                    self.tenant,
                    exc_info=task.exception(),
                )

    def _new_registration(self, trunk: TrunkEntry) -> TrunkRegistration:
        registration: TrunkRegistration

        def on_status(status: TrunkRegistrationStatus) -> None:
            if self._stopping or self._registrations.get(trunk.id) is not registration:
                return  # a registration being replaced or stopped: its successor reports
            self._queue_write(trunk.id, status)

        registration = TrunkRegistration(
            trunk,
            sender=self._sender,
            tenant=self.tenant,
            contact=self.contact,
            on_status=on_status,
            resolve=self._resolve,
            timings=self._timings,
            clock=self._clock,
            sleep=self._sleep,
            jitter=self._jitter,
        )
        return registration

    def _queue_write(self, trunk_id: str, status: TrunkRegistrationStatus) -> None:
        if self._store is None:
            return
        self._unwritten[trunk_id] = status
        self._write_wanted.set()

    async def _write_loop(self) -> None:
        while True:
            await self._write_wanted.wait()
            self._write_wanted.clear()
            batch, self._unwritten = self._unwritten, {}
            for trunk_id, status in batch.items():
                await self._write(trunk_id, status)

    async def _write(self, trunk_id: str, status: TrunkRegistrationStatus) -> None:
        if self._store is None:
            return
        try:
            await self._store.put(self.tenant, trunk_id, self.city, status)
        except (redis.RedisError, OSError) as exc:
            logger.warning(
                "tenant=%s trunk=%s registration status %s not stored "
                "(retried with the next change): %s",
                self.tenant,
                trunk_id,
                status.state.value,
                exc,
            )
            self._unwritten.setdefault(trunk_id, status)  # unless a newer one is waiting
