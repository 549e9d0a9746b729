"""SIP digest authentication: wire format, RFC test vectors, nonces, verification."""

from __future__ import annotations

import pytest

from vpbx_media.sip.digest import (
    AuthOutcome,
    DigestAlgorithm,
    DigestAuthenticator,
    DigestChallenge,
    DigestCredentials,
    DigestParseError,
    NonceService,
    NonceState,
    build_credentials,
    digest_response,
    ha1,
    preferred_challenge,
)

SECRET = b"0123456789abcdef0123456789abcdef"
REALM = "acme.vpbx.test"
REGISTER_URI = "sip:acme.vpbx.test"

# RFC 7616 section 3.9.1, exactly as printed (folded over several lines).
RFC7616_CHALLENGE_SHA256 = (
    'Digest\r\n    realm="http-auth@example.org",\r\n    qop="auth, auth-int",\r\n'
    "    algorithm=SHA-256,\r\n"
    '    nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",\r\n'
    '    opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_CREDENTIALS = (
    'Digest username="Mufasa",\r\n    realm="http-auth@example.org",\r\n'
    '    uri="/dir/index.html",\r\n    algorithm={algorithm},\r\n'
    '    nonce="7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",\r\n    nc=00000001,\r\n'
    '    cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",\r\n    qop=auth,\r\n'
    '    response="{response}",\r\n'
    '    opaque="FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS"'
)
RFC7616_RESPONSES = {
    DigestAlgorithm.MD5: "8ca523f5e9506fed4657c9700eebdbec",
    DigestAlgorithm.SHA256: "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1",
}


class FakeClock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Directory:
    """HA1 store keyed like the PBX keeps it: per user and per algorithm."""

    def __init__(self, passwords: dict[str, str]) -> None:
        self.ha1s = {
            (user, algorithm): ha1(user, REALM, password, algorithm)
            for user, password in passwords.items()
            for algorithm in DigestAlgorithm
        }

    def lookup(self, username: str, algorithm: DigestAlgorithm) -> str | None:
        return self.ha1s.get((username, algorithm))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def nonces(clock: FakeClock) -> NonceService:
    return NonceService(SECRET, lifetime_s=300, clock=clock)


@pytest.fixture
def auth(nonces: NonceService) -> DigestAuthenticator:
    return DigestAuthenticator(nonces, REALM)


@pytest.fixture
def directory() -> Directory:
    return Directory({"101": "s3cret-101", "alice": "wonder land"})


def phone_answer(
    challenge: DigestChallenge, username: str, password: str, nc: int = 1
) -> DigestCredentials:
    """What a phone puts in its Authorization header, parsed back as the server reads it."""
    credentials = build_credentials(
        challenge, username, password, "REGISTER", REGISTER_URI, cnonce="c0ffee", nc=nc
    )
    return DigestCredentials.parse(str(credentials))


# --- known-answer vectors -------------------------------------------------------------


@pytest.mark.parametrize("algorithm", list(DigestAlgorithm))
def test_rfc7616_example_response_is_reproduced(algorithm: DigestAlgorithm) -> None:
    challenge = DigestChallenge.parse(RFC7616_CHALLENGE_SHA256.replace("SHA-256", algorithm))
    assert challenge.qop == ("auth", "auth-int")
    assert challenge.algorithm is algorithm

    ours = build_credentials(
        challenge,
        "Mufasa",
        "Circle of Life",
        "GET",
        "/dir/index.html",
        cnonce="f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
        nc=1,
    )
    theirs = DigestCredentials.parse(
        RFC7616_CREDENTIALS.format(algorithm=algorithm, response=RFC7616_RESPONSES[algorithm])
    )
    assert ours.response == RFC7616_RESPONSES[algorithm]
    assert ours == theirs


