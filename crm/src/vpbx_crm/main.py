"""`vpbx crm`: run the CRM service (settings from VPBX_* environment variables).

``serve`` (the default) migrates the CRM's database, then serves its API and the agent
workspace on VPBX_HTTP_HOST:VPBX_HTTP_PORT. ``migrate`` only migrates.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

import uvicorn

from vpbx_control.main import configure_logging

from .app import create_app
from .db.migrate import upgrade_sync
from .settings import CrmSettings

logger = logging.getLogger(__name__)


def migrate(settings: CrmSettings) -> None:
    upgrade_sync(settings.database_url)
    logger.info("CRM database migrated")


def serve(settings: CrmSettings) -> None:
    settings.check_secrets()
    migrate(settings)
    app = create_app(settings, migrate=False)
    if not (settings.web_dir / "index.html").is_file():
        logger.warning(
            "the agent workspace is not built (no %s): / answers 503 until `make web` builds it",
            settings.web_dir / "index.html",
        )
    uvicorn.run(
        app,
        host=settings.http_host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        access_log=False,  # the app logs every request itself, with request id and tenant
        log_config=None,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vpbx crm", description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=("serve", "migrate"))
    args = parser.parse_args(argv)
    settings = CrmSettings()
    configure_logging(settings.log_level)
    if args.command == "migrate":
        settings.check_secrets()
        migrate(settings)
    else:
        serve(settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())
