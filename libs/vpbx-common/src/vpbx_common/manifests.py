"""Platform manifests: the Tenant and Number custom resources and the local PbxConfig.

The same documents are read by the operator (from the Kubernetes API) and by the
local launcher (from a multi-document YAML file such as ``examples/demo.yaml``).
Field names are exactly the ones a user writes in YAML (camelCase aliases); the
Python attributes are snake_case.
"""

from __future__ import annotations

import enum
import logging
import re
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from vpbx_common.e164 import InvalidPhoneNumber, normalize_e164
from vpbx_common.models import StrictModel
from vpbx_common.pbx import RingStrategy
from vpbx_common.trunks import TrunkUriError, parse_networks, parse_trunk_uri

logger = logging.getLogger(__name__)

PLATFORM_API_VERSION = "vpbx.io/v1alpha1"
CONFIG_API_VERSION = "config.vpbx.io/v1alpha1"

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Group names start with a letter so that a route entry made only of digits is
# always an extension and never ambiguous with a group.
GROUP_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_EXTENSION = re.compile(r"^\d{2,6}$")
MIN_SIP_PASSWORD_LENGTH = 8

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _dns_label(value: str) -> str:
    if len(value) > 63 or not DNS_LABEL.fullmatch(value):
        raise ValueError(
            "not a DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)"
        )
    return value


def _dns_subdomain(value: str) -> str:
    if len(value) > 253 or not _DNS_SUBDOMAIN.fullmatch(value):
        raise ValueError("not a DNS-1123 subdomain (lowercase letters, digits, '-' and '.')")
    return value


def _sip_domain(value: str) -> str:
    # Domains compare case-insensitively; storing one spelling keeps lookups exact.
    lowered = value.lower().rstrip(".")
    if len(lowered) > 253 or not _DNS_SUBDOMAIN.fullmatch(lowered):
        raise ValueError("not a domain name")
    return lowered


def _e164(value: str) -> str:
    try:
        normalized = normalize_e164(value)
    except InvalidPhoneNumber as error:
        raise ValueError(f"not an E.164 number ({error})") from error
    if normalized != value:
        raise ValueError(f"not an E.164 number (write it as {normalized})")
    return value


def _extension(value: str) -> str:
    if not _EXTENSION.fullmatch(value):
        raise ValueError("an extension is 2 to 6 digits")
    return value


def _group_name(value: str) -> str:
    if len(value) > 63 or not GROUP_NAME.fullmatch(value):
        raise ValueError("a group name starts with a letter: lowercase letters, digits and '-'")
    return value


def _email(value: str) -> str:
    if not _EMAIL.fullmatch(value):
        raise ValueError("not an e-mail address")
    return value


def _quoted(value: object) -> object:
    # YAML reads +74950000001 and 0101 as integers (the latter as octal), losing
    # the '+' or leading zero; only the user can say what was meant.
    if isinstance(value, int | float) and not isinstance(value, bool):
        raise ValueError(f"write it as a quoted string (YAML read {value!r} as a number)")
    return value


DnsLabel = Annotated[str, AfterValidator(_dns_label)]
DnsSubdomain = Annotated[str, AfterValidator(_dns_subdomain)]
SipDomain = Annotated[str, AfterValidator(_sip_domain)]
E164Number = Annotated[str, BeforeValidator(_quoted), AfterValidator(_e164)]
Extension = Annotated[str, BeforeValidator(_quoted), AfterValidator(_extension)]
GroupName = Annotated[str, AfterValidator(_group_name)]
Email = Annotated[str, AfterValidator(_email)]


class _Spec(StrictModel):
    """A spec section: a misspelt key in a hand-written file must fail loudly."""