def test_rfc2617_example_response_is_reproduced() -> None:
    credentials = DigestCredentials.parse(
        'Digest username="Mufasa", realm="testrealm@host.com",'
        ' nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", uri="/dir/index.html", qop=auth,'
        ' nc=00000001, cnonce="0a4f113b", response="6629fae49393a05397450978507c4ef1",'
        ' opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    assert credentials.algorithm is DigestAlgorithm.MD5  # absent means MD5
    key = ha1("Mufasa", "testrealm@host.com", "Circle Of Life", DigestAlgorithm.MD5)
    expected = digest_response(
        DigestAlgorithm.MD5,
        key,
        credentials.nonce,
        "GET",
        credentials.uri,
        credentials.qop,
        credentials.nc,
        credentials.cnonce,
    )
    assert expected == credentials.response


# --- wire format ----------------------------------------------------------------------


def test_challenge_round_trips_with_escapes() -> None:
    challenge = DigestChallenge(
        realm='odd "realm" \\ here',
        nonce="abc/+=",
        algorithm=DigestAlgorithm.SHA256,
        qop=("auth", "auth-int"),
        opaque="op",
        stale=True,
    )
    text = str(challenge)
    assert text.startswith('Digest realm="odd \\"realm\\" \\\\ here"')
    assert DigestChallenge.parse(text) == challenge
    assert str(DigestChallenge.parse(text)) == text


def test_credentials_round_trip_with_and_without_qop() -> None:
    with_qop = DigestCredentials(
        username='al"ice\\',
        realm=REALM,
        nonce="n",
        uri="sip:acme.vpbx.test;transport=tcp",
        response="ab" * 32,
        algorithm=DigestAlgorithm.SHA256,
        cnonce="cn",
        opaque="o",
        qop="auth",
        nc=0x1F,
    )
    assert "nc=0000001f" in str(with_qop)
    without_qop = DigestCredentials(
        username="101", realm=REALM, nonce="n", uri=REGISTER_URI, response="cd" * 16
    )
    for credentials in (with_qop, without_qop):
        assert DigestCredentials.parse(str(credentials)) == credentials
    with pytest.raises(ValueError, match="together"):
        DigestCredentials(username="u", realm=REALM, nonce="n", uri="u", response="r", qop="auth")


def test_parsing_tolerates_case_order_tokens_folding_and_unknown_params() -> None:
    messy = (
        "digest  RESPONSE=0123456789abcdef0123456789abcdef ,NC=00000002,\r\n\t"
        'Uri = "sip:acme.vpbx.test" , ,  Realm="acme.vpbx.test",userhash=false,'
        'QOP=auth,cnonce="x y",nonce=abc,  ALGORITHM=md5,username="101"'
    )
    credentials = DigestCredentials.parse(messy)
    assert credentials == DigestCredentials(
        username="101",
        realm=REALM,
        nonce="abc",
        uri=REGISTER_URI,
        response="0123456789abcdef0123456789abcdef",
        algorithm=DigestAlgorithm.MD5,
        cnonce="x y",
        qop="auth",
        nc=2,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('Basic realm="x"', "Digest scheme"),
        ('Digestrealm="x"', "Digest scheme"),
        ('Digest nonce="n", uri="u", response="r", username="u"', "'realm' is missing"),
        ('Digest realm="a", realm="b"', "'realm' appears twice"),
        ('Digest username="unterminated', "unterminated quoted value of 'username'"),
        ("Digest username", "'username' has no '=value'"),
        ("Digest username=", "'username' has an empty value"),
        ('Digest username="a" realm="b"', "expected ',' after 'username'"),
        ('Digest =x, realm="b"', "expected a parameter name"),
        ('Digest realm="b",\r\nnonce="n"', "line break"),
    ],
)
def test_malformed_values_are_rejected_with_a_reason(text: str, message: str) -> None:
    with pytest.raises(DigestParseError, match=message) as caught:
        DigestCredentials.parse(text)
    assert caught.value.status_code == 400


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("qop=auth", "requires both cnonce and nc"),
        ('cnonce="c", nc=00000001', "only allowed with qop"),
        ('qop=auth, cnonce="c", nc=1', "not 8 hex digits"),
        ("algorithm=MD5-sess", "unsupported algorithm 'MD5-sess'"),
    ],
)
def test_inconsistent_credentials_are_rejected(extra: str, message: str) -> None:
    text = f'Digest username="u", realm="r", nonce="n", uri="sip:r", response="00", {extra}'
    with pytest.raises(DigestParseError, match=message):
        DigestCredentials.parse(text)


def test_client_prefers_sha256_whatever_the_order(auth: DigestAuthenticator) -> None:
    offered = auth.challenges()
    assert [c.algorithm for c in offered] == [DigestAlgorithm.SHA256, DigestAlgorithm.MD5]
    assert offered[0].nonce == offered[1].nonce
    assert preferred_challenge(list(reversed(offered))).algorithm is DigestAlgorithm.SHA256


# --- nonces ---------------------------------------------------------------------------


def test_nonce_is_valid_until_its_lifetime_then_stale(
    nonces: NonceService, clock: FakeClock
) -> None:
    nonce = nonces.issue(REALM)
    assert nonces.check(nonce, REALM) is NonceState.VALID
    clock.now += 299
    assert nonces.check(nonce, REALM) is NonceState.VALID
    clock.now += 2
    assert nonces.check(nonce, REALM) is NonceState.STALE


def test_forged_garbled_or_foreign_nonces_are_invalid(
    nonces: NonceService, clock: FakeClock
) -> None:
    nonce = nonces.issue(REALM)
    flipped = nonce[:10] + ("A" if nonce[10] != "A" else "B") + nonce[11:]
    other_secret = NonceService(b"another-secret-of-32-bytes-long!", clock=clock).issue(REALM)
    for forged in (flipped, other_secret, "", "not base64 at all!", nonce[:-4]):
        assert nonces.check(forged, REALM) is NonceState.INVALID, forged
    assert nonces.check(nonce, "other-tenant.vpbx.test") is NonceState.INVALID


