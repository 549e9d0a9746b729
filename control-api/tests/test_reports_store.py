"""/v1/reports without a CDR store that answers: 503, as /v1/calls; the rest of the API works."""

from __future__ import annotations

from pathlib import Path

from tests.services.control_api import control_settings, serve_api
from tests.services.ports import free_port

WEEK = {"from": "2026-12-01", "to": "2026-12-07"}


async def test_without_a_store_reports_are_503(
    postgres_url: str, flushed_redis: str, tmp_path: Path
) -> None:
    base = {
        "database_url": postgres_url,
        "redis_url": flushed_redis,
        "local_numbers_file": tmp_path / "numbers.yaml",
    }
    # Nothing listens on a free port: connections are refused at once.
    unreachable = f"clickhouse://127.0.0.1:{free_port()}/default?connect_timeout=1"
    cases = (
        (control_settings(**base), "cdr-store-not-configured"),  # not local mode, no path
        (control_settings(**base, clickhouse_url=unreachable), "cdr-store-unavailable"),
    )
    for index, (settings, error_id) in enumerate(cases):
        async with serve_api(settings) as api:
            if index == 0:  # one database for both
                await api.add_tenant("acme")
            admin = await api.as_role("acme")
            for path in ("/v1/reports/calls", "/v1/reports/clients"):
                for export in ("json", "csv", "xlsx"):
                    response = await api.client.get(
                        path, params={**WEEK, "format": export}, headers=admin
                    )
                    assert response.status_code == 503, response.text
                    assert response.json()["error_id"] == error_id
            # Ad channels live in the database: they answer without the CDR store.
            assert (await api.client.get("/v1/ad-channels", headers=admin)).status_code == 200