class ObjectMeta(BaseModel):
    """The part of Kubernetes metadata vpbx uses; server-set fields are tolerated."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    name: str
    creation_timestamp: datetime | None = Field(default=None, alias="creationTimestamp")
    generation: int | None = None
    uid: str | None = None
    # The server's version of the object: writers send it back so a stale write fails.
    resource_version: str | None = Field(default=None, alias="resourceVersion")
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("creation_timestamp")
    @classmethod
    def _assume_utc(cls, value: datetime | None) -> datetime | None:
        # Kubernetes timestamps are UTC; a naive one from a hand-written file must
        # still compare with them.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class LabelMeta(ObjectMeta):
    name: DnsLabel


class SubdomainMeta(ObjectMeta):
    name: DnsSubdomain


class _Resource(StrictModel):
    # Objects read back from the API carry a status the operator wrote; it is
    # not part of the desired state.
    status: dict[str, Any] | None = None


# --- Tenant -----------------------------------------------------------------


class RecordingPolicy(enum.StrEnum):
    OFF = "off"
    ALL = "all"
    ON_DEMAND = "on-demand"


class Plan(_Spec):
    """Commercial limits; 0 means unlimited."""

    seats: int = Field(default=0, ge=0)
    # Phone numbers (Number resources) the tenant may hold; the control API enforces it.
    numbers: int = Field(default=0, ge=0, le=100_000)
    concurrent_calls: int = Field(default=0, ge=0, alias="concurrentCalls")
    recording_storage_gib: int = Field(default=0, ge=0, alias="recordingStorageGiB")


class CityPlacement(_Spec):
    """One city where the tenant gets a media node."""

    name: DnsLabel
    replicas: int = Field(default=1, ge=1)
    # Kubernetes ResourceRequirements (requests/limits), passed through as given.
    resources: dict[str, Any] | None = None


class Recording(_Spec):
    policy: RecordingPolicy = RecordingPolicy.OFF


class OutboundPolicy(_Spec):
    """What a tenant may dial out (fraud protection: the operator pays the carrier)."""

    country: str = Field(
        default="RU",
        pattern=r"^[A-Z]{2}$",
        description="ISO 3166 country of the national forms people dial (8 916..., 916...)",
    )
    international: bool = Field(default=False, description="calls to other countries allowed")
    premium: bool = Field(default=False, description="premium-rate and shared-cost numbers allowed")
    max_concurrent: int = Field(
        default=0, ge=0, alias="maxConcurrent", description="outbound calls at once; 0 = plan limit"
    )
    max_minutes_per_day: int = Field(
        default=0,
        ge=0,
        alias="maxMinutesPerDay",
        description="outbound minutes per day; 0 = no cap",
    )
    default_caller_id: E164Number | None = Field(
        default=None,
        alias="defaultCallerId",
        description="shown when no number is in or near the callee's region",
    )


class TenantSpec(_Spec):
    display_name: str = Field(alias="displayName", min_length=1)
    sip_domain: SipDomain = Field(alias="sipDomain")
    plan: Plan = Field(default_factory=Plan)
    cities: list[CityPlacement] = Field(min_length=1)
    suspended: bool = False
    recording: Recording = Field(default_factory=Recording)
    outbound: OutboundPolicy = Field(default_factory=OutboundPolicy)

    @field_validator("cities")
    @classmethod
    def _unique_cities(cls, cities: list[CityPlacement]) -> list[CityPlacement]:
        repeated = _repeated(c.name for c in cities)
        if repeated:
            raise ValueError(f"city listed more than once: {', '.join(repeated)}")
        return cities

    @property
    def city_names(self) -> list[str]:
        return [city.name for city in self.cities]


class Tenant(_Resource):
    api_version: Literal["vpbx.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Tenant"]
    metadata: LabelMeta
    spec: TenantSpec

    @property
    def name(self) -> str:
        return self.metadata.name


# --- Number -----------------------------------------------------------------


class NumberSpec(_Spec):
    number: E164Number
    tenant: DnsLabel
    city: DnsLabel
    channels: int = Field(default=0, ge=0, description="concurrent calls; 0 = unlimited")
    label: str | None = Field(default=None, min_length=1, max_length=63)
    entry: Annotated[str, BeforeValidator(_quoted)] = Field(
        min_length=1,
        description=(
            "group name, extension number, `<kind>:<uuid>` (a control API object: "
            "user, group, ivr, route-plan, conference) or `unrouted`"
        ),
    )
    # Record calls to this number: None (left out) follows the tenant's recording policy;
    # a user's own setting wins over it (vpbx_common.nodeconfig: user, number, tenant).
    record: bool | None = Field(
        default=None,
        description="record calls to this number; left out: the tenant's policy decides",
    )


class Number(_Resource):
    api_version: Literal["vpbx.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Number"]
    metadata: SubdomainMeta
    spec: NumberSpec

    @property
    def name(self) -> str:
        return self.metadata.name


# --- Trunk (the operator's carriers: platform file, Helm values) --------------


class TrunkSpec(_Spec):
    uri: str = Field(description="sip:HOST[:PORT][;transport=udp|tcp]")
    registers: bool = Field(
        default=False, alias="register", description="register with digest auth"
    )
    username: str | None = Field(default=None, min_length=1, max_length=128)
    password: SecretStr | None = None
    allowed_addresses: list[str] = Field(
        default_factory=list,
        alias="allowedAddresses",
        description="CIDRs its calls come from; empty: the addresses the host resolves to",
    )
    priority: int = Field(default=100, ge=0, le=10_000)
    passes_caller_id: bool = Field(
        default=False,
        alias="passesCallerId",
        description="accepts a caller number that is not the tenant's (forwarded calls)",
    )

    @field_validator("uri")
    @classmethod
    def _trunk_uri(cls, value: str) -> str:
        try:
            return str(parse_trunk_uri(value))
        except TrunkUriError as error:
            raise ValueError(str(error)) from error

    @field_validator("allowed_addresses")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return [str(network) for network in parse_networks(value)]

    @model_validator(mode="after")
    def _credentials_to_register(self) -> TrunkSpec:
        if self.registers and (self.username is None or self.password is None):
            raise ValueError("a registering trunk needs username and password")
        return self


class Trunk(_Resource):
    api_version: Literal["config.vpbx.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["Trunk"]
    metadata: LabelMeta
    spec: TrunkSpec

    @property
    def name(self) -> str:
        return self.metadata.name


# --- PbxConfig (local mode; the control API owns it in cluster mode) ----------


class PbxUser(_Spec):
    extension: Extension
    name: str = Field(min_length=1)
    city: DnsLabel
    sip_password: SecretStr = Field(alias="sipPassword")
    email: Email | None = None

    @field_validator("sip_password")
    @classmethod
    def _long_enough(cls, password: SecretStr) -> SecretStr:
        # Scanners brute-force SIP registrations all day; short secrets fall first.
        if len(password.get_secret_value()) < MIN_SIP_PASSWORD_LENGTH:
            raise ValueError(f"a SIP password needs at least {MIN_SIP_PASSWORD_LENGTH} characters")
        return password


class PbxAdmin(_Spec):
    """A tenant admin seeded in local mode: logs in to the control API with these."""

    email: Email
    password: SecretStr

    @field_validator("password")
    @classmethod
    def _long_enough(cls, password: SecretStr) -> SecretStr:
        if len(password.get_secret_value()) < MIN_SIP_PASSWORD_LENGTH:
            raise ValueError(f"a password needs at least {MIN_SIP_PASSWORD_LENGTH} characters")
        return password


class RingGroup(_Spec):
    name: GroupName
    strategy: RingStrategy = RingStrategy.RING_ALL
    members: list[Extension] = Field(min_length=1)
    ring_timeout_seconds: int = Field(default=30, ge=1, le=600, alias="ringTimeoutSeconds")


class PbxConfigSpec(_Spec):
    users: list[PbxUser] = Field(default_factory=list)
    groups: list[RingGroup] = Field(default_factory=list)
    admins: list[PbxAdmin] = Field(default_factory=list)


class PbxConfig(_Resource):
    api_version: Literal["config.vpbx.io/v1alpha1"] = Field(alias="apiVersion")
    kind: Literal["PbxConfig"]
    metadata: LabelMeta
    spec: PbxConfigSpec = Field(default_factory=PbxConfigSpec)

    @property
    def tenant(self) -> str:
        return self.metadata.name


Manifest = Tenant | Number | PbxConfig | Trunk

_KINDS: dict[str, type[Tenant] | type[Number] | type[PbxConfig] | type[Trunk]] = {
    "Tenant": Tenant,
    "Number": Number,
    "PbxConfig": PbxConfig,
    "Trunk": Trunk,
}


# --- loading ----------------------------------------------------------------


class ManifestError(ValueError):
    """A document that is not a valid manifest; the message names where and why."""

    def __init__(
        self,
        message: str,
        *,
        document_index: int | None = None,
        kind: str | None = None,
        name: str | None = None,
        problems: Sequence[str] = (),
    ) -> None:
        super().__init__(message)
        self.document_index = document_index
        self.kind = kind
        self.name = name
        self.problems = list(problems)


@dataclass(frozen=True)
class PlatformFile:
    """Everything a platform file declares, in file order."""

    tenants: list[Tenant] = field(default_factory=list)
    numbers: list[Number] = field(default_factory=list)
    configs: list[PbxConfig] = field(default_factory=list)
    trunks: list[Trunk] = field(default_factory=list)


def _field_path(location: tuple[int | str, ...]) -> str:
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else part
    return path or "(document)"


def _error_text(error: Mapping[str, Any]) -> str:
    message = str(error["msg"])
    # pydantic prefixes messages of our own validators with "Value error, ".
    message = message.removeprefix("Value error, ")
    return f"{_field_path(tuple(error['loc']))}: {message}"


def _describe(index: int | None, kind: str | None, name: str | None) -> str:
    where = f"document {index}" if index is not None else "document"
    if kind and name:
        return f"{where} ({kind}/{name})"
    if kind:
        return f"{where} ({kind})"
    return where


def parse_manifest(document: object, *, document_index: int | None = None) -> Manifest:
    """One Tenant, Number or PbxConfig from a decoded YAML/JSON document."""
    if not isinstance(document, Mapping):
        where = _describe(document_index, None, None)
        raise ManifestError(
            f"{where}: a manifest must be a mapping, got {type(document).__name__}",
            document_index=document_index,
        )
    kind = document.get("kind")
    metadata = document.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None
    name_text = name if isinstance(name, str) else None
    kind_text = kind if isinstance(kind, str) else None
    where = _describe(document_index, kind_text, name_text)
    model = _KINDS.get(kind_text or "")
    if model is None:
        known = ", ".join(_KINDS)
        raise ManifestError(
            f"{where}: kind: unknown kind {kind!r} (expected one of {known})",
            document_index=document_index,
            kind=kind_text,
            name=name_text,
        )
    try:
        return model.model_validate(document)
    except ValidationError as error:
        problems = [_error_text(detail) for detail in error.errors()]
        raise ManifestError(
            f"{where}: {'; '.join(problems)}",
            document_index=document_index,
            kind=kind_text,
            name=name_text,
            problems=problems,
        ) from error


def parse_platform_documents(documents: Iterable[object]) -> PlatformFile:
    """Sort decoded documents into a PlatformFile; empty documents are skipped."""
    platform = PlatformFile()
    for index, document in enumerate(documents, start=1):
        if document is None:
            continue
        manifest = parse_manifest(document, document_index=index)
        if isinstance(manifest, Tenant):
            platform.tenants.append(manifest)
        elif isinstance(manifest, Number):
            platform.numbers.append(manifest)
        elif isinstance(manifest, Trunk):
            platform.trunks.append(manifest)
        else:
            platform.configs.append(manifest)
    return platform


def parse_platform_yaml(text: str) -> PlatformFile:
    """A multi-document YAML text (``---`` separated, like kubectl files)."""
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as error:
        raise ManifestError(f"not valid YAML: {error}") from error
    return parse_platform_documents(documents)


def load_platform_file(path: str | Path) -> PlatformFile:
    """Read and check the schema of a platform file; see ``validate_platform``."""
    source = Path(path)
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as error:
        raise ManifestError(f"{source}: cannot read: {error.strerror or error}") from error
    try:
        platform = parse_platform_yaml(text)
    except ManifestError as error:
        raise ManifestError(
            f"{source}: {error}",
            document_index=error.document_index,
            kind=error.kind,
            name=error.name,
            problems=error.problems,
        ) from error
    logger.info(
        "loaded %s: %d tenants, %d numbers, %d PBX configs",
        source,
        len(platform.tenants),
        len(platform.numbers),
        len(platform.configs),
    )
    return platform


# --- cross-document checks ---------------------------------------------------


def _repeated(values: Iterable[str]) -> list[str]:
    return sorted(value for value, count in Counter(values).items() if count > 1)


def _config_problems(config: PbxConfig, tenant: Tenant | None) -> list[str]:
    where = f"PbxConfig/{config.tenant}"
    if tenant is None:
        return [f"{where}: tenant {config.tenant!r} does not exist"]
    problems: list[str] = []
    extensions = [user.extension for user in config.spec.users]
    problems += [f"{where}: extension {ext} is defined twice" for ext in _repeated(extensions)]
    groups = [group.name for group in config.spec.groups]
    problems += [f"{where}: group {name!r} is defined twice" for name in _repeated(groups)]
    cities = set(tenant.spec.city_names)
    for user in config.spec.users:
        if user.city not in cities:
            problems.append(
                f"{where}: user {user.extension} is in city {user.city!r}, "
                f"which tenant {tenant.name!r} does not serve"
            )
    known = set(extensions)
    for group in config.spec.groups:
        for member in group.members:
            if member not in known:
                problems.append(
                    f"{where}: group {group.name!r} member {member} is not a defined extension"
                )
        problems += [
            f"{where}: group {group.name!r} lists member {member} twice"
            for member in _repeated(group.members)
        ]
    admins = [admin.email.lower() for admin in config.spec.admins]
    problems += [f"{where}: admin {email} is listed twice" for email in _repeated(admins)]
    seats = tenant.spec.plan.seats
    if seats and len(config.spec.users) > seats:
        problems.append(f"{where}: {len(config.spec.users)} users exceed the plan's {seats} seats")
    return problems


# A Number's entry as the control API writes it: `<kind>:<uuid>` names one of its
# objects (resolved to a name when the node config is compiled, so renaming a
# group never breaks a number), and `unrouted` is a number without an entry yet
# (its calls are refused with 480).
UNROUTED_ENTRY = "unrouted"
ENTRY_REFERENCE_KINDS = ("user", "group", "ivr", "route-plan", "conference")


def entry_reference(entry: str) -> tuple[str, uuid.UUID] | None:
    """``("group", UUID(...))`` for an entry written as ``group:<uuid>``, else None."""
    kind, separator, ident = entry.partition(":")
    if not separator or kind not in ENTRY_REFERENCE_KINDS:
        return None
    try:
        return kind, uuid.UUID(ident)
    except ValueError:
        return None


def entry_resolves(entry: str, config: PbxConfig | None) -> bool:
    """Whether a Number's entry names a group or an extension in the tenant's config.

    ``unrouted`` and ``<kind>:<uuid>`` references are accepted as they are: only
    the control API, which owns those objects, can resolve a reference.
    """
    if entry == UNROUTED_ENTRY or entry_reference(entry) is not None:
        return True
    if config is None:
        return False
    if entry.isdigit():
        return any(user.extension == entry for user in config.spec.users)
    return any(group.name == entry for group in config.spec.groups)


def validate_platform(platform: PlatformFile) -> list[str]:
    """Problems that make a platform file unusable as a whole; empty when it is fine.

    The schema of each document is already checked while loading; these are the
    checks across documents.
    """
    problems: list[str] = []
    problems += [
        f"Tenant/{name}: defined twice" for name in _repeated(t.name for t in platform.tenants)
    ]
    problems += [
        f"Number/{name}: defined twice" for name in _repeated(n.name for n in platform.numbers)
    ]
    problems += [
        f"PbxConfig/{name}: defined twice" for name in _repeated(c.tenant for c in platform.configs)
    ]
    problems += [
        f"Trunk/{name}: defined twice" for name in _repeated(t.name for t in platform.trunks)
    ]
    domains: dict[str, list[str]] = {}
    for tenant in platform.tenants:
        domains.setdefault(tenant.spec.sip_domain, []).append(tenant.name)
    for domain, owners in sorted(domains.items()):
        if len(owners) > 1:
            problems.append(f"sipDomain {domain} is used by several tenants: {', '.join(owners)}")

    # With duplicates (reported above) the first definition is checked, as the
    # desired-state code uses the first one too.
    tenants: dict[str, Tenant] = {}
    for tenant in platform.tenants:
        tenants.setdefault(tenant.name, tenant)
    configs: dict[str, PbxConfig] = {}
    for config in platform.configs:
        configs.setdefault(config.tenant, config)
    for config in configs.values():
        problems += _config_problems(config, tenants.get(config.tenant))
    # Log-in e-mails are unique across the whole platform (the control API's users).
    emails = [
        email.lower()
        for config in configs.values()
        for email in [
            *(admin.email for admin in config.spec.admins),
            *(user.email for user in config.spec.users if user.email),
        ]
    ]
    problems += [
        f"e-mail {email} belongs to several users or admins" for email in _repeated(emails)
    ]

    owners_of_number: dict[str, list[str]] = {}
    for number in platform.numbers:
        where = f"Number/{number.name}"
        spec = number.spec
        owners_of_number.setdefault(spec.number, []).append(number.name)
        owner = tenants.get(spec.tenant)
        if owner is None:
            problems.append(f"{where}: tenant {spec.tenant!r} does not exist")
            continue
        if spec.city not in owner.spec.city_names:
            problems.append(f"{where}: city {spec.city!r} is not served by tenant {owner.name!r}")
        if not entry_resolves(spec.entry, configs.get(spec.tenant)):
            what = "an extension" if spec.entry.isdigit() else "a group"
            problems.append(f"{where}: entry {spec.entry!r} is not {what} of tenant {owner.name!r}")
    for e164, names in sorted(owners_of_number.items()):
        if len(names) > 1:
            problems.append(f"number {e164} is claimed by several Numbers: {', '.join(names)}")
    return problems
