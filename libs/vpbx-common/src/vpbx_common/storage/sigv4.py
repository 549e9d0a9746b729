"""AWS Signature Version 4 for S3 requests (the Authorization-header form).

Written from the AWS specification ("Authenticating Requests: Using the
Authorization Header"): a canonical request, the string to sign over its hash,
and an HMAC-SHA256 key derived from the secret for one day, region and service.
The caller builds the request (path already percent-encoded exactly as it will be
sent, every header it wants signed); this module only computes the signature, so
it can be checked against AWS's published examples without any network.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import urllib.parse
from collections.abc import Iterable, Mapping

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_PAYLOAD_SHA256 = hashlib.sha256(b"").hexdigest()
# RFC 3986 unreserved characters: the only ones SigV4 leaves unencoded.
_UNRESERVED = "-_.~"


def amz_date(when: dt.datetime) -> str:
    """The x-amz-date value: ISO 8601 basic format in UTC."""
    return when.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def uri_encode_path(path: str) -> str:
    """Percent-encode a path for S3: every byte but unreserved ones and '/' (encoded once)."""
    return urllib.parse.quote(path, safe="/" + _UNRESERVED)


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    encoded = sorted(
        (urllib.parse.quote(name, safe=_UNRESERVED), urllib.parse.quote(value, safe=_UNRESERVED))
        for name, value in params
    )
    return "&".join(f"{name}={value}" for name, value in encoded)


def _canonical_headers(headers: Mapping[str, str]) -> tuple[str, str]:
    """The canonical header block and the signed-header list, both sorted by lowercase name."""
    normalized: dict[str, str] = {}
    for name, value in headers.items():
        # Sequential spaces inside a value collapse to one, per the spec.
        normalized[name.strip().lower()] = " ".join(value.split())
    names = sorted(normalized)
    block = "".join(f"{name}:{normalized[name]}\n" for name in names)
    return block, ";".join(names)


def canonical_request(
    method: str,
    path: str,
    query: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    payload_sha256: str,
) -> tuple[str, str]:
    """The canonical request text and its signed-header list."""
    header_block, signed_headers = _canonical_headers(headers)
    text = "\n".join(
        [
            method.upper(),
            path or "/",
            canonical_query(query),
            header_block,
            signed_headers,
            payload_sha256,
        ]
    )
    return text, signed_headers


def signing_key(secret_key: str, date: str, region: str, service: str) -> bytes:
    key = _hmac(f"AWS4{secret_key}".encode(), date)
    key = _hmac(key, region)
    key = _hmac(key, service)
    return _hmac(key, "aws4_request")


def authorization(
    *,
    method: str,
    path: str,
    query: Iterable[tuple[str, str]] = (),
    headers: Mapping[str, str],
    payload_sha256: str,
    access_key: str,
    secret_key: str,
    region: str,
    when: dt.datetime,
    service: str = "s3",
) -> str:
    """The Authorization header value for a request.

    ``headers`` are the headers to sign, and must include ``host`` and
    ``x-amz-date`` (equal to ``amz_date(when)``) as sent; S3 also wants
    ``x-amz-content-sha256`` equal to ``payload_sha256``.
    """
    timestamp = amz_date(when)
    date = timestamp[:8]
    scope = f"{date}/{region}/{service}/aws4_request"
    request_text, signed_headers = canonical_request(method, path, query, headers, payload_sha256)
    string_to_sign = "\n".join(
        [ALGORITHM, timestamp, scope, hashlib.sha256(request_text.encode()).hexdigest()]
    )
    signature = hmac.new(
        signing_key(secret_key, date, region, service), string_to_sign.encode(), hashlib.sha256
    ).hexdigest()
    return (
        f"{ALGORITHM} Credential={access_key}/{scope},"
        f"SignedHeaders={signed_headers},Signature={signature}"
    )


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()
