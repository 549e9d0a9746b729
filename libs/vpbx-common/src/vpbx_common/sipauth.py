"""SIP digest HA1 values: what the PBX stores instead of SIP passwords."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import NamedTuple


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


class HA1Pair(NamedTuple):
    """What is stored for one SIP credential: its HA1 for each algorithm phones use."""

    md5: str
    sha256: str


def ha1_pair(username: str, realm: str, password: str) -> HA1Pair:
    return HA1Pair(
        md5=ha1(username, realm, password, DigestAlgorithm.MD5),
        sha256=ha1(username, realm, password, DigestAlgorithm.SHA256),
    )
