"""The tenant registrar (RFC 3261 section 10) with digest authentication.

A device authenticates with its own SIP username (a user may have several
devices, each with its own credentials); its bindings are stored under its
user's extension, so a call to the extension rings every device. Old-style
configs, where the user entry carries the HA1s and the username is the
extension, work the same way.

An unknown username and a wrong password look the same from outside: both
get a challenge first and a 403 after credentials, so phones cannot be used
to enumerate extensions.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from email.utils import formatdate

from redis.exceptions import RedisError

from vpbx_common.nodeconfig import NodeConfig
from vpbx_common.sipauth import DigestAlgorithm

from ..overload import ShedLog, retry_after
from ..sip.digest import AuthOutcome, DigestAuthenticator, DigestCredentials, DigestParseError
from ..sip.headers import NameAddr
from ..sip.message import SipRequest, SipResponse, make_response
from ..sip.transaction import new_tag
from ..sip.uri import SipUri
from .bindings import Binding, BindingStore, ContactChange

logger = logging.getLogger(__name__)


class Authenticator:
    """Digest checks against the node config's HA1 values (realm = tenant SIP domain)."""

    def __init__(
        self,
        digest: DigestAuthenticator,
        config: Callable[[], NodeConfig],
        md5_only_agents: tuple[str, ...] = (),
    ) -> None:
        self.digest = digest
        self.config = config
        self.md5_only_agents = tuple(agent.lower() for agent in md5_only_agents)

    def _ha1(self, username: str, algorithm: DigestAlgorithm) -> str | None:
        credentials = self.config().credentials(username)
        if credentials is None:
            return None
        if algorithm is DigestAlgorithm.SHA256:
            return credentials.ha1_sha256
        return credentials.ha1_md5

    def check(
        self, request: SipRequest, header: str
    ) -> tuple[str | None, list[tuple[str, str]], int]:
        """(authenticated SIP username, challenge headers, status) for a request.

        On success the username is returned and the other values are unused;
        ``NodeConfig.extension_for`` gives the extension it belongs to.
        `header` is Authorization (registrar, 401) or Proxy-Authorization (calls, 407).
        """
        # The realm is the tenant's SIP domain, as the config of the moment says.
        self.digest.realm = self.config().sip_domain
        challenge_header = "WWW-Authenticate" if header == "Authorization" else "Proxy-Authenticate"
        status = 401 if header == "Authorization" else 407
        stale = False
        for value in request.headers.lines(header):
            try:
                credentials = DigestCredentials.parse(value)
            except DigestParseError as exc:
                logger.info("bad %s header: %s", header, exc.reason)
                return None, [], 400
            if credentials.realm != self.digest.realm:
                continue
            result = self.digest.verify(
                credentials, request.method, self._ha1, request_uri=credentials.uri
            )
            if result.outcome is AuthOutcome.OK:
                return result.username, [], 200
            if result.outcome is AuthOutcome.STALE:
                stale = True
                continue
            return None, [], 403
        agent = (request.header("User-Agent") or "").lower()
        md5_only = any(name in agent for name in self.md5_only_agents)
        challenges = self.digest.challenges(stale=stale, md5_only=md5_only)
        headers = [(challenge_header, str(c)) for c in challenges]
        return None, headers, status


class Registrar:
    def __init__(
        self,
        store: BindingStore,
        authenticator: Authenticator,
        config: Callable[[], NodeConfig],
        *,
        min_expires: int = 30,
        max_expires: int = 3600,
        default_expires: int = 3600,
        retry_after_s: int = 5,
    ) -> None:
        self.store = store
        self.auth = authenticator
        self.config = config
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.retry_after_s = retry_after_s
        self.shed_log = ShedLog(logger, "registrar")

    async def handle(self, request: SipRequest) -> SipResponse:
        config = self.config()
        to_uri = request.to.uri
        if not isinstance(to_uri, SipUri) or to_uri.user is None:
            return make_response(request, 404, to_tag=new_tag())
        address_of_record = to_uri.user
        username, challenge, status = self.auth.check(request, "Authorization")
        if username is None:
            return make_response(request, status, to_tag=new_tag(), extra=challenge)
        extension = config.extension_for(username)
        if extension is None or address_of_record not in (username, extension):
            # Credentials of one device cannot register another user's address.
            return make_response(request, 403, to_tag=new_tag())
        now = time.time()
        try:
            bindings = await self._apply(config.tenant, extension, request, now)
        except _IntervalTooBriefError:
            return make_response(
                request, 423, to_tag=new_tag(), extra=[("Min-Expires", str(self.min_expires))]
            )
        except ValueError as exc:
            return make_response(request, 400, str(exc)[:80], to_tag=new_tag())
        except RedisError as exc:
            # No Redis connection in time (a registration storm) or Redis down: the phone
            # must come back later, not give up; the jitter spreads the comebacks.
            self.shed_log.shed(f"tenant={config.tenant} ext={extension}: {exc}")
            return make_response(
                request,
                503,
                "Registrar Busy",
                to_tag=new_tag(),
                extra=[("Retry-After", retry_after(self.retry_after_s))],
            )
        extra = [("Contact", f"<{b.contact}>;expires={b.remaining(now)}") for b in bindings]
        extra.append(("Date", formatdate(now, usegmt=True)))
        logger.info(
            "tenant=%s city=%s ext=%s registered %d binding(s) (device %s)",
            config.tenant,
            config.city,
            extension,
            len(bindings),
            username,
        )
        return make_response(request, 200, to_tag=new_tag(), extra=extra)

    async def _apply(
        self, tenant: str, extension: str, request: SipRequest, now: float
    ) -> list[Binding]:
        """Check every contact first (RFC 3261 10.3 step 6), then store them in one go."""
        header_expires = request.headers.get("Expires")
        raw_contacts = request.headers.values("Contact")
        if any(value.strip() == "*" for value in raw_contacts):
            if len(raw_contacts) != 1 or (header_expires or "").strip() != "0":
                raise ValueError("Contact: * needs Expires: 0 and no other contact")
            await self.store.remove_all(tenant, extension)
            return []
        path = tuple(request.headers.values("Path"))
        changes: list[ContactChange] = []
        for value in raw_contacts:
            contact = NameAddr.parse(value)
            expires = self._expires_of(contact, header_expires)
            key = str(contact.uri)
            if expires == 0:
                changes.append(ContactChange(key, None))
                continue
            if expires < self.min_expires:
                raise _IntervalTooBriefError
            binding = Binding(
                tenant=tenant,
                extension=extension,
                contact=key,
                path=path,
                expires_at=now + min(expires, self.max_expires),
                call_id=request.call_id,
                cseq=request.cseq.seq,
                user_agent=request.header("User-Agent") or "",
                instance=contact.param("+sip.instance") or "",
            )
            changes.append(ContactChange(key, binding))
        return await self.store.update(
            tenant,
            extension,
            call_id=request.call_id,
            cseq=request.cseq.seq,
            changes=changes,
            now=now,
        )

    def _expires_of(self, contact: NameAddr, header_expires: str | None) -> int:
        value = contact.param("expires")
        if value is None:
            value = header_expires
        if value is None:
            return self.default_expires
        value = value.strip()
        if not value.isdigit():
            raise ValueError(f"invalid expires {value!r}")
        return int(value)


class _IntervalTooBriefError(Exception):
    pass
