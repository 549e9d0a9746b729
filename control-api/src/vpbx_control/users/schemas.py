"""Request and response documents of /v1/users and their SIP devices."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from vpbx_common.pbx import Presence

from ..auth.principal import Role
from ..prompts.schemas import AudioOrTone
from ..schema_base import StrictInput
from ..targets import E164
from .models import UserRow

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s.]+$")


def _email(value: str) -> str:
    value = value.strip().lower()
    if not _EMAIL.fullmatch(value):
        raise ValueError("not an e-mail address")
    return value


def _unique_skills(value: list[str]) -> list[str]:
    return list(dict.fromkeys(value))


Email = Annotated[
    str,
    Field(min_length=3, max_length=254, examples=["anna@acme.example"]),
    AfterValidator(_email),
]
PersonName = Annotated[
    str, Field(min_length=1, max_length=200, pattern=r"^\S(.*\S)?$", examples=["Anna Petrova"])
]
Extension = Annotated[
    str,
    Field(
        pattern=r"^[0-9]{2,6}$",
        description="internal number, 2 to 6 digits, unique within the tenant",
        examples=["101"],
    ),
]
City = Annotated[
    str,
    Field(min_length=1, max_length=63, description="one of the tenant's cities", examples=["msk"]),
]
Rank = Annotated[
    int, Field(ge=0, le=100, description="qualification for routing; higher rings first")
]
Skill = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$", examples=["english"])]
Skills = Annotated[
    list[Skill],
    Field(max_length=32, description="short slugs; duplicates are dropped"),
    AfterValidator(_unique_skills),
]
Password = Annotated[
    str,
    Field(min_length=10, max_length=1024, description="stored hashed (argon2), never returned"),
]
DeviceName = Annotated[
    str, Field(min_length=1, max_length=100, pattern=r"^\S(.*\S)?$", examples=["desk phone"])
]
SipUsername = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="SIP authentication user name, unique within the tenant",
        examples=["101"],
    ),
]

ForwardAfter = Annotated[
    int, Field(ge=5, le=120, description="seconds of ringing before forwarding to the mobile")
]
WrapUp = Annotated[
    int, Field(ge=0, le=600, description="seconds after a call before the next one is offered")
]


ForwardAllTo = Annotated[
    E164 | None,
    Field(
        description="unconditional forward: every call to the user goes to this number "
        "(through the tenant's trunks, subject to the outbound policy) instead of their "
        "phones; null: off",
        examples=["+79161234567"],
    ),
]


Record = Annotated[
    bool | None,
    Field(
        description="record this user's calls: true or false, winning over the number's "
        "setting and the tenant's policy; null follows them. Set by tenant admins only",
        examples=[True],
    ),
]


CallerId = Annotated[
    E164 | None,
    Field(
        description="the number this user's outbound calls show: one of the tenant's "
        "numbers; null: chosen per call by the callee's region (local presence), else the "
        "tenant's default caller ID. Set by tenant admins only",
        examples=["+74951234567"],
    ),
]


VoicemailGreeting = Annotated[
    AudioOrTone | None,
    Field(
        description=(
            "what callers hear in this user's voicemail before the beep: one of the "
            "tenant's prompts (`{kind: audio, prompt_id}`, from `POST /v1/prompts`) or a "
            "tone; null: the platform's greeting, spoken in the tenant's language"
        ),
    ),
]


class UserSettings(StrictInput):
    """Personal settings; the user may change them themself."""

    forward_to_mobile: bool = Field(
        default=False,
        description="follow-me: a call to the user rings their mobile (through the tenant's "
        "trunks) too, `forward_after_s` after their phones, or together with them when "
        "`mobile_parallel`; answering on the mobile counts as the user answering",
    )
    forward_after_s: ForwardAfter = 20
    mobile_parallel: bool = Field(
        default=False, description="ring the mobile together with the phones, not after them"
    )
    forward_all_to: ForwardAllTo = None
    wrap_up_s: WrapUp = 0
    voicemail: bool = Field(default=True, description="unanswered calls go to voicemail")
    record: Record = None
    voicemail_greeting: VoicemailGreeting = None
    caller_id: CallerId = None

    @classmethod
    def stored(cls, document: dict[str, Any] | None) -> UserSettings:
        """The settings kept on a row; keys this version does not know are ignored."""
        known = {k: v for k, v in (document or {}).items() if k in cls.model_fields}
        return cls.model_validate(known)


class UserSettingsPatch(StrictInput):
    """A partial change of UserSettings: fields left out keep their value."""

    forward_to_mobile: bool | None = None
    forward_after_s: ForwardAfter | None = None
    mobile_parallel: bool | None = None
    forward_all_to: ForwardAllTo = None
    wrap_up_s: WrapUp | None = None
    voicemail: bool | None = None
    record: Record = None
    voicemail_greeting: VoicemailGreeting = None
    caller_id: CallerId = None

    def merged(self, current: UserSettings) -> UserSettings:
        given = self.model_dump(exclude_unset=True)
        changes = {k: v for k, v in given.items() if v is not None}
        # null is a value for these: back to number and tenant; back to the default greeting;
        # back to the caller ID by region.
        for key in ("record", "voicemail_greeting", "caller_id", "forward_all_to"):
            if key in self.model_fields_set:
                changes[key] = given[key]
        return UserSettings.model_validate({**current.model_dump(), **changes})


class UserCreate(StrictInput):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "email": "anna@acme.example",
                    "name": "Anna Petrova",
                    "role": "agent",
                    "extension": "101",
                    "city": "msk",
                    "mobile": "+79161234567",
                    "rank": 50,
                    "skills": ["english", "sales"],
                    "settings": {"forward_to_mobile": True, "forward_after_s": 20},
                    "password": "a long initial password",
                }
            ]
        },
    )

    email: Email
    name: PersonName
    role: Role = Role.AGENT
    extension: Extension | None = None
    city: City | None = None
    mobile: E164 | None = None
    rank: Rank = 0
    skills: Skills = Field(default_factory=list)
    presence: Presence = Presence.AVAILABLE
    settings: UserSettings = Field(default_factory=UserSettings)
    password: Password | None = Field(
        default=None, description="initial password; without one the user cannot log in"
    )


class UserUpdate(StrictInput):
    """A tenant admin's change. ``extension``, ``city`` and ``mobile`` are cleared by null;
    null leaves the other fields unchanged. A new role or password signs the user out."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"rank": 80, "skills": ["english"], "settings": {"wrap_up_s": 15}}]
        },
    )

    email: Email | None = None
    name: PersonName | None = None
    role: Role | None = None
    extension: Extension | None = None
    city: City | None = None
    mobile: E164 | None = None
    rank: Rank | None = None
    skills: Skills | None = None
    presence: Presence | None = None
    settings: UserSettingsPatch | None = None
    password: Password | None = None