def test_nonce_from_far_future_is_invalid(nonces: NonceService, clock: FakeClock) -> None:
    clock.now += 3600
    nonce = nonces.issue(REALM)
    clock.now -= 3600
    assert nonces.check(nonce, REALM) is NonceState.INVALID


# --- verification ---------------------------------------------------------------------


@pytest.mark.parametrize("index", [0, 1], ids=["sha256", "md5"])
def test_right_password_authenticates(
    auth: DigestAuthenticator, directory: Directory, index: int
) -> None:
    challenge = auth.challenges()[index]
    credentials = phone_answer(challenge, "alice", "wonder land")
    result = auth.verify(credentials, "REGISTER", directory.lookup, request_uri=REGISTER_URI)
    assert result.ok
    assert result.username == "alice"


def test_old_phone_without_qop_authenticates(
    auth: DigestAuthenticator, directory: Directory
) -> None:
    challenge = DigestChallenge.parse(str(auth.challenges()[1]).replace('qop="auth", ', ""))
    assert challenge.qop == ()
    credentials = phone_answer(challenge, "101", "s3cret-101")
    assert credentials.qop is None
    assert credentials.nc is None
    result = auth.verify(credentials, "REGISTER", directory.lookup, request_uri=REGISTER_URI)
    assert result.outcome is AuthOutcome.OK


def test_wrong_password_and_unknown_user_look_the_same(
    auth: DigestAuthenticator, directory: Directory
) -> None:
    challenge = auth.challenges()[0]
    wrong = phone_answer(challenge, "alice", "guess")
    unknown = phone_answer(challenge, "mallory", "guess")
    results = [
        auth.verify(creds, "REGISTER", directory.lookup, request_uri=REGISTER_URI)
        for creds in (wrong, unknown)
    ]
    assert results[0].outcome is AuthOutcome.FAILED
    assert results[0].username is None
    assert results[0] == results[1]


def test_response_for_another_method_fails(auth: DigestAuthenticator, directory: Directory) -> None:
    credentials = phone_answer(auth.challenges()[0], "alice", "wonder land")
    result = auth.verify(credentials, "INVITE", directory.lookup, request_uri=REGISTER_URI)
    assert result.outcome is AuthOutcome.FAILED


def test_realm_uri_and_nonce_must_be_ours(
    auth: DigestAuthenticator, directory: Directory, clock: FakeClock
) -> None:
    challenge = auth.challenges()[0]
    other_realm = DigestChallenge(realm="other.vpbx.test", nonce=challenge.nonce)
    foreign_nonce = DigestChallenge(
        realm=REALM, nonce=NonceService(b"x" * 32, clock=clock).issue(REALM)
    )
    cases = {
        "realm": phone_answer(other_realm, "alice", "wonder land"),
        "nonce": phone_answer(foreign_nonce, "alice", "wonder land"),
    }
    for reason, credentials in cases.items():
        result = auth.verify(credentials, "REGISTER", directory.lookup, request_uri=REGISTER_URI)
        assert result.outcome is AuthOutcome.FAILED
        assert reason in result.reason
    good = phone_answer(challenge, "alice", "wonder land")
    result = auth.verify(good, "REGISTER", directory.lookup, request_uri="sip:evil.test")
    assert result.outcome is AuthOutcome.FAILED
    assert "uri" in result.reason


def test_expired_nonce_with_right_password_is_stale_not_failed(
    auth: DigestAuthenticator, directory: Directory, clock: FakeClock
) -> None:
    challenge = auth.challenges()[0]
    clock.now += 301
    right = phone_answer(challenge, "alice", "wonder land")
    wrong = phone_answer(challenge, "alice", "guess")
    verify = auth.verify
    assert verify(right, "REGISTER", directory.lookup, request_uri=REGISTER_URI).outcome is (
        AuthOutcome.STALE
    )
    assert verify(wrong, "REGISTER", directory.lookup, request_uri=REGISTER_URI).outcome is (
        AuthOutcome.FAILED
    )
    assert all(c.stale for c in auth.challenges(stale=True))


def test_replayed_nonce_count_is_refused(auth: DigestAuthenticator, directory: Directory) -> None:
    challenge = auth.challenges()[0]

    def outcome(nc: int, password: str) -> AuthOutcome:
        credentials = phone_answer(challenge, "alice", password, nc=nc)
        return auth.verify(
            credentials, "REGISTER", directory.lookup, request_uri=REGISTER_URI
        ).outcome

    # A wrong guess with a high nc must not lock the real phone out of its nonce.
    assert outcome(50, password="guess") is AuthOutcome.FAILED
    assert outcome(1, "wonder land") is AuthOutcome.OK
    assert outcome(1, "wonder land") is AuthOutcome.STALE
    assert outcome(2, "wonder land") is AuthOutcome.OK
    assert outcome(2, "wonder land") is AuthOutcome.STALE
