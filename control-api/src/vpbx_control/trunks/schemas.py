"""Request and response documents of /v1/trunks. The password is written, never read."""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, JsonValue, SecretStr

from vpbx_common.trunks import TrunkUriError, parse_networks, parse_trunk_uri

from ..schema_base import StrictInput


def _trunk_uri(value: str) -> str:
    try:
        return str(parse_trunk_uri(value))
    except TrunkUriError as exc:
        raise ValueError(str(exc)) from exc


def _networks(value: list[str]) -> list[str]:
    networks = [str(network) for network in parse_networks(value)]
    return list(dict.fromkeys(networks))


def _credential(value: str) -> str:
    if any(ord(character) < 0x20 or ord(character) == 0x7F for character in value):
        raise ValueError("control characters are not allowed")
    return value


def _secret(value: SecretStr) -> SecretStr:
    _credential(value.get_secret_value())
    return value


TrunkName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        pattern=r"^\S(.*\S)?$",
        description="unique within the tenant",
        examples=["beeline"],
    ),
]
TrunkUri = Annotated[
    str,
    Field(
        max_length=300,
        description="`sip:HOST[:PORT][;transport=udp|tcp]` (port 5060 and UDP by default); "
        "outside local mode HOST must be on the Internet",
        examples=["sip:sip.carrier.example:5060;transport=udp"],
    ),
    AfterValidator(_trunk_uri),
]
REGISTERS_DOC = (
    "the tenant's nodes register with the carrier (digest auth with username and "
    "password); false: the carrier and the nodes know each other by address (IP "
    "authentication)"
)
Username = Annotated[
    str,
    Field(min_length=1, max_length=128, description="the digest user name the carrier gave"),
    AfterValidator(_credential),
]
Password = Annotated[
    SecretStr,
    Field(
        min_length=1,
        max_length=256,
        description="the digest password; stored for the nodes, never returned",
    ),
    AfterValidator(_secret),
]
AllowedAddresses = Annotated[
    list[str],
    Field(
        max_length=32,
        description="CIDRs (or single addresses) the carrier's calls come from; empty: "
        "the addresses HOST resolves to",
        examples=[["192.0.2.0/24"]],
    ),
    AfterValidator(_networks),
]
Priority = Annotated[
    int,
    Field(
        ge=0,
        le=10_000,
        description="lower goes first; the next trunk is tried on a 5xx, 408 or no answer",
    ),
]
PassesCallerId = Annotated[
    bool,
    Field(
        description="the carrier accepts a caller number that is not the tenant's (a "
        "forwarded call shows its original caller); false: the tenant's number is shown"
    ),
]

EXAMPLE: dict[str, JsonValue] = {
    "name": "beeline",
    "uri": "sip:sip.carrier.example:5060;transport=udp",
    "register": True,
    "username": "74951234567",
    "password": "carrier-given-secret",
    "allowed_addresses": ["192.0.2.0/24"],
    "priority": 1,
    "passes_caller_id": False,
}


class TrunkCreate(StrictInput):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [EXAMPLE]})

    name: TrunkName
    uri: TrunkUri
    registers: bool = Field(default=False, alias="register", description=REGISTERS_DOC)
    username: Username | None = None
    password: Password | None = None
    allowed_addresses: AllowedAddresses = Field(default_factory=list)
    priority: Priority = 100
    passes_caller_id: PassesCallerId = False


class TrunkUpdate(StrictInput):
    """Fields left out are not changed; so is the password unless given. ``username`` and
    ``password`` are cleared by null (a registering trunk keeps needing both)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"priority": 5}, {"password": "the new one"}]},
    )

    name: TrunkName | None = None
    uri: TrunkUri | None = None
    registers: bool | None = Field(default=None, alias="register", description=REGISTERS_DOC)
    username: Username | None = None
    password: Password | None = None
    allowed_addresses: AllowedAddresses | None = None
    priority: Priority | None = None
    passes_caller_id: PassesCallerId | None = None


class RegistrationState(enum.StrEnum):
    REGISTERED = "registered"
    REGISTERING = "registering"
    FAILED = "failed"
    NOT_REGISTERING = "not-registering"
    UNKNOWN = "unknown"


class CityRegistration(BaseModel):
    state: RegistrationState
    reason: str = Field(
        description="why it failed (the carrier's answer, `no answer`); empty otherwise"
    )
    expires_at: dt.datetime | None = Field(description="when the current binding lapses")
    updated_at: dt.datetime | None = Field(description="when the node last reported")


class Registration(BaseModel):
    """As the tenant's nodes report it: one registration per city."""

    state: RegistrationState = Field(
        description="`not-registering` when `register` is off; `unknown` before any node "
        "reported; else the worst city's state (failed, then registering, then unknown)"
    )
    reason: str = Field(description="the reason of the city that decided `state`, if any")
    cities: dict[str, CityRegistration] = Field(
        description="each of the tenant's cities (a node registers in every one)"
    )


class TrunkOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: uuid.UUID
    name: str
    uri: str
    registers: bool = Field(alias="register", description=REGISTERS_DOC)
    username: str | None
    password_set: bool = Field(description="whether a password is stored (it is never shown)")
    allowed_addresses: list[str]
    priority: int
    passes_caller_id: bool
    registration: Registration
    revision: int
    created_at: dt.datetime
    updated_at: dt.datetime
