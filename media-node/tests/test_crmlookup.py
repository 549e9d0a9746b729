"""The node's CRM lookup client against the fake CRM on loopback: the request it sends,
connection reuse, and every answer it refuses with the words the call's route will show."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from tests.services.fake_crm import FakeCrm
from tests.services.ports import free_port

from vpbx_common.crm import CrmContact
from vpbx_media.node.crmlookup import MAX_DOCUMENT_BYTES, CrmLookupClient, CrmLookupError
from vpbx_media.settings import NodeSettings

PHONE = "+79161234567"
IVAN = {"id": "ct-1", "name": "Ivan", "category": "client", "owner_user_id": "u-1", "vip": True}


@pytest.fixture
async def client(fake_crm: FakeCrm) -> AsyncIterator[CrmLookupClient]:
    lookups = CrmLookupClient(fake_crm.url + "/", "svc-token", timeout_ms=300)
    await lookups.start()
    try:
        yield lookups
    finally:
        await lookups.stop()


async def test_the_request_follows_the_contract_and_the_contact_comes_back(
    client: CrmLookupClient, fake_crm: FakeCrm
) -> None:
    fake_crm.book[PHONE] = IVAN
    assert await client.lookup("acme", PHONE) == CrmContact("ct-1", "Ivan", "client", "u-1", True)
    [request] = fake_crm.requests
    assert request.target == "/internal/v1/lookup/acme?phone=%2B79161234567"
    assert request.headers["authorization"] == "Bearer svc-token"
    assert request.headers["accept"] == "application/json"


async def test_a_tenant_is_one_path_segment_whatever_it_holds(
    client: CrmLookupClient, fake_crm: FakeCrm
) -> None:
    assert await client.lookup("acme/../x", PHONE) is None
    assert fake_crm.requests[0].path == "/internal/v1/lookup/acme%2F..%2Fx"


async def test_every_lookup_asks_again_on_the_same_connection(
    client: CrmLookupClient, fake_crm: FakeCrm
) -> None:
    fake_crm.book[PHONE] = IVAN
    first = await client.lookup("acme", PHONE)
    fake_crm.book[PHONE] = {**IVAN, "owner_user_id": "u-2"}  # reassigned meanwhile
    second = await client.lookup("acme", PHONE)
    assert first is not None
    assert second is not None
    assert (first.owner_user_id, second.owner_user_id) == ("u-1", "u-2")
    assert (len(fake_crm.requests), fake_crm.connections) == (2, 1)


async def test_a_number_the_crm_does_not_know_is_none(client: CrmLookupClient) -> None:
    assert await client.lookup("acme", PHONE) is None


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (404, None, "HTTP 404"),
        (500, b"oops", "HTTP 500"),
        (200, b"<html>", "bad document: not JSON"),
        (200, b"[]", 'bad document: not an object with "contact"'),
        (200, b'{"contacts": []}', 'bad document: not an object with "contact"'),
        (
            200,
            json.dumps({"contact": {"name": "Ivan", "category": "client"}}).encode(),
            "bad document: contact.id: not a non-empty string",
        ),
        (
            200,
            json.dumps({"contact": {**IVAN, "vip": 1}}).encode(),
            "bad document: contact.vip: not a boolean",
        ),
        (
            200,
            b" " * (MAX_DOCUMENT_BYTES + 1),
            f"bad document: larger than {MAX_DOCUMENT_BYTES} bytes",
        ),
    ],
)
async def test_answers_that_are_no_contact_raise_saying_which(
    client: CrmLookupClient, fake_crm: FakeCrm, status: int, body: bytes | None, reason: str
) -> None:
    fake_crm.status, fake_crm.body = status, body
    with pytest.raises(CrmLookupError) as raised:
        await client.lookup("acme", PHONE)
    assert str(raised.value) == reason


async def test_a_slow_crm_is_a_timeout_after_the_deadline(
    client: CrmLookupClient, fake_crm: FakeCrm
) -> None:
    fake_crm.delay_s = 1.0
    with pytest.raises(CrmLookupError) as raised:
        await client.lookup("acme", PHONE)
    assert str(raised.value) == "timeout after 300 ms"


async def test_nobody_listening_is_a_failed_connection() -> None:
    lookups = CrmLookupClient(f"http://127.0.0.1:{free_port()}", "svc-token")
    await lookups.start()
    try:
        with pytest.raises(CrmLookupError, match=r"^connection failed: ClientConnectorError"):
            await lookups.lookup("acme", PHONE)
    finally:
        await lookups.stop()


async def test_a_client_not_started_refuses_rather_than_connecting_per_call() -> None:
    with pytest.raises(CrmLookupError, match="lookup client not running"):
        await CrmLookupClient("http://127.0.0.1:9", "svc-token").lookup("acme", PHONE)


def test_the_node_has_a_client_only_with_a_crm_url() -> None:
    assert CrmLookupClient.from_settings(NodeSettings()) is None
    settings = NodeSettings(crm_url="http://crm:8000", crm_lookup_timeout_ms=450)
    client = CrmLookupClient.from_settings(settings)
    assert client is not None
    assert (client.base_url, client.timeout_ms) == ("http://crm:8000", 450)
