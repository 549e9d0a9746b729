"""`vpbx`: the umbrella command line."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from vpbx_common.cdr import CallRecord

from .layout import RTP_PORTS_PER_NODE, LaunchError, LocalLayout
from .local import open_local_cdr_store, run_local

app = typer.Typer(help="vpbx: cloud virtual PBX with a built-in CRM", no_args_is_help=True)


@app.command()
def up(
    file: Annotated[
        Path, typer.Option("-f", "--file", help="platform file (Tenant, Number, PbxConfig)")
    ] = Path("examples/demo.yaml"),
    host: Annotated[str, typer.Option(help="address every service binds to")] = "127.0.0.1",
    sip_port: Annotated[int, typer.Option(help="SIP edge port (UDP and TCP)")] = 5060,
    sip_ws_port: Annotated[
        int,
        typer.Option(
            help="SIP over WebSocket port of the edge (browsers, ws://); 0 disables",
            min=0,
            max=65535,
        ),
    ] = 5066,
    node_port_base: Annotated[int, typer.Option(help="first media-node SIP port")] = 5070,
    rtp_port_base: Annotated[int, typer.Option(help="first RTP port of the first node")] = 20000,
    rtp_ports_per_node: Annotated[
        int,
        typer.Option(help="RTP ports per node, consecutive; a 2-leg call takes 4", min=2),
    ] = RTP_PORTS_PER_NODE,
    redis_port: Annotated[
        int, typer.Option(help="port of the private Redis (when VPBX_REDIS_URL is unset)")
    ] = 6390,
    var_dir: Annotated[Path, typer.Option(help="state: spools, chdb data, node configs")] = Path(
        "var"
    ),
    sip_t1: Annotated[float, typer.Option(help="SIP timer T1 in seconds")] = 0.5,
    control_port: Annotated[int, typer.Option(help="control API HTTP port")] = 8000,
    crm_port: Annotated[int, typer.Option(help="CRM HTTP port (API and workspace)")] = 8001,
    crm: Annotated[
        bool, typer.Option(help="run the CRM (--no-crm: the PBX alone, e.g. SIP-only tests)")
    ] = True,
) -> None:
    """Run the whole platform locally in the foreground (Ctrl-C stops it).

    The control API (http://HOST:CONTROL_PORT, SQLite in VAR_DIR) is seeded from
    the platform file on its first start; the media nodes take their config from it.
    The CRM (http://HOST:CRM_PORT, SQLite in VAR_DIR) logs people in through it.
    """
    layout = LocalLayout(
        host=host,
        sip_port=sip_port,
        sip_ws_port=sip_ws_port,
        node_port_base=node_port_base,
        rtp_port_base=rtp_port_base,
        rtp_ports_per_node=rtp_ports_per_node,
        redis_port=redis_port,
        var_dir=var_dir,
        sip_t1=sip_t1,
        control_port=control_port,
        crm_port=crm_port,
        crm=crm,
    )
    try:
        code = run_local(file, layout)
    except LaunchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    raise typer.Exit(code)


@app.command()
def calls(
    last: Annotated[
        int, typer.Option("--last", min=1, max=10_000, help="how many of the latest calls")
    ] = 20,
    tenant: Annotated[str | None, typer.Option(help="only this tenant's calls")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output")] = False,
    var_dir: Annotated[Path, typer.Option(help="where the embedded chdb data lives")] = Path("var"),
) -> None:
    """Print the latest CDRs from the configured CDR store (ClickHouse or embedded chdb).

    The table shows each call's route as its number of steps and its last step; --json prints
    whole records, the route as a list of steps (see docs/cdr.md).
    """
    store = open_local_cdr_store(var_dir)
    try:
        store.migrate()
        records = store.last(last, tenant=tenant)
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([record.to_json() for record in records], indent=2))
        return
    if not records:
        typer.echo("no calls yet")
        return
    typer.echo(CALL_TABLE_HEADER)
    for record in records:
        typer.echo(format_call_row(record))


CALL_TABLE_HEADER = (
    f"{'start (UTC)':<23} {'tenant':<10} {'caller':<16} {'dialled':<14} "
    f"{'answered':<8} {'ring':>6} {'talk':>7}  {'end':<17}  route (steps: last)"
)

ROUTE_SUMMARY_CHARS = 48


def route_summary(record: CallRecord) -> str:
    """The route in a table cell: how many steps, and the last one (where the call ended up)."""
    if not record.route:
        return "-"
    last = record.route[-1]
    member = f" {last.member}" if last.member else ""
    text = f"{len(record.route)}: {last.subject} {last.outcome}{member}"
    if len(text) > ROUTE_SUMMARY_CHARS:
        text = text[: ROUTE_SUMMARY_CHARS - 1] + "\u2026"
    return text


def format_call_row(record: CallRecord) -> str:
    start = datetime.fromtimestamp(record.start_ms / 1000, UTC)
    end = f"{record.end_reason} ({record.sip_status})"
    return (
        f"{start.strftime('%Y-%m-%d %H:%M:%S.%f')[:23]:<23} {record.tenant:<10} "
        f"{record.caller:<16} {record.dialled:<14} {record.answered_by or '-':<8} "
        f"{record.ring_ms / 1000:>5.1f}s {record.talk_ms / 1000:>6.1f}s  "
        f"{end:<17}  {route_summary(record)}"
    )


@app.command()
def edge() -> None:
    """Run the SIP edge (settings from VPBX_* environment variables)."""
    from vpbx_media.edge.app import main

    main()


@app.command()
def operator(
    liveness: Annotated[
        str | None, typer.Option(help="liveness endpoint, e.g. http://0.0.0.0:8081/healthz")
    ] = None,
) -> None:
    """Run the Kubernetes operator (Tenant and Number resources; VPBX_* settings)."""
    from vpbx_operator.main import run

    run(liveness)


@app.command("control-api")
def control_api(
    command: Annotated[
        str, typer.Argument(help="serve (migrate, seed in local mode, serve) or migrate")
    ] = "serve",
) -> None:
    """Run the control API (settings from VPBX_* environment variables)."""
    from vpbx_control.main import main

    if command not in ("serve", "migrate"):
        raise typer.BadParameter("expected serve or migrate", param_hint="COMMAND")
    main([command])


@app.command()
def crm(
    command: Annotated[
        str, typer.Argument(help="serve (migrate, then serve) or migrate")
    ] = "serve",
) -> None:
    """Run the CRM service and the agent workspace (settings from VPBX_* environment variables)."""
    from vpbx_crm.main import main

    if command not in ("serve", "migrate"):
        raise typer.BadParameter("expected serve or migrate", param_hint="COMMAND")
    main([command])


@app.command()
def node() -> None:
    """Run one tenant media node (settings from VPBX_* environment variables)."""
    from vpbx_media.node.app import main

    main()


if __name__ == "__main__":
    app()
