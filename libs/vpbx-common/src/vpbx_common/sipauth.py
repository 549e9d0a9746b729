"""SIP digest HA1 values: what the PBX stores instead of SIP passwords."""

from __future__ import annotations

import hashlib
from enum import StrEnum


class DigestAlgorithm(StrEnum):
    MD5 = "MD5"
    SHA256 = "SHA-256"


def digest_hash(algorithm: DigestAlgorithm, text: str) -> str:
    data = text.encode("utf-8")
    if algorithm is DigestAlgorithm.MD5:
        return hashlib.md5(data, usedforsecurity=False).hexdigest()
    return hashlib.sha256(data).hexdigest()


def ha1(username: str, realm: str, password: str, algorithm: DigestAlgorithm) -> str:
    """H(username:realm:password), RFC 7616 section 3.4.2."""
    return digest_hash(algorithm, f"{username}:{realm}:{password}")
