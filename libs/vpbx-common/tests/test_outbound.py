"""The outbound URL policy: which tenant-chosen URLs the platform may call from inside."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from vpbx_common.outbound import (
    Destination,
    OutboundPolicy,
    OutboundRefusedError,
    parse_address,
    pin,
)
from vpbx_common.settings import OutboundSettings

STRICT = OutboundPolicy(allow_private=False)
LOCAL = OutboundPolicy(allow_private=True)

INSIDE = [
    "http://10.0.0.7/route",
    "http://127.0.0.1:8000/",
    "http://[::1]/",
    "http://169.254.169.254/latest/meta-data",  # cloud metadata
    "http://[::ffff:10.0.0.1]/",  # IPv4-mapped
    "http://[64:ff9b::a00:1]/",  # NAT64 of 10.0.0.1
    "http://[2002:7f00:1::]/",  # 6to4 of 127.0.0.1
    "http://[::127.0.0.1]/",  # IPv4-compatible
    "http://[fe80::1%25eth0]/",  # link-local with a zone
    "http://[fd00::1]/",  # unique local
    "http://2130706433/",  # 127.0.0.1 as one number
    "http://127.1/",
    "http://0x7f.0.0.1/",
    "http://0177.0.0.1/",
    "http://0/",
    "http://100.64.0.1/",  # carrier-grade NAT
    "http://localhost:8080/",
    "http://LOCALHOST./",
    "http://redis.vpbx.svc/",
    "http://redis.vpbx.svc.cluster.local:6379/",
    "http://metadata.google.internal/",
    "http://printer.local/",
]

OUTSIDE = [
    "https://crm.example.com/hooks",
    "https://93.184.216.34/",
    "http://[2606:2800:220:1:248:1893:25c8:1946]/",
    "https://xn--80ak6aa92e.com/",  # punycode
]


@pytest.mark.parametrize("url", INSIDE)
def test_outside_local_mode_internal_destinations_are_refused(url: str) -> None:
    assert STRICT.problem(url) is not None
    assert LOCAL.problem(url) is None  # local mode: the CRM may run next door


@pytest.mark.parametrize("url", OUTSIDE)
def test_internet_destinations_are_allowed(url: str) -> None:
    assert STRICT.problem(url) is None


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "[::1]", "10.0.0.7", "2130706433", "localhost", "pbx.vpbx.svc"]
)
def test_a_bare_host_is_judged_as_a_urls_host(host: str) -> None:
    """A trunk's host (sip:HOST:PORT) passes the same checks, named as the caller says."""
    problem = STRICT.host_problem(host, "the trunk's host")
    assert problem is not None
    assert problem.startswith("the trunk's host must be reachable on the Internet")
    assert LOCAL.host_problem(host) is None
    assert STRICT.host_problem("sip.carrier.example") is None
    assert STRICT.host_problem("93.184.216.34") is None


async def test_a_bare_host_is_resolved_and_every_address_checked() -> None:
    assert [str(a) for a in await STRICT.public_addresses("93.184.216.34", 5060)] == [
        "93.184.216.34"
    ]
    with pytest.raises(OutboundRefusedError, match="not resolve to an address on the Internet"):
        await STRICT.public_addresses("127.0.0.1", 5060, kind=socket.SOCK_DGRAM)
    with pytest.raises(OutboundRefusedError, match="could not be resolved"):
        await STRICT.public_addresses("no-such-carrier.invalid", 5060)
    assert [str(a) for a in await LOCAL.public_addresses("127.0.0.1", 5060)] == ["127.0.0.1"]


def test_credentials_in_a_url_are_refused_in_every_mode() -> None:
    for policy in (STRICT, LOCAL):
        assert policy.problem("https://user:pass@crm.example.com/") is not None


def test_legacy_ipv4_forms_are_read_as_resolvers_read_them() -> None:
    assert parse_address("2130706433") == ipaddress.IPv4Address("127.0.0.1")
    assert parse_address("127.1") == ipaddress.IPv4Address("127.0.0.1")
    assert parse_address("0x7f.0.0.1") == ipaddress.IPv4Address("127.0.0.1")
    assert parse_address("crm.example.com") is None
    assert parse_address("1.2.3.") is None


async def test_a_name_that_resolves_inside_is_refused_without_naming_the_address() -> None:
    host = socket.gethostname()  # Debian maps it to a loopback address in /etc/hosts
    resolved = {info[4][0] for info in socket.getaddrinfo(host, 80, type=socket.SOCK_STREAM)}
    if all(ipaddress.ip_address(address).is_global for address in resolved):
        pytest.skip(f"{host} resolves to public addresses only ({resolved})")
    with pytest.raises(OutboundRefusedError) as refused:
        await STRICT.destination(f"http://{host}:8080/hook")
    assert not any(address in str(refused.value) for address in resolved)
    assert await LOCAL.destination(f"http://{host}:8080/hook") == Destination(host, None)


async def test_an_unresolvable_or_malformed_name_is_refused_not_raised() -> None:
    for url in (
        "https://no-such-host.invalid/",
        "https://a..b.example.com/",
        f"https://{'a' * 64}.com/",
    ):
        with pytest.raises(OutboundRefusedError):
            await STRICT.destination(url)


def test_a_request_is_pinned_to_the_checked_address_with_its_host_kept() -> None:
    checked = Destination("crm.example.com", ipaddress.IPv4Address("93.184.216.34"))
    pinned = pin("https://crm.example.com:8443/hooks?x=1", checked)
    assert pinned.url == "https://93.184.216.34:8443/hooks?x=1"
    assert pinned.headers == {"Host": "crm.example.com:8443"}
    assert pinned.extensions == {"sni_hostname": "crm.example.com"}  # TLS still checks the name

    v6 = Destination("crm.example.com", ipaddress.IPv6Address("2606:2800:220:1::1"))
    assert pin("http://crm.example.com/h", v6).url == "http://[2606:2800:220:1::1]/h"
    assert pin("http://crm.example.com/h", v6).extensions == {}
    # Local mode, or an address in the URL already: nothing to rewrite.
    assert pin("http://crm.example.com/h", Destination("crm.example.com", None)).url == (
        "http://crm.example.com/h"
    )


def test_settings_build_the_same_policy_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Control API and media node read VPBX_MODE and VPBX_OUTBOUND_PRIVATE_ALLOWED alike."""
    monkeypatch.delenv("VPBX_OUTBOUND_PRIVATE_ALLOWED", raising=False)
    assert OutboundSettings(mode="local").outbound_policy().allow_private
    assert not OutboundSettings(mode="cluster").outbound_policy().allow_private
    monkeypatch.setenv("VPBX_OUTBOUND_PRIVATE_ALLOWED", "true")
    assert OutboundSettings(mode="cluster").allows_private_outbound
    monkeypatch.setenv("VPBX_OUTBOUND_PRIVATE_ALLOWED", "false")
    assert not OutboundSettings(mode="local").allows_private_outbound
