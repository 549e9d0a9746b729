"""Operator settings (environment variables, VPBX_ prefix)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import AliasChoices, Field

from vpbx_common.settings import CommonSettings

from .render import NodeTemplate


class OperatorSettings(CommonSettings):
    namespace: str = Field(
        default="vpbx", validation_alias=AliasChoices("VPBX_OPERATOR_NAMESPACE", "VPBX_NAMESPACE")
    )
    # The Helm chart's media-node.json (pod and container template of media nodes).
    media_node_template: Path | None = None
    resync_interval: float = Field(default=30.0, gt=0)
    metrics_port: int = 8080
    node_image: str = "vpbx/media-node:latest"
    node_grace_period: int = 120
    node_pre_stop_sleep: int = 5
    node_host_network: bool = False
    node_redis_secret: str | None = None
    node_clickhouse_secret: str | None = None
    node_nonce_secret: str | None = None
    node_edge_secret: str | None = None
    # The platform trunks (Trunk manifests, the file the control API reads too): their
    # networks go into the edge routing table, host names resolved on every pass.
    platform_trunks_file: Path | None = None

    def node_template(self) -> NodeTemplate:
        base = self._base_template()
        if self.media_node_template is None:
            return base
        return NodeTemplate.from_chart(json.loads(self.media_node_template.read_text()), base)

    def _base_template(self) -> NodeTemplate:
        return NodeTemplate(
            image=self.node_image,
            termination_grace_period_s=self.node_grace_period,
            pre_stop_sleep_s=self.node_pre_stop_sleep,
            drain_timeout_s=max(1, self.node_grace_period - self.node_pre_stop_sleep - 5),
            redis_secret=self.node_redis_secret,
            redis_url=None if self.node_redis_secret else self.redis_url,
            clickhouse_secret=self.node_clickhouse_secret,
            nonce_secret=self.node_nonce_secret,
            edge_secret=self.node_edge_secret,
            host_network=self.node_host_network,
        )
