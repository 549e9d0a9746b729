"""SIP digest authentication (RFC 3261 section 22, RFC 7616 with qop=auth, RFC 8760).

The server side offers SHA-256 and MD5 challenges carrying a stateless nonce
(`NonceService`) and verifies `Authorization`/`Proxy-Authorization` values
against HA1 values (`DigestAuthenticator`). The client side (`build_credentials`)
answers a challenge, e.g. when the node registers towards a carrier.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from vpbx_common.sipauth import DigestAlgorithm, digest_hash, ha1

from .errors import SipParseError
from .headers import quote_string

__all__ = [
    "AuthOutcome",
    "AuthResult",
    "DigestAlgorithm",
    "DigestAuthenticator",
    "DigestChallenge",
    "DigestCredentials",
    "DigestParseError",
    "NonceService",
    "NonceState",
    "build_credentials",
    "digest_hash",
    "digest_response",
    "ha1",
    "preferred_challenge",
]

logger = logging.getLogger(__name__)

_FOLD = re.compile(r"\r?\n[ \t]+")
_NAME = re.compile(r"[A-Za-z0-9_.!%*+`'~-]+")
# Unquoted values are read leniently (anything up to a comma or whitespace):
# phones send nonces and URIs unquoted more often than the grammar allows.
_BARE_VALUE = re.compile(r'[^\s,"]+')
_NC = re.compile(r"[0-9A-Fa-f]{8}")
_LWS = " \t"


class DigestParseError(SipParseError):
    """An authentication header value is malformed; the request deserves a 400."""


def _parse_params(text: str, header: str) -> dict[str, str]:
    """Split `Digest k=v, k="v"` into lower-cased names and unescaped values."""
    text = _FOLD.sub(" ", text).strip(_LWS)
    if "\r" in text or "\n" in text:
        raise DigestParseError(f"{header}: line break without continuation whitespace")
    scheme = _NAME.match(text)
    rest = text[scheme.end() :] if scheme else text
    if scheme is None or scheme.group().lower() != "digest" or rest[:1] not in ("", " ", "\t"):
        raise DigestParseError(f"{header}: expected the Digest scheme, got {text[:20]!r}")
    params: dict[str, str] = {}
    pos, end = 0, len(rest)
    while True:
        while pos < end and rest[pos] in _LWS + ",":
            pos += 1
        if pos >= end:
            return params
        match = _NAME.match(rest, pos)
        if match is None:
            raise DigestParseError(f"{header}: expected a parameter name at {rest[pos:]!r}")
        name = match.group().lower()
        pos = match.end()
        while pos < end and rest[pos] in _LWS:
            pos += 1
        if pos >= end or rest[pos] != "=":
            raise DigestParseError(f"{header}: parameter {name!r} has no '=value'")
        pos += 1
        while pos < end and rest[pos] in _LWS:
            pos += 1
        if pos < end and rest[pos] == '"':
            value, pos = _read_quoted(rest, pos + 1, header, name)
        else:
            bare = _BARE_VALUE.match(rest, pos)
            if bare is None:
                raise DigestParseError(f"{header}: parameter {name!r} has an empty value")
            value, pos = bare.group(), bare.end()
        if name in params:
            raise DigestParseError(f"{header}: parameter {name!r} appears twice")
        params[name] = value
        while pos < end and rest[pos] in _LWS:
            pos += 1
        if pos < end and rest[pos] != ",":
            raise DigestParseError(f"{header}: expected ',' after {name!r}, got {rest[pos:]!r}")


def _read_quoted(text: str, pos: int, header: str, name: str) -> tuple[str, int]:
    out: list[str] = []
    while pos < len(text):
        char = text[pos]
        if char == '"':
            return "".join(out), pos + 1
        if char == "\\":
            pos += 1
            if pos >= len(text):
                break
            char = text[pos]
        out.append(char)
        pos += 1
    raise DigestParseError(f"{header}: unterminated quoted value of {name!r}")


def _require(params: dict[str, str], name: str, header: str) -> str:
    value = params.get(name)
    if value is None:
        raise DigestParseError(f"{header}: required parameter {name!r} is missing")
    return value


def _algorithm(params: dict[str, str], header: str) -> DigestAlgorithm:
    # RFC 7616 section 3.3: an absent algorithm means MD5.
    text = params.get("algorithm", "MD5")
    for algorithm in DigestAlgorithm:
        if algorithm.value.lower() == text.lower():
            return algorithm
    raise DigestParseError(f"{header}: unsupported algorithm {text!r}")


@dataclass(frozen=True, slots=True)
class DigestChallenge:
    """The value of one `WWW-Authenticate`/`Proxy-Authenticate` header."""

    realm: str
    nonce: str
    algorithm: DigestAlgorithm = DigestAlgorithm.MD5
    qop: tuple[str, ...] = ("auth",)
    opaque: str | None = None
    stale: bool = False

    @classmethod
    def parse(cls, text: str) -> DigestChallenge:
        header = "digest challenge"
        params = _parse_params(text, header)
        qop_text = params.get("qop")
        qop = tuple(o.strip() for o in qop_text.split(",") if o.strip()) if qop_text else ()
        return cls(
            realm=_require(params, "realm", header),
            nonce=_require(params, "nonce", header),
            algorithm=_algorithm(params, header),
            qop=qop,
            opaque=params.get("opaque"),
            stale=params.get("stale", "false").lower() == "true",
        )

    def __str__(self) -> str:
        parts = [f"realm={quote_string(self.realm)}"]
        if self.qop:
            parts.append(f"qop={quote_string(', '.join(self.qop))}")
        parts += [f"algorithm={self.algorithm.value}", f"nonce={quote_string(self.nonce)}"]
        if self.opaque is not None:
            parts.append(f"opaque={quote_string(self.opaque)}")
        if self.stale:
            parts.append("stale=true")
        return "Digest " + ", ".join(parts)


@dataclass(frozen=True, slots=True)
class DigestCredentials:
    """The value of an `Authorization`/`Proxy-Authorization` header.

    `qop`, `cnonce` and `nc` are all set (qop=auth) or all None (RFC 2069 style).
    """

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: DigestAlgorithm = DigestAlgorithm.MD5
    cnonce: str | None = None
    opaque: str | None = None
    qop: str | None = None
    nc: int | None = None

    def __post_init__(self) -> None:
        if (self.qop is None) != (self.cnonce is None) or (self.qop is None) != (self.nc is None):
            raise ValueError("qop, cnonce and nc must be given together or not at all")

    @classmethod
    def parse(cls, text: str) -> DigestCredentials:
        header = "digest credentials"
        params = _parse_params(text, header)
        qop = params.get("qop")
        cnonce = params.get("cnonce")
        nc_text = params.get("nc")
        if qop is not None and (cnonce is None or nc_text is None):
            raise DigestParseError(f"{header}: qop={qop} requires both cnonce and nc")
        if qop is None and (cnonce is not None or nc_text is not None):
            raise DigestParseError(f"{header}: cnonce and nc are only allowed with qop")
        if nc_text is not None and not _NC.fullmatch(nc_text):
            raise DigestParseError(f"{header}: nc {nc_text!r} is not 8 hex digits")
        return cls(
            username=_require(params, "username", header),
            realm=_require(params, "realm", header),
            nonce=_require(params, "nonce", header),
            uri=_require(params, "uri", header),
            response=_require(params, "response", header),
            algorithm=_algorithm(params, header),
            cnonce=cnonce,
            opaque=params.get("opaque"),
            qop=qop,
            nc=None if nc_text is None else int(nc_text, 16),
        )

    def __str__(self) -> str:
        parts = [
            f"username={quote_string(self.username)}",
            f"realm={quote_string(self.realm)}",
            f"nonce={quote_string(self.nonce)}",
            f"uri={quote_string(self.uri)}",
            f"response={quote_string(self.response)}",
            f"algorithm={self.algorithm.value}",
        ]
        if self.qop is not None:
            parts += [
                f"qop={self.qop}",
                f"nc={self.nc or 0:08x}",
                f"cnonce={quote_string(self.cnonce or '')}",
            ]
        if self.opaque is not None:
            parts.append(f"opaque={quote_string(self.opaque)}")
        return "Digest " + ", ".join(parts)


def digest_response(
    algorithm: DigestAlgorithm,
    ha1_hex: str,
    nonce: str,
    method: str,
    uri: str,
    qop: str | None = None,
    nc: int | None = None,
    cnonce: str | None = None,
) -> str:
    """The `response` value, RFC 7616 section 3.4.1 (qop=auth) or RFC 2069 (no qop)."""
    ha2 = digest_hash(algorithm, f"{method}:{uri}")
    if qop is None:
        return digest_hash(algorithm, f"{ha1_hex}:{nonce}:{ha2}")
    return digest_hash(algorithm, f"{ha1_hex}:{nonce}:{nc or 0:08x}:{cnonce or ''}:{qop}:{ha2}")


def build_credentials(
    challenge: DigestChallenge,
    username: str,
    password: str,
    method: str,
    uri: str,
    cnonce: str | None = None,
    nc: int = 1,
) -> DigestCredentials:
    """Answer `challenge` (client side); qop=auth when offered, RFC 2069 style when none is."""
    if challenge.qop and "auth" not in challenge.qop:
        raise ValueError(f"challenge offers only qop {challenge.qop}, not auth")
    qop = "auth" if challenge.qop else None
    if qop is not None and cnonce is None:
        cnonce = secrets.token_hex(16)
    key = ha1(username, challenge.realm, password, challenge.algorithm)
    return DigestCredentials(
        username=username,
        realm=challenge.realm,
        nonce=challenge.nonce,
        uri=uri,
        response=digest_response(
            challenge.algorithm, key, challenge.nonce, method, uri, qop, nc, cnonce
        ),
        algorithm=challenge.algorithm,
        cnonce=cnonce if qop else None,
        opaque=challenge.opaque,
        qop=qop,
        nc=nc if qop else None,
    )


def preferred_challenge(challenges: Sequence[DigestChallenge]) -> DigestChallenge:
    """The challenge a client should answer: SHA-256 over MD5 (RFC 8760 section 2.4)."""
    if not challenges:
        raise ValueError("no digest challenge to answer")
    order = [DigestAlgorithm.SHA256, DigestAlgorithm.MD5]
    return min(challenges, key=lambda challenge: order.index(challenge.algorithm))


class NonceState(Enum):
    VALID = "valid"
    STALE = "stale"  # authentic but expired: re-challenge with stale=true
    INVALID = "invalid"  # forged, garbled, or issued for another realm


class NonceService:
    """Issues nonces that prove their own age and origin, so no state is needed to check them.

    nonce = base64url(timestamp_ms | random | HMAC-SHA256(secret, timestamp_ms|random|realm)).
    Every replica of a node sharing `secret` accepts the others' nonces.
    """

    _TS_LEN, _RANDOM_LEN, _MAC_LEN = 8, 16, 32
    # Replicas' clocks differ a little; a nonce "from the future" beyond this is not ours.
    _MAX_SKEW_S = 5.0

    def __init__(
        self,
        secret: bytes,
        lifetime_s: float = 300,
        clock: Callable[[], float] = time.time,
        max_tracked: int = 10_000,
    ) -> None:
        if len(secret) < 16:
            raise ValueError("nonce secret must be at least 16 bytes")
        self._secret = secret
        self._lifetime_s = lifetime_s
        self._clock = clock
        self._max_tracked = max_tracked
        self._last_nc: OrderedDict[str, int] = OrderedDict()

    def _mac(self, body: bytes, realm: str) -> bytes:
        return hmac.new(self._secret, body + realm.encode(), hashlib.sha256).digest()

    def issue(self, realm: str) -> str:
        stamp = int(self._clock() * 1000).to_bytes(self._TS_LEN, "big")
        body = stamp + secrets.token_bytes(self._RANDOM_LEN)
        raw = body + self._mac(body, realm)
        return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")

    def check(self, nonce: str, realm: str) -> NonceState:
        try:
            raw = base64.urlsafe_b64decode(nonce + "=" * (-len(nonce) % 4))
        except (binascii.Error, ValueError):
            return NonceState.INVALID
        body_len = self._TS_LEN + self._RANDOM_LEN
        if len(raw) != body_len + self._MAC_LEN:
            return NonceState.INVALID
        body, mac = raw[:body_len], raw[body_len:]
        if not hmac.compare_digest(mac, self._mac(body, realm)):
            return NonceState.INVALID
        age_s = self._clock() - int.from_bytes(body[: self._TS_LEN], "big") / 1000
        if age_s < -self._MAX_SKEW_S:
            return NonceState.INVALID
        return NonceState.STALE if age_s > self._lifetime_s else NonceState.VALID

    def accept_count(self, nonce: str, nc: int) -> bool:
        """Record `nc` for `nonce`; False if it does not exceed the last one seen (a replay).

        Only the most recent `max_tracked` nonces are remembered; an evicted
        nonce starts over, which bounds memory at the cost of weaker replay
        protection for very old, still-valid nonces.
        """
        last = self._last_nc.get(nonce)
        if last is not None and nc <= last:
            return False
        self._last_nc[nonce] = nc
        self._last_nc.move_to_end(nonce)
        while len(self._last_nc) > self._max_tracked:
            self._last_nc.popitem(last=False)
        return True


class AuthOutcome(Enum):
    OK = "ok"
    STALE = "stale"  # the right password on an old nonce: re-challenge with stale=true
    FAILED = "failed"  # re-challenge (401/407); never tells why


@dataclass(frozen=True, slots=True)
class AuthResult:
    outcome: AuthOutcome
    username: str | None = None
    reason: str = ""  # for logs only: telling the phone would help password guessing

    @property
    def ok(self) -> bool:
        return self.outcome is AuthOutcome.OK


class DigestAuthenticator:
    """Server side of digest authentication for one realm (a tenant's SIP domain)."""

    OFFERED = (DigestAlgorithm.SHA256, DigestAlgorithm.MD5)

    def __init__(
        self,
        nonces: NonceService,
        realm: str,
        algorithms: tuple[DigestAlgorithm, ...] = OFFERED,
    ) -> None:
        self._nonces = nonces
        self.realm = realm
        self.offered = algorithms
        # Unknown users are checked against these so they cost the same as a wrong password.
        self._dummy_ha1 = {a: digest_hash(a, secrets.token_hex(16)) for a in self.offered}

    def challenges(self, stale: bool = False, *, md5_only: bool = False) -> list[DigestChallenge]:
        """One challenge per algorithm (strongest first), sharing a fresh nonce.

        `md5_only` is for clients known to give up on a challenge they cannot
        answer instead of picking the next one (RFC 8760 section 2.4 asks them not to).
        """
        nonce = self._nonces.issue(self.realm)
        algorithms = (DigestAlgorithm.MD5,) if md5_only else self.offered
        return [
            DigestChallenge(realm=self.realm, nonce=nonce, algorithm=algorithm, stale=stale)
            for algorithm in algorithms
        ]

    def verify(
        self,
        credentials: DigestCredentials,
        method: str,
        lookup_ha1: Callable[[str, DigestAlgorithm], str | None],
        *,
        request_uri: str,
    ) -> AuthResult:
        """Check `credentials` sent with a `method` request to `request_uri`.

        `lookup_ha1(username, algorithm)` returns the stored HA1 or None for an
        unknown user. `request_uri` must be the Request-URI exactly as the
        phone sent it: the phone hashed that text, not a rewritten one.
        """
        creds = credentials
        if creds.realm != self.realm:
            return self._failed(creds, f"realm {creds.realm!r} is not {self.realm!r}")
        if creds.algorithm not in self.offered:
            return self._failed(creds, f"algorithm {creds.algorithm} was not offered")
        if creds.uri != request_uri:
            return self._failed(creds, f"uri {creds.uri!r} is not {request_uri!r}")
        if creds.qop not in (None, "auth"):
            return self._failed(creds, f"qop {creds.qop!r} was not offered")
        nonce_state = self._nonces.check(creds.nonce, self.realm)
        if nonce_state is NonceState.INVALID:
            return self._failed(creds, "nonce was not issued by us")
        stored = lookup_ha1(creds.username, creds.algorithm)
        key = self._dummy_ha1[creds.algorithm] if stored is None else stored
        expected = digest_response(
            creds.algorithm, key, creds.nonce, method, creds.uri, creds.qop, creds.nc, creds.cnonce
        )
        matches = hmac.compare_digest(expected.encode(), creds.response.lower().encode())
        if stored is None or not matches:
            return self._failed(creds, "unknown user or wrong password")
        # Only a correct response may advance nc; otherwise anyone could lock a nonce out.
        if nonce_state is NonceState.STALE:
            return AuthResult(AuthOutcome.STALE, creds.username, "nonce expired")
        if creds.nc is not None and not self._nonces.accept_count(creds.nonce, creds.nc):
            logger.info("digest auth of %r: nc %d replayed on one nonce", creds.username, creds.nc)
            return AuthResult(AuthOutcome.STALE, creds.username, f"nc {creds.nc} replayed")
        return AuthResult(AuthOutcome.OK, creds.username)

    @staticmethod
    def _failed(creds: DigestCredentials, reason: str) -> AuthResult:
        logger.debug("digest auth of %r failed: %s", creds.username, reason)
        return AuthResult(AuthOutcome.FAILED, reason=reason)
