"""Run the operator (`vpbx operator`): kopf, cluster-wide for the cluster-scoped CRs."""

from __future__ import annotations

import asyncio
import logging

import kopf

from vpbx_common.settings import CommonSettings


def run(liveness_endpoint: str | None = None) -> None:
    logging.basicConfig(
        level=CommonSettings().log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    from . import handlers  # registers the handlers

    del handlers
    asyncio.run(
        kopf.operator(
            clusterwide=True,
            standalone=True,
            liveness_endpoint=liveness_endpoint,
        )
    )
