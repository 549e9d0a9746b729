"""Chooses the number store backend from settings."""

from __future__ import annotations

import redis.asyncio as redis

from ..settings import ControlSettings, NumberStoreKind
from .kube import KubeNumberStore
from .local import LocalNumberStore
from .store import NumberStore


def open_number_store(settings: ControlSettings, client: redis.Redis | None) -> NumberStore:
    """The store for ``settings.number_store``; nothing connects until ``start()``."""
    if settings.number_store is NumberStoreKind.KUBERNETES:
        return KubeNumberStore.from_settings(settings)
    return LocalNumberStore(settings.local_numbers_file, client)
