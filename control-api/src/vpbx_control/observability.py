"""Request ids, one structured access-log line per request, Prometheus metrics."""

from __future__ import annotations

import logging
import re
import time
import uuid

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vpbx_common.trunks import RegistrationState, ReportedStatus

access_log = logging.getLogger("vpbx_control.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class Metrics:
    """Per-app registry: two apps in one process (tests) do not share counters."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vpbx_api_requests",
            "HTTP requests by route template, method and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "vpbx_api_request_duration_seconds",
            "HTTP request latency by route template and method",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
        )

        # Alerting on toll fraud: counted from the nodes' call.refused events (one API
        # replica handles each event, so a query sums the replicas).
        self.outbound_refused = Counter(
            "vpbx_outbound_refused",
            "Calls out refused by the tenant's outbound policy, by tenant and rule",
            ["tenant", "reason"],
            registry=self.registry,
        )

        # Webhook delivery attempts by tenant and outcome (delivered, retry, failed):
        # the alert reads the share of failures.
        self.webhook_attempts = Counter(
            "vpbx_webhook_attempts",
            "Webhook delivery attempts by tenant and outcome",
            ["tenant", "outcome"],
            registry=self.registry,
        )

        # Carrier registrations as the nodes report them (vpbx_common.trunks), read from
        # Redis at each scrape: 1 registered, 0 registering or failed (alert on 0).
        self.trunk_registered = Gauge(
            "vpbx_trunk_registered",
            "Whether a node's registration of a carrier trunk holds, by tenant, trunk and city",
            ["tenant", "trunk", "trunk_name", "city"],
            registry=self.registry,
        )

    def show_trunks(self, reports: list[ReportedStatus], now_ms: int) -> None:
        """Replace the trunk gauge with ``reports`` (trunks that do not register are left out)."""
        self.trunk_registered.clear()
        for report in reports:
            status = report.status
            if status.state is RegistrationState.NOT_REGISTERING:
                continue
            self.trunk_registered.labels(
                report.tenant, report.trunk_id, status.name, report.city
            ).set(1 if status.registered_at(now_ms) else 0)

    def render(self) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


def _route_template(scope: Scope) -> str:
    """The matched route's path template, so ids do not explode the label space."""
    # The router leaves the route it dispatched to in the scope; a method it
    # refused (405) left a partial match there, which counts as unmatched.
    chosen = scope.get("route")
    if chosen is not None:
        match, _ = chosen.matches(scope)
        return str(chosen.path) if match is Match.FULL else "unmatched"
    app = scope.get("app")
    router = getattr(app, "router", None)
    for route in getattr(router, "routes", ()):
        match, _ = route.matches(scope)
        if match is Match.FULL:
            return str(getattr(route, "path", "unmatched"))
    return "unmatched"


class ObservabilityMiddleware:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        given = request.headers.get("x-request-id", "")
        request_id = given if _REQUEST_ID.fullmatch(given) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode()))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_template(scope)
            method = scope["method"]
            self.metrics.requests.labels(method, route, str(status)).inc()
            self.metrics.latency.labels(method, route).observe(elapsed)
            principal = scope["state"].get("principal")
            tenant = getattr(principal, "tenant_id", None) or "-"
            access_log.info(
                "request_id=%s tenant=%s method=%s route=%s status=%d duration_ms=%.1f",
                request_id,
                tenant,
                method,
                route,
                status,
                elapsed * 1000,
            )
