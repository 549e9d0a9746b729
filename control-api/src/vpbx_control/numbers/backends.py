"""Chooses the number store backend from settings."""

from __future__ import annotations

import redis.asyncio as redis

from ..settings import ControlSettings, NumberStoreKind
from .local import LocalNumberStore
from .store import NumberStore


def open_number_store(settings: ControlSettings, client: redis.Redis | None) -> NumberStore:
    if settings.number_store is NumberStoreKind.LOCAL:
        return LocalNumberStore(settings.local_numbers_file, client)
    raise NotImplementedError(settings.number_store)
