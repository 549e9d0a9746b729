"""The X-Vpbx-Signature header, as a receiver checks it (webhooks and HTTP decisions)."""

from __future__ import annotations

from vpbx_common.signing import generate_secret, sign, verify

SECRET = "receiver-shared-secret-0123456789"


def test_a_signature_verifies_only_for_its_body_secret_and_time() -> None:
    body = b'{"event":"call.ended"}'
    now = 1_800_000_000
    header = sign(SECRET, body, timestamp=now)
    assert header.startswith(f"t={now},v1=")
    assert verify(SECRET, header, body, now=now + 10)
    assert not verify(SECRET, header, body, now=now + 301)  # a replay, too late
    assert not verify(SECRET, header, body.replace(b"ended", b"xnded"), now=now)
    assert not verify(SECRET + "x", header, body, now=now)
    assert not verify(SECRET, header.replace(f"t={now}", f"t={now + 1}"), body, now=now)
    assert not verify(SECRET, "garbage", body, now=now)
    assert not verify(SECRET, "t=abc,v1=00", body, now=now)
    # Several v1 values: one matching is enough.
    assert verify(SECRET, f"{header},v1={'0' * 64}", body, now=now)


def test_generated_secrets_are_long_and_different() -> None:
    first, second = generate_secret(), generate_secret()
    assert len(first) == 43
    assert first != second
