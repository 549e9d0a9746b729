"""Settings of the SIP edge and the media node (environment variables, VPBX_ prefix)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr

from vpbx_common.settings import CommonSettings, OutboundSettings, require_real_secret
from vpbx_common.sipauth import DigestAlgorithm
from vpbx_common.storage.settings import StorageSettings


class SipSettings(CommonSettings):
    sip_host: str = "127.0.0.1"
    sip_port: int = 5060
    # The address written into Via/Contact/Record-Route/SDP (a public or service address).
    advertised_host: str | None = None
    sip_t1: float = Field(default=0.5, gt=0)
    max_message_size: int = 65_535
    # Redis connections of the process: at most redis_max_connections; a request that
    # finds all in use waits up to redis_pool_timeout seconds for one, then is answered
    # 503 with Retry-After (a registration storm is queued briefly, then shed; never 500).
    redis_max_connections: int = Field(default=32, ge=1)
    redis_pool_timeout: float = Field(default=1.0, ge=0)
    # Base of Retry-After (seconds) in 503s for overload; each answer draws from
    # base..2*base so the refused phones do not all come back in the same second.
    overload_retry_after: int = Field(default=5, ge=1)
    # Shared by the edge and the nodes: signs the flow tokens the edge puts into
    # Record-Route/Path (prevents open relaying) and the proof on the Via of INVITEs it
    # relays to nodes, by which a node tells them from INVITEs that went around the
    # edge (edge/relayproof.py).
    edge_secret: SecretStr = SecretStr("local-dev-secret")
    # Prometheus metrics at http://metrics_host:metrics_port/metrics (0 = not served):
    # the process's CPU and memory, and on a node its calls, RTP loss and CDR backlog.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"


class EdgeSettings(SipSettings):
    city: str | None = None
    # Requests per second one source address may send before the edge stops answering it.
    source_rate: float = 200.0
    source_burst: float = 400.0
    # REGISTERs the edge relays at once; more are answered 503 + Retry-After at once
    # (a registration storm must not pile up transactions in the edge or the nodes).
    max_registers_in_flight: int = Field(default=128, ge=1)
    # A node that has not answered a REGISTER within this many seconds is overloaded
    # or gone: the edge answers the phone 503 + Retry-After instead of letting it time out.
    register_timeout: float = Field(default=5.0, gt=0)
    # The platform carriers' networks are read from the routing table at most this
    # often (a changed list reaches the edge this much later); a tenant's own carriers'
    # networks are read with every call's number route.
    carriers_cache_s: float = Field(default=5.0, ge=0)
    # SIP over WebSocket (RFC 7118) for browsers, on sip_host (VPBX_EDGE_WS_PORT; 0 = off).
    # Plain ws:// unless both certificate and key files are set (then wss:// here); in a
    # cluster TLS is terminated in front of the edge (ingress / load balancer).
    edge_ws_port: int = Field(default=0, ge=0, le=65535)
    edge_ws_cert_file: str | None = None
    edge_ws_key_file: str | None = None
    # Largest WebSocket message (one SIP message); a bigger frame closes its connection.
    edge_ws_max_message_size: int = Field(default=64 * 1024, ge=4096)
    # WebSocket connections open at once from one address (new ones are also charged
    # to the per-source token bucket above). Behind an ingress every browser comes
    # from its addresses: raise this to the browsers one ingress pod carries.
    edge_ws_max_connections_per_source: int = Field(default=256, ge=1)
    # The pod's own address (VPBX_POD_IP, from the downward API): the Path and
    # Record-Route entries the nodes use to reach a browser name this replica, whose
    # WebSocket the browser is on. None: the edge's shared address (a single edge).
    pod_ip: str | None = None

    def check_secrets(self) -> None:
        require_real_secret("VPBX_EDGE_SECRET", self.edge_secret, local=self.is_local)


class NodeSettings(SipSettings, OutboundSettings, StorageSettings):
    sip_port: int = 5070
    node_name: str = "node"
    tenant: str = ""
    city: str = ""
    # Without a control API: the compiled config as a JSON file (a ConfigMap, a hand-made file).
    node_config: Path = Path("node-config.json")
    # With one: its base URL (http://127.0.0.1:8000); the node fetches
    # /internal/v1/node-config/<tenant>/<city> with the service token, reloads on
    # every invalidation on Redis and polls every config_poll_interval seconds.
    config_url: str | None = None
    service_token: SecretStr = SecretStr("local-dev-service-token")
    config_poll_interval: float = Field(default=30.0, gt=0)
    config_fetch_timeout: float = Field(default=5.0, gt=0)
    media_host: str = "127.0.0.1"
    advertised_media_host: str | None = None
    rtp_port_min: int = 20000
    rtp_port_max: int = 29999
    # WebRTC gateway (vpbx_media.webrtc): worker processes carrying browsers' media;
    # None: one per CPU; 0: no gateway (browsers' calls are refused 488). ICE host
    # candidates are on the advertised media address.
    webrtc_workers: int | None = Field(default=None, ge=0, le=64)
    spool_dir: Path = Path("var/spool")
    chdb_path: Path = Path("var/chdb")
    # Signs stateless registrar nonces.
    nonce_secret: SecretStr = SecretStr("local-dev-secret")
    nonce_lifetime: float = 300.0
    digest_algorithms: list[DigestAlgorithm] = Field(
        default_factory=lambda: [DigestAlgorithm.SHA256, DigestAlgorithm.MD5]
    )
    # User-Agent substrings of clients that abort on a SHA-256 challenge instead of
    # answering the MD5 one next to it (baresip/libre 1.x, sipp 3.6); they get MD5 only.
    digest_md5_only_agents: list[str] = Field(default_factory=lambda: ["baresip", "sipp"])
    min_register_expires: int = 30
    max_register_expires: int = 3600
    drain_timeout: float = 30.0
    # HTTP decisions (node/decisions.py): the outbound policy is the control API's
    # (VPBX_MODE, VPBX_OUTBOUND_PRIVATE_ALLOWED: OutboundSettings); at most this much
    # of a reply is read.
    decision_max_reply_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    # The CRM service's base URL (http://crm:8000) for the crm-lookup route step
    # (node/crmlookup.py; the contract is vpbx_common.crm), asked with service_token as
    # the bearer. None: no CRM, crm-lookup steps go on with the next step.
    crm_url: str | None = None
    # How long a call waits for the CRM's answer before its plan goes on without it.
    crm_lookup_timeout_ms: int = Field(default=300, ge=10, le=5000)
    # With a CRM, the phones ring this long after call.offered is on the stream: the
    # CRM's screen pop needs p95 15-30 ms from there to the agent's screen
    # (docs/benchmarks.md), and the card is to be on screen before the phone rings.
    # 0: ring at once.
    screen_pop_lead_ms: int = Field(default=40, ge=0, le=1000)

    def check_secrets(self) -> None:
        require_real_secret("VPBX_NONCE_SECRET", self.nonce_secret, local=self.is_local)
        require_real_secret("VPBX_EDGE_SECRET", self.edge_secret, local=self.is_local)
        if self.config_url or self.crm_url:
            require_real_secret("VPBX_SERVICE_TOKEN", self.service_token, local=self.is_local)
