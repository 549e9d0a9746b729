"""What each `make bench-sip` scenario runs: the sipp peers, the caller, the bench platform.

Pure pieces of loadtest/bench_sip.py (no processes, no sockets), unit-tested in
tests/test_bench_sip.py. Three scenarios, each measured on vpbx and on Kamailio:

  inbound   a carrier calls the tenant's number; the registered phone answers.
            vpbx:     sipp UAC -> edge -> node -> edge -> sipp UAS (extension 101)
            kamailio: sipp UAC -> kamailio -> sipp UAS
  outbound  a tenant phone calls a number outside the PBX through a carrier trunk.
            vpbx:     sipp UAC (extension 101, digest) -> edge -> node -> sipp UAS (the
                      carrier, a platform Trunk in the bench platform file)
            kamailio: the same UAC -> kamailio (digest check of the same user) -> sipp UAS
  transfer  a carrier calls the tenant's number, agent A answers and hands the caller
            to agent B with a blind transfer (REFER); B answers, A is let go, the caller
            hangs up later.
            vpbx:     sipp UAC -> edge -> node -> edge -> A (REFER to 102 in its dialog);
                      the node answers 202, NOTIFYs, rings B, connects the caller to B and
                      BYEs A
            kamailio: the same A and B; the caller carries out the transfer itself (it
                      gets the REFER, NOTIFYs, INVITEs B and BYEs A), Kamailio relays
                      every request of both dialogs
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

HOST = "127.0.0.1"

# The number the inbound and transfer callers dial: it routes straight to one extension
# (the agent, A), so exactly one UAS answers (a ring group would fork to several).
BENCH_NUMBER = "+74950000009"
CALLER = "+79130000001"
# What the tenant phone dials in the outbound scenario: a Moscow number in the national
# form, which the node reads as +74951234567 with the tenant's country (RU).
OUTBOUND_DIALLED = "84951234567"
# The transfer target: an extension the bench platform file adds to the tenant.
AGENT_B = "102"
AGENT_B_NAME = "Bench Agent B"
# A phone that exists only on loopback for the length of a benchmark run.
AGENT_B_PASSWORD = "bench-agent-b-secret-0102"  # noqa: S105
CARRIER_TRUNK = "bench-carrier"

# Call lengths (ms). Inbound and outbound: the caller holds 1 s (as before). Transfer: the
# agent talks 0.5 s before the REFER (fixed in uas_bench_refer.xml); the caller hangs up
# 2 s after its ACK on vpbx (B has been talking about 1.5 s by then), and 1.5 s after
# releasing A on Kamailio.
HOLD_MS = 1000
AGENT_HOLD_MS = 500
TRANSFER_CALLER_HOLD_MS = 2000
TRANSFEREE_TALK_MS = 1500


class Scenario(enum.StrEnum):
    INBOUND = "inbound"
    OUTBOUND = "outbound"
    TRANSFER = "transfer"


class ScenarioError(ValueError):
    """A --scenario value that names no scenario."""


def parse_scenarios(text: str) -> tuple[Scenario, ...]:
    """`all`, one scenario or a comma-separated list, in the order of `Scenario`."""
    names = {part.strip().lower() for part in text.split(",") if part.strip()}
    if not names:
        raise ScenarioError("--scenario needs a value: inbound, outbound, transfer or all")
    if "all" in names:
        names.discard("all")
        names.update(scenario.value for scenario in Scenario)
    known = {scenario.value for scenario in Scenario}
    unknown = sorted(names - known)
    if unknown:
        raise ScenarioError(
            f"unknown scenario {', '.join(unknown)}: choose inbound, outbound, transfer or all"
        )
    return tuple(scenario for scenario in Scenario if scenario.value in names)


# --- who takes part in a step ---------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """A sipp UAS a step starts before its caller (a phone, an agent, the carrier)."""

    role: str  # its work directory's name and how reports name it
    scenario: str  # file in loadtest/scenarios
    port: int
    keys: Mapping[str, str] = field(default_factory=dict)
    pause_ms: int | None = None
    # Every call must succeed here too for the step to pass (the caller cannot see it).
    judged: bool = False
    # Its rtd is the step's transfer time (REFER sent to BYE received).
    times_transfer: bool = False
    # More sipp options (-aa: sipp answers NOTIFYs itself, wherever they arrive).
    extra_args: tuple[str, ...] = ()


@dataclass(frozen=True)
class Caller:
    """The sipp UAC that offers the step's calls."""

    scenario: str
    service: str  # user part of the Request-URI
    domain: str  # host part of the Request-URI and To
    caller: str  # user part of From
    hold_ms: int
    credentials: tuple[str, str] | None = None

    @property
    def keys(self) -> dict[str, str]:
        return {"domain": self.domain, "caller": self.caller}


@dataclass(frozen=True)
class Ports:
    """Where the answering peers listen (chosen once per system)."""

    agent: int  # the inbound UAS and transfer agent A (vpbx: registered as the extension)
    target: int  # transfer agent B (vpbx: registered as AGENT_B)
    carrier: int  # the outbound carrier (vpbx: the platform trunk's port)


@dataclass(frozen=True)
class Phone:
    """The tenant's extension behind BENCH_NUMBER, with what registering needs."""

    tenant: str
    city: str
    domain: str
    extension: str
    password: str


@dataclass(frozen=True)
class StepPlan:
    caller: Caller
    peers: tuple[Peer, ...]


