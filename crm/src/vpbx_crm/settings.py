"""The CRM service's settings (pydantic-settings, ``VPBX_`` prefix)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from vpbx_common.settings import CommonSettings, require_real_secret

# Where `scripts/build-web.sh` puts the agent workspace built from crm/web (a source
# checkout); an installed image sets VPBX_WEB_DIR.
DEFAULT_WEB_DIR = Path(__file__).resolve().parents[2] / "web" / "dist"


class CrmSettings(CommonSettings):
    http_host: str = "127.0.0.1"
    http_port: int = 8001
    database_url: str = "sqlite+aiosqlite:///var/crm.db"
    database_echo: bool = False

    # The control API: the product's one login (it says who a bearer credential is) and the
    # directory of each tenant's users, groups and numbers.
    control_url: str = "http://127.0.0.1:8000"
    # Presented to the control API, and expected from media nodes asking for a lookup.
    service_token: SecretStr = SecretStr("local-dev-service-token")
    # How long an introspected credential is trusted before asking again: a revoked key or a
    # changed password stops working in the CRM this much later than in the control API.
    identity_cache_s: float = Field(default=5.0, ge=0, le=60)
    # How long a tenant's directory (users, groups, numbers) is reused; an id it does not
    # hold makes the CRM read it again at once.
    directory_cache_s: float = Field(default=10.0, ge=0, le=600)
    control_timeout_s: float = Field(default=5.0, gt=0, le=60)
    # The control API as people's browsers reach it (login, recordings), told to the agent
    # workspace by /config.json; '' means control_url. Its VPBX_CORS_ORIGINS must name the
    # CRM's own address.
    control_public_url: str = ""

    # The agent workspace's built files (index.html, assets/), served at /.
    web_dir: Path = DEFAULT_WEB_DIR

    # The reader of the call-event stream blocks this long on one read; stopping the app
    # waits for the read in flight.
    call_events_block_s: float = Field(default=0.5, gt=0, le=10)
    # After a read of a few events the reader waits this long, so a steady stream of calls
    # is written in batches (one transaction for many events): the timeline and tasks are
    # that much later, the reader's CPU per call about three times lower.
    call_events_linger_s: float = Field(default=0.1, ge=0, le=5)

    # The live feed (GET /v1/live): how often an idle WebSocket gets a ping (a browser silent
    # for three of these is dropped), and how long a new one may take to send its token.
    live_heartbeat_s: float = Field(default=20.0, gt=0, le=300)
    # How often an open live feed checks its credential again (expired, demoted, removed).
    live_recheck_s: float = Field(default=60.0, gt=0, le=3600)
    live_auth_timeout_s: float = Field(default=10.0, gt=0, le=60)

    # Where browsers register their softphone: the edge's SIP over WebSocket (RFC 7118),
    # ws:// or wss://, told to the workspace by /config.json; '' hides the softphone.
    sip_ws_url: str = Field(default="", pattern=r"^(wss?://\S+)?$")

    # The analytics store the deal events go to (the channels and managers reports): the
    # ClickHouse server at VPBX_CLICKHOUSE_URL (CommonSettings) if set, else chdb on this data
    # dir, which must be the media nodes' and the control API's (`vpbx up` passes it). Neither
    # set: no store, and the CRM writes no deal events for it (a chdb of its own would be read
    # by nobody).
    chdb_path: Path | None = None
    # The shipper moves the outbox to the store this often, at most this many events a batch;
    # while the store is down it retries with backoff up to the cap, keeping every event.
    analytics_ship_interval_s: float = Field(default=1.0, gt=0, le=60)
    analytics_ship_batch: int = Field(default=500, ge=1, le=10_000)
    analytics_ship_max_backoff_s: float = Field(default=30.0, gt=0, le=600)

    # Numbers typed without a country code are read as numbers of this country.
    default_country: str = Field(default="RU", pattern=r"^[A-Z]{2}$")

    @property
    def analytics_store_configured(self) -> bool:
        return bool(self.clickhouse_url) or self.chdb_path is not None

    @property
    def browser_control_url(self) -> str:
        return (self.control_public_url or self.control_url).rstrip("/")

    def check_secrets(self) -> None:
        require_real_secret("VPBX_SERVICE_TOKEN", self.service_token, local=self.is_local)
