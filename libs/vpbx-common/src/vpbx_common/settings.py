"""Settings shared by every component: environment variables with the VPBX_ prefix."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .events import DEFAULT_STREAM_MAX_LEN
from .outbound import OutboundPolicy

# Well-known development values; refused outside local mode.
DEFAULT_LOCAL_SECRETS = frozenset({"", "local-dev-secret", "local-dev-service-token", "change-me"})


class InsecureDefaultSecretError(ValueError):
    """A default or empty secret was configured outside local mode."""


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="VPBX_", extra="ignore")

    mode: str = "local"
    redis_url: str | None = None
    clickhouse_url: str | None = None
    log_level: str = "INFO"
    # Approximate bound of the call-event stream (vpbx:call-events, XADD MAXLEN ~).
    call_events_max_len: int = Field(default=DEFAULT_STREAM_MAX_LEN, ge=1000)

    @property
    def is_local(self) -> bool:
        return self.mode == "local"


class OutboundSettings(CommonSettings):
    """Settings of a component that calls tenant-chosen URLs: the control API (webhooks)
    and the media node (HTTP decisions) build the same policy from the same knobs."""

    # May such requests reach private, loopback or internal hosts (VPBX_OUTBOUND_PRIVATE_ALLOWED)?
    # Unset: only in local mode (see vpbx_common/outbound.py for why not in a cluster).
    outbound_private_allowed: bool | None = None

    @property
    def allows_private_outbound(self) -> bool:
        if self.outbound_private_allowed is not None:
            return self.outbound_private_allowed
        return self.is_local

    def outbound_policy(self) -> OutboundPolicy:
        return OutboundPolicy(allow_private=self.allows_private_outbound)


def require_real_secret(name: str, value: SecretStr, *, local: bool) -> None:
    if not local and value.get_secret_value() in DEFAULT_LOCAL_SECRETS:
        raise InsecureDefaultSecretError(
            f"{name} is empty or a development default; set a real secret outside local mode"
        )
