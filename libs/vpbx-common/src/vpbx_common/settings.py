"""Settings shared by every component: environment variables with the VPBX_ prefix."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from .events import DEFAULT_STREAM_MAX_LEN

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


def require_real_secret(name: str, value: SecretStr, *, local: bool) -> None:
    if not local and value.get_secret_value() in DEFAULT_LOCAL_SECRETS:
        raise InsecureDefaultSecretError(
            f"{name} is empty or a development default; set a real secret outside local mode"
        )