class SelfUpdate(StrictInput):
    """What a user may change about themself. A new password needs the current one."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"presence": "away", "settings": {"wrap_up_s": 30}}]},
    )

    presence: Presence | None = None
    settings: UserSettingsPatch | None = None
    mobile: E164 | None = Field(default=None, description="null clears it")
    password: Password | None = Field(
        default=None, description="signs out every session; log in again"
    )
    current_password: str | None = Field(default=None, max_length=1024)

    @model_validator(mode="after")
    def _password_needs_current(self) -> SelfUpdate:
        if self.password is not None and not self.current_password:
            raise ValueError("current_password is required to set a new password")
        return self


class PresenceChange(StrictInput):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"presence": "do-not-disturb"}]}
    )

    presence: Presence = Field(examples=["do-not-disturb"])


class UserOut(BaseModel):
    id: uuid.UUID
    email: str
    name: str
    role: Role
    extension: str | None
    city: str | None
    mobile: str | None
    rank: int
    skills: list[str]
    presence: Presence
    settings: UserSettings
    has_password: bool = Field(description="whether the user can log in")
    last_login_at: dt.datetime | None
    revision: int
    created_at: dt.datetime
    updated_at: dt.datetime

    @classmethod
    def of(cls, row: UserRow) -> UserOut:
        return cls(
            id=row.id,
            email=row.email,
            name=row.name,
            role=row.role,
            extension=row.extension,
            city=row.city,
            mobile=row.mobile,
            rank=row.rank,
            skills=list(row.skills or []),
            presence=row.presence,
            settings=UserSettings.stored(row.settings),
            has_password=row.password_hash is not None,
            last_login_at=row.last_login_at,
            revision=row.revision,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class DeviceCreate(StrictInput):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "desk"}]})

    name: DeviceName
    username: SipUsername | None = Field(
        default=None,
        description="defaults to the user's extension, or <extension>-<n> when that is taken",
    )


class BrowserDeviceCreate(StrictInput):
    """A user's own softphone in the agent workspace (POST /v1/users/me/devices)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"kind": "browser", "name": "Chromium on laptop"}]},
    )

    kind: Literal["browser"] = Field(
        description="only browser devices are self-service; desk phones are a tenant admin's"
    )
    name: DeviceName


class DeviceOut(BaseModel):
    id: uuid.UUID
    user_id: uuid.UUID
    name: str
    username: str
    kind: str = Field(default="phone", description="phone, or browser (the workspace's own)")
    revision: int
    created_at: dt.datetime
    updated_at: dt.datetime


class DeviceCredentials(DeviceOut):
    """Shown once, on creation and on rotation: only digest hashes are kept."""

    password: str = Field(description="the SIP password; it cannot be read again")
    sip_domain: str = Field(description="the digest realm and registrar domain")
