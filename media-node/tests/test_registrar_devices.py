"""The registrar with devices: each has its own credentials and rings its user's extension."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as redis

from vpbx_common.nodeconfig import NodeConfig
from vpbx_common.sipauth import DigestAlgorithm, ha1
from vpbx_media.node.bindings import BindingStore
from vpbx_media.node.configsource import ConfigHolder
from vpbx_media.node.registrar import Authenticator, Registrar
from vpbx_media.sip.digest import (
    DigestAuthenticator,
    DigestChallenge,
    NonceService,
    build_credentials,
)
from vpbx_media.sip.message import SipRequest, SipResponse, parse_message

REALM = "acme.vpbx.test"


def credentials_of(username: str, password: str) -> dict[str, str]:
    return {
        "ha1_md5": ha1(username, REALM, password, DigestAlgorithm.MD5),
        "ha1_sha256": ha1(username, REALM, password, DigestAlgorithm.SHA256),
    }


def node_config(*, with_mobile: bool = True) -> NodeConfig:
    devices = [{"username": "ivan-desk", "extension": "101", **credentials_of("ivan-desk", "d")}]
    if with_mobile:
        devices.append(
            {"username": "ivan-mobile", "extension": "101", **credentials_of("ivan-mobile", "m")}
        )
    return NodeConfig.model_validate(
        {
            "tenant": "acme",
            "display_name": "Acme",
            "sip_domain": REALM,
            "city": "msk",
            "suspended": False,
            "users": [
                {"extension": "101", "name": "Ivan", "city": "msk"},
                # Old style: the user entry carries the HA1s; the username is the extension.
                {"extension": "102", "name": "Maria", "city": "msk", **credentials_of("102", "p")},
            ],
            "devices": devices,
            "groups": [],
            "numbers": [],
        }
    ).with_version()


@pytest.fixture
async def store(flushed_redis: str) -> AsyncIterator[BindingStore]:
    client = redis.Redis.from_url(flushed_redis)
    yield BindingStore(client)
    await client.aclose()


def registrar(store: BindingStore, holder: ConfigHolder) -> Registrar:
    nonces = NonceService(secrets.token_bytes(32))
    digest = DigestAuthenticator(nonces, REALM)
    return Registrar(store, Authenticator(digest, holder), holder)


def register(aor: str, port: int, authorization: str | None = None) -> SipRequest:
    lines = [
        f"REGISTER sip:{REALM} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{secrets.token_hex(6)}",
        "Max-Forwards: 70",
        f"From: <sip:{aor}@{REALM}>;tag={secrets.token_hex(4)}",
        f"To: <sip:{aor}@{REALM}>",
        f"Call-ID: {aor}-{port}@test",
        f"CSeq: {2 if authorization else 1} REGISTER",
        f"Contact: <sip:{aor}@127.0.0.1:{port}>;expires=600",
    ]
    if authorization:
        lines.append(f"Authorization: {authorization}")
    message = parse_message(("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode())
    assert isinstance(message, SipRequest)
    return message


async def register_as(
    registrar: Registrar, aor: str, username: str, password: str, port: int
) -> SipResponse:
    challenged = await registrar.handle(register(aor, port))
    assert challenged.status == 401
    challenge = next(
        DigestChallenge.parse(value)
        for value in challenged.headers.values("WWW-Authenticate")
        if "MD5" in value
    )
    answer = build_credentials(challenge, username, password, "REGISTER", f"sip:{REALM}")
    return await registrar.handle(register(aor, port, str(answer)))


async def test_every_device_binds_to_its_users_extension(store: BindingStore) -> None:
    holder = ConfigHolder(node_config())
    sip = registrar(store, holder)

    desk = await register_as(sip, "ivan-desk", "ivan-desk", "d", 5061)
    # A phone may also use the extension as its address with its device credentials.
    mobile = await register_as(sip, "101", "ivan-mobile", "m", 5062)
    old_style = await register_as(sip, "102", "102", "p", 5063)

    assert (desk.status, mobile.status, old_style.status) == (200, 200, 200)
    contacts = sorted(b.contact for b in await store.list("acme", "101"))
    assert contacts == ["sip:101@127.0.0.1:5062", "sip:ivan-desk@127.0.0.1:5061"]
    assert [b.contact for b in await store.list("acme", "102")] == ["sip:102@127.0.0.1:5063"]
    assert await store.list("acme", "ivan-desk") == []


async def test_device_credentials_do_not_register_someone_else(store: BindingStore) -> None:
    sip = registrar(store, ConfigHolder(node_config()))

    assert (await register_as(sip, "102", "ivan-desk", "d", 5061)).status == 403
    assert (await register_as(sip, "ivan-mobile", "ivan-desk", "d", 5062)).status == 403
    assert (await register_as(sip, "ivan-desk", "ivan-desk", "wrong", 5063)).status == 403
    assert await store.list("acme", "101") == []
    assert await store.list("acme", "102") == []


async def test_a_removed_device_stops_registering_after_a_reload(store: BindingStore) -> None:
    holder = ConfigHolder(node_config())
    sip = registrar(store, holder)
    assert (await register_as(sip, "ivan-mobile", "ivan-mobile", "m", 5062)).status == 200

    holder.current = node_config(with_mobile=False)

    assert (await register_as(sip, "ivan-mobile", "ivan-mobile", "m", 5062)).status == 403
    assert (await register_as(sip, "ivan-desk", "ivan-desk", "d", 5061)).status == 200
