"""Control API settings (environment variables with the VPBX_ prefix)."""

from __future__ import annotations

import enum
from pathlib import Path

from pydantic import Field, SecretStr

from vpbx_common.settings import (
    InsecureDefaultSecretError,
    OutboundSettings,
    require_real_secret,
)
from vpbx_common.storage.settings import StorageSettings

# OWASP's argon2id floor: 2 iterations of 19 MiB.
PASSWORD_TIME_COST_FLOOR = 2
PASSWORD_MEMORY_KIB_FLOOR = 19 * 1024
# The mode of the test suites (tests/services/control_api.py), the only one allowed weaker
# password hashing than the floor.
TEST_MODE = "test"


class WeakPasswordHashingError(ValueError):
    """Password hashing below OWASP's floor was configured outside test mode."""


class NumberStoreKind(enum.StrEnum):
    LOCAL = "local"  # a manifest file on disk, used by `vpbx up`
    KUBERNETES = "kubernetes"  # Number custom resources through the Kubernetes API


class ControlSettings(OutboundSettings, StorageSettings):
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    database_url: str = "sqlite+aiosqlite:///var/control.db"
    database_echo: bool = False

    # Platform operator's token: manages tenants and the number pool.
    platform_admin_token: SecretStr = SecretStr("local-dev-secret")
    # Media nodes present this token to read their compiled config.
    service_token: SecretStr = SecretStr("local-dev-service-token")
    # Signs user access tokens (HS256).
    token_secret: SecretStr = SecretStr("local-dev-secret")
    access_token_ttl_s: int = Field(default=900, ge=60, le=86400)

    # Password hashing (argon2id): iterations and memory (KiB) of new hashes. The default is
    # OWASP's floor (2 iterations, 19 MiB); lower values are refused outside test mode, where
    # they keep the suites that create and log in hundreds of users fast. Stored hashes with
    # other parameters are rehashed at the next login.
    password_hash_time_cost: int = Field(default=PASSWORD_TIME_COST_FLOOR, ge=1, le=16)
    password_hash_memory_kib: int = Field(
        default=PASSWORD_MEMORY_KIB_FLOOR, ge=8, le=4 * 1024 * 1024
    )

    # Login brute-force limits: failures per window before 429.
    login_failures_per_account: int = 5
    login_failures_per_address: int = 20
    login_window_s: int = 900

    number_store: NumberStoreKind = NumberStoreKind.LOCAL
    # Local number store: where provisioned Number manifests live (vpbx up).
    local_numbers_file: Path = Path("var/numbers.yaml")
    # Kubernetes number store.
    kube_namespace: str = "vpbx"
    kubeconfig: Path | None = None

    # How long a compiled node config is reused while the tenant's revision is unchanged.
    node_config_cache_s: float = Field(default=30.0, ge=0, le=3600)

    # VPBX_OUTBOUND_PRIVATE_ALLOWED (OutboundSettings): may webhooks and HTTP decisions
    # call private, loopback or internal hosts? Unset: only in local mode.

    # Text to speech for IVR prompts: the espeak-ng executable (a name on PATH or a path)
    # and how long one rendering may take.
    espeak_ng_command: str = "espeak-ng"
    tts_timeout_s: float = Field(default=20.0, gt=0, le=300)
    # The platform's spoken phrases (queue announcements), rendered once and kept here.
    speech_cache_dir: Path = Path("var/speech")

    # Every replica rewrites every tenant's home directory this often (and at start).
    home_directory_rewrite_s: float = Field(default=300.0, ge=5, le=86400)
    # ... and where every tenant's own trunks call from (the edge takes calls to its numbers
    # from there), host names resolved again: a changed DNS answer reaches the edge this late.
    carrier_networks_rewrite_s: float = Field(default=120.0, ge=5, le=86400)

    # Click-to-call and transfers: how long the API waits for a media node's answer to a
    # command (nodes answer before anything rings long); then 503.
    command_timeout_s: float = Field(default=5.0, gt=0, le=60)

    # The readers of the call-event stream (webhooks, voice messages) block this long on
    # one read; stopping the app waits for the reads in flight.
    call_events_block_s: float = Field(default=0.5, gt=0, le=10)

    # Webhook delivery.
    webhook_timeout_s: float = 5.0
    webhook_max_attempts: int = 6
    webhook_retry_base_s: float = 2.0

    # The CDR store /v1/calls reads: the ClickHouse server at VPBX_CLICKHOUSE_URL (CommonSettings)
    # if set, else chdb on this data dir, the one the media nodes ship to (`vpbx up` passes it).
    # Unset: var/chdb in local mode; outside it no store (/v1/calls answers 503), because a chdb
    # of the API's own would hold no calls.
    chdb_path: Path | None = None

    # Web pages of other origins allowed to call this API from a browser (CORS), e.g. the
    # CRM's agent workspace, which logs people in here and plays recordings from here:
    # VPBX_CORS_ORIGINS='["https://crm.example.com"]'. Credentials are bearer tokens, never
    # cookies. Empty: no cross-origin browser calls.
    cors_origins: list[str] = Field(default_factory=list)

    # Local mode seeds the database from a platform file (examples/demo.yaml).
    seed_file: Path | None = None

    # The platform's trunks (the operator's carriers): a YAML file of Trunk manifests, in
    # a cluster mounted from a Secret by the Helm chart (values `trunks`). Unset: in local
    # mode the Trunk documents of the seed file, elsewhere none.
    platform_trunks_file: Path | None = None

    @property
    def platform_trunks_path(self) -> Path | None:
        """Where the platform's Trunk manifests are read from, if anywhere."""
        if self.platform_trunks_file is not None:
            return self.platform_trunks_file
        return self.seed_file if self.is_local else None

    @property
    def cdr_chdb_path(self) -> Path | None:
        """The chdb data dir to read CDRs from when no ClickHouse URL is set, if any."""
        if self.chdb_path is not None:
            return self.chdb_path
        return Path("var/chdb") if self.is_local else None

    def check_secrets(self) -> None:
        """Refuse to start on development secrets outside local mode, and on password
        hashing below the floor outside test mode."""
        for name, value in (
            ("VPBX_PLATFORM_ADMIN_TOKEN", self.platform_admin_token),
            ("VPBX_SERVICE_TOKEN", self.service_token),
            ("VPBX_TOKEN_SECRET", self.token_secret),
        ):
            require_real_secret(name, value, local=self.is_local)
        if self.platform_admin_token.get_secret_value() == self.service_token.get_secret_value():
            # One would shadow the other: every node would act as the platform admin.
            raise InsecureDefaultSecretError(
                "VPBX_PLATFORM_ADMIN_TOKEN and VPBX_SERVICE_TOKEN must differ"
            )
        weak = (
            self.password_hash_time_cost < PASSWORD_TIME_COST_FLOOR
            or self.password_hash_memory_kib < PASSWORD_MEMORY_KIB_FLOOR
        )
        if weak and self.mode != TEST_MODE:
            raise WeakPasswordHashingError(
                "VPBX_PASSWORD_HASH_TIME_COST and VPBX_PASSWORD_HASH_MEMORY_KIB may be below "
                f"{PASSWORD_TIME_COST_FLOOR} and {PASSWORD_MEMORY_KIB_FLOOR} only in test mode"
            )
