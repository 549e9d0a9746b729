"""`vpbx control-api`: run the control API (settings from VPBX_* environment variables).

``serve`` (the default) migrates the database, seeds it from VPBX_SEED_FILE in
local mode, then serves on VPBX_HTTP_HOST:VPBX_HTTP_PORT. ``migrate`` only
migrates (a Kubernetes init container or a job runs that).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

import redis.asyncio as redis
import uvicorn

from .app import create_app
from .auth.passwords import Passwords
from .db.migrate import upgrade_sync
from .db.session import Database
from .nodeconfig.homes import HomeDirectory
from .nodeconfig.publisher import ConfigPublisher
from .numbers.backends import open_number_store
from .seed import SeedError, seed_file
from .settings import ControlSettings
from .trunks.carriers import TenantCarriers

logger = logging.getLogger(__name__)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    # One line per database call at DEBUG drowns everything else.
    logging.getLogger("aiosqlite").setLevel(logging.INFO)


def migrate(settings: ControlSettings) -> None:
    upgrade_sync(settings.database_url)
    logger.info("database migrated")


async def seed(settings: ControlSettings) -> list[str]:
    """Seed from settings.seed_file (local mode only); the tenants seeded now."""
    if settings.seed_file is None:
        return []
    if not settings.is_local:
        logger.warning("VPBX_SEED_FILE is ignored outside local mode")
        return []
    client = redis.Redis.from_url(settings.redis_url) if settings.redis_url else None
    database = Database(settings.database_url)
    store = open_number_store(settings, client)
    await store.start()
    try:
        homes = HomeDirectory(client, database) if client is not None else None
        carriers = TenantCarriers(client, database) if client is not None else None
        return await seed_file(
            str(settings.seed_file),
            database,
            store,
            Passwords.from_settings(settings),
            ConfigPublisher(client, homes, carriers),
        )
    finally:
        await store.stop()
        await database.dispose()
        if client is not None:
            await client.aclose()


def serve(settings: ControlSettings) -> None:
    settings.check_secrets()
    migrate(settings)
    try:
        seeded = asyncio.run(seed(settings))
    except SeedError as exc:
        raise SystemExit(f"cannot seed from {settings.seed_file}: {exc}") from exc
    if seeded:
        logger.info("seeded %s from %s", ", ".join(seeded), settings.seed_file)
    app = create_app(settings, migrate=False)
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        access_log=False,  # the app logs every request itself, with request id and tenant
        log_config=None,
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="vpbx control-api", description=__doc__)
    parser.add_argument(
        "command", nargs="?", choices=("serve", "migrate"), default="serve", help="what to run"
    )
    arguments = parser.parse_args(argv)
    settings = ControlSettings()
    configure_logging(settings.log_level)
    if arguments.command == "migrate":
        migrate(settings)
    else:
        serve(settings)


if __name__ == "__main__":
    main(sys.argv[1:])