def vpbx_plan(scenario: Scenario, ports: Ports, phone: Phone) -> StepPlan:
    """The peers and the caller of one vpbx step; the phones are registered already."""
    if scenario is Scenario.INBOUND:
        return StepPlan(
            Caller("uac_bench.xml", BENCH_NUMBER, HOST, CALLER, HOLD_MS),
            (Peer("uas", "uas_bench.xml", ports.agent),),
        )
    if scenario is Scenario.OUTBOUND:
        return StepPlan(
            Caller(
                "uac_bench_auth.xml",
                OUTBOUND_DIALLED,
                phone.domain,
                phone.extension,
                HOLD_MS,
                credentials=(phone.extension, phone.password),
            ),
            (Peer("carrier", "uas_bench.xml", ports.carrier),),
        )
    return StepPlan(
        Caller("uac_bench.xml", BENCH_NUMBER, HOST, CALLER, TRANSFER_CALLER_HOLD_MS),
        _transfer_agents(ports, phone.domain),
    )


def kamailio_plan(scenario: Scenario, ports: Ports, phone: Phone) -> StepPlan:
    """The same step against Kamailio: the same peers, and for the transfer a caller that
    carries out the transfer itself (a relay does not)."""
    if scenario is Scenario.TRANSFER:
        return StepPlan(
            Caller("uac_bench_transferee.xml", BENCH_NUMBER, HOST, CALLER, TRANSFEREE_TALK_MS),
            _transfer_agents(ports, phone.domain),
        )
    return vpbx_plan(scenario, ports, phone)


def _transfer_agents(ports: Ports, domain: str) -> tuple[Peer, ...]:
    return (
        Peer(
            "agent-a",
            "uas_bench_refer.xml",
            ports.agent,
            keys={"target": AGENT_B, "domain": domain},
            judged=True,
            times_transfer=True,
            extra_args=("-aa",),
        ),
        Peer("agent-b", "uas_bench.xml", ports.target, judged=True),
    )


def kamailio_defines(scenario: Scenario, ports: Ports, phone: Phone) -> dict[str, str]:
    """`-A` defines of loadtest/kamailio/kamailio.cfg for the scenario (values quoted)."""
    defines = {"UAS_URI": f'"sip:{HOST}:{ports.agent}"'}
    if scenario is Scenario.OUTBOUND:
        defines["UAS_URI"] = f'"sip:{HOST}:{ports.carrier}"'
        defines["AUTH_USER"] = f'"{phone.extension}"'
        defines["AUTH_HA1"] = f'"{digest_ha1(phone.extension, phone.domain, phone.password)}"'
    elif scenario is Scenario.TRANSFER:
        defines["TARGET_USER"] = f'"{AGENT_B}"'
        defines["TARGET_URI"] = f'"sip:{HOST}:{ports.target}"'
    return defines


def digest_ha1(username: str, realm: str, password: str) -> str:
    """MD5(username:realm:password), what a registrar stores instead of the password."""
    text = f"{username}:{realm}:{password}".encode()
    return hashlib.md5(text, usedforsecurity=False).hexdigest()


# --- the bench platform file ------------------------------------------------------------


class PlatformFileError(ValueError):
    """The platform file lacks what the scenarios need."""


def bench_platform_documents(
    documents: Sequence[object], *, tenant: str, city: str, carrier_port: int
) -> list[dict[str, Any]]:
    """The platform file's documents plus what the outbound and transfer scenarios need.

    Agent B (extension AGENT_B in `tenant`'s PbxConfig, in `city`, so the same node rings
    it) and a platform Trunk to the carrier sipp on `carrier_port`, which `vpbx up`
    compiles into every tenant's node config. The input documents are not changed.
    """
    result: list[dict[str, Any]] = []
    found_config = False
    for document in documents:
        if document is None:
            continue
        if not isinstance(document, dict):
            raise PlatformFileError(f"a document is not a mapping: {document!r}")
        copy: dict[str, Any] = {**document}
        if copy.get("kind") == "Trunk" and _name_of(copy) == CARRIER_TRUNK:
            raise PlatformFileError(f"the platform file already has a Trunk {CARRIER_TRUNK!r}")
        if copy.get("kind") == "PbxConfig" and _name_of(copy) == tenant:
            found_config = True
            copy["spec"] = _with_agent_b(copy.get("spec") or {}, city)
        result.append(copy)
    if not found_config:
        raise PlatformFileError(f"no PbxConfig for tenant {tenant!r}")
    result.append(carrier_trunk_document(carrier_port))
    return result


def carrier_trunk_document(port: int) -> dict[str, Any]:
    return {
        "apiVersion": "config.vpbx.io/v1alpha1",
        "kind": "Trunk",
        "metadata": {"name": CARRIER_TRUNK},
        "spec": {
            "uri": f"sip:{HOST}:{port};transport=udp",
            "register": False,
            "allowedAddresses": [f"{HOST}/32"],
            "priority": 10,
        },
    }


def _name_of(document: Mapping[str, Any]) -> object:
    metadata = document.get("metadata")
    return metadata.get("name") if isinstance(metadata, dict) else None


def _with_agent_b(spec: Mapping[str, Any], city: str) -> dict[str, Any]:
    users = list(spec.get("users") or [])
    if any(str(user.get("extension")) == AGENT_B for user in users if isinstance(user, dict)):
        raise PlatformFileError(f"extension {AGENT_B} exists already; the bench adds it")
    users.append(
        {
            "extension": AGENT_B,
            "name": AGENT_B_NAME,
            "city": city,
            "sipPassword": AGENT_B_PASSWORD,
        }
    )
    return {**spec, "users": users}
