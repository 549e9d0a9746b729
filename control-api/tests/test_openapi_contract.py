"""The control API keeps the promises of its own OpenAPI document.

schemathesis reads ``/openapi.json`` from the app running for real (uvicorn on
loopback, PostgreSQL, Redis), generates requests for every operation in it and
sends them, each with the credential the route's access policy admits (tenant
admin, media node, or none for public routes; the platform routes in a second run
of their own, so they cannot delete the tenant the first run works in). Checks: no
5xx, every status code documented, the documented content type, and the body valid
against the documented schema. Seeded and deterministic, with a fixed number of
examples per operation, so a CI failure reproduces locally. Free-text fields and
query parameters sometimes get strings a database must cope with (NUL, quotes);
webhook deliveries are not sent (generated URLs point anywhere).

A second test checks the document itself: a summary on every operation, a schema
on every 2xx JSON response, examples on every JSON request body.

Operations are read from the document, never listed here: a new route is covered
the moment it exists.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.routing import APIRoute
from requests.structures import CaseInsensitiveDict
from schemathesis import Case, hooks
from schemathesis.engine import events
from tests.services.control_api import PLATFORM_TOKEN, SERVICE_TOKEN, ApiHarness, control_settings
from tests.services.uvicorn_app import ServedApp, serving

from vpbx_control.app import create_app
from vpbx_control.auth.principal import AccessPolicy, Role
from vpbx_control.deps import route_policy

SEED = 20261122
MAX_EXAMPLES = 15  # per operation and phase (fuzzing); coverage/examples are bounded by the schema
STATEFUL_MAX_STEPS = 10
CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
)
HOSTILE_STRINGS = ("\x00", "a\x00b", "x' OR '1'='1", "\U0001f642")
TENANT = "acme"
CITY = "msk"
# The login operation's documented example: seeded, so the example phase logs in.
ADMIN_EMAIL = "admin@acme.vpbx.local"
ADMIN_PASSWORD = "acme-admin-secret"
HTTP_METHODS = ("get", "put", "post", "patch", "delete")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE"})
# The tenant admin's token is looked up again at least this often (see TenantAdminToken).
RECHECK_S = 30.0
AST_RACE_NOTE = (
    "(a CPython 3.11 race, not a bug of the API: Hypothesis parsed source here while the "
    "app's thread formatted the traceback of a 500 it had just answered; fix the 500s "
    "reported above and this goes away)\n"
)


# --- which credential each operation gets -------------------------------------------


def _effective_policy(route: APIRoute) -> AccessPolicy:
    policy = route_policy(route)
    assert policy is not None, f"{sorted(route.methods)} {route.path} declares no access policy"
    return policy


def _policy_by_operation(app: FastAPI) -> dict[tuple[str, str], AccessPolicy]:
    """(METHOD, path template as in the document) -> the policy of that route."""
    policies: dict[tuple[str, str], AccessPolicy] = {}
    for route in app.routes:
        if isinstance(route, APIRoute) and route.include_in_schema:
            policy = _effective_policy(route)
            for method in route.methods:
                policies[(method.upper(), route.path_format)] = policy
    return policies


def _operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method in HTTP_METHODS:
                yield method.upper(), path, operation


# --- the app under test -----------------------------------------------------------------


class StatusCounter:
    """ASGI wrapper counting the responses the app sent, by status code, and the requests
    that may have changed something (an unsafe method answered below 400)."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self.statuses: Counter[int] = Counter()
        self.changes = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        unsafe = scope["method"] not in SAFE_METHODS

        async def counting_send(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.statuses[message["status"]] += 1
                # Counted before the client can see the answer, so before its next request.
                if unsafe and message["status"] < 400:
                    self.changes += 1
            await send(message)

        await self.app(scope, receive, counting_send)


@dataclass
class TenantAdminToken:
    """A valid tenant-admin token, renewed when the run revoked the previous one.

    Generated requests may change the password or role of the very admin they
    authenticate as, or delete it; the next request then gets a fresh admin
    instead of a 401 that would only say the harness lost its credential.

    The token is looked up again (in the database, as the app does) only when a
    request may have revoked it since the last look: one that changed something
    (``StatusCounter.changes``), or ``RECHECK_S`` later (tokens expire). A look-up
    before every one of the thousands of requests took a quarter of the run.
    """

    app: FastAPI
    served: ServedApp
    counter: StatusCounter
    token: str = field(default="", repr=False)
    issued: set[str] = field(default_factory=set, repr=False)
    tokens_issued: int = 0
    _numbers: Iterator[int] = field(default_factory=itertools.count)
    _checked: tuple[int, float] | None = field(default=None, repr=False)

    async def _current(self) -> str:
        context = self.app.state.context
        if self.token:
            async with context.database.session() as session:
                principal = await context.credentials.principal(session, self.token)
            if principal is not None and principal.role is Role.TENANT_ADMIN:
                return self.token
        async with httpx.AsyncClient() as client:
            harness = ApiHarness(app=self.app, client=client, settings=context.settings)
            user = await harness.add_user(
                TENANT,
                role=Role.TENANT_ADMIN,
                email=f"contract-admin-{next(self._numbers)}@{TENANT}.example",
                name="Contract Admin",
            )
        self.token = context.credentials.signer.issue(
            user.id, TENANT, Role.TENANT_ADMIN, user.token_generation
        )
        self.issued.add(self.token)
        self.tokens_issued += 1
        return self.token

    def get(self) -> str:
        if self._checked is not None:
            changes, at = self._checked
            if changes == self.counter.changes and time.monotonic() - at < RECHECK_S:
                return self.token
        # Read before the look-up: a change made while it runs is looked at next time.
        changes = self.counter.changes
        token = self.served.run(self._current())
        self._checked = (changes, time.monotonic())
        return token


@dataclass
class LiveApi:
    app: FastAPI
    served: ServedApp
    counter: StatusCounter
    document: dict[str, Any]
    policies: dict[tuple[str, str], AccessPolicy]
    tenant_admin: TenantAdminToken

    def bearer_for(self, method: str, path: str) -> str | None:
        """The token a request to this operation is sent with; None for public routes.

        schemathesis also tries methods a path does not have (expecting 405); those
        go with the credential of the path's documented methods.
        """
        policy = self.policies.get((method.upper(), path))
        if policy is None:
            same_path = [p for (_, other), p in self.policies.items() if other == path]
            policy = (
                same_path[0] if same_path else AccessPolicy(roles=frozenset({Role.TENANT_ADMIN}))
            )
        if policy.public:
            return None
        if Role.TENANT_ADMIN in policy.roles:
            return self.tenant_admin.get()
        if policy.node:
            return SERVICE_TOKEN
        if policy.platform:
            return PLATFORM_TOKEN
        raise AssertionError(f"no credential in this test is admitted by {policy}")


async def _seed(app: FastAPI) -> None:
    async with httpx.AsyncClient() as client:
        harness = ApiHarness(app=app, client=client, settings=app.state.context.settings)
        await harness.add_tenant(TENANT, cities=(CITY, "ekb"))
        await harness.add_tenant("globex", cities=(CITY,))
        await harness.add_user(
            TENANT, role=Role.TENANT_ADMIN, email=ADMIN_EMAIL, password=ADMIN_PASSWORD
        )


@pytest.fixture
def live_api(postgres_url: str, flushed_redis: str, tmp_path: Path) -> Iterator[LiveApi]:
    """The app in uvicorn on loopback, on a fresh migrated database, with seeded tenants."""
    settings = control_settings(
        database_url=postgres_url,
        redis_url=flushed_redis,
        local_numbers_file=tmp_path / "numbers.yaml",
        chdb_path=tmp_path / "chdb",
    )
    app = create_app(settings, migrate=False)
    counter = StatusCounter(app)
    with serving(counter) as served:
        # Generated webhooks point anywhere: no delivery may leave this machine. The
        # API keeps queueing deliveries (and showing them); nothing sends them.
        served.run(app.state.webhook_dispatcher.stop())
        served.run(_seed(app))
        document = httpx.get(f"{served.base_url}/openapi.json", timeout=30).json()
        yield LiveApi(
            app=app,
            served=served,
            counter=counter,
            document=document,
            policies=_policy_by_operation(app),
            tenant_admin=TenantAdminToken(app=app, served=served, counter=counter),
        )


# --- running schemathesis ---------------------------------------------------------------


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        target: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        schema = target
    return schema


def _is_free_text(schema: dict[str, Any]) -> bool:
    """A plain string (or string-or-null) field, written inline (schemathesis cannot
    check dictionary entries against a field defined by reference)."""
    if schema.get("type") == "string":
        return not {"enum", "format", "$ref"} & schema.keys()
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    return len(branches) == 1 and _is_free_text(branches[0])


def _parameter_bindings(operation: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """Dictionary bindings for one operation's parameters, derived from the document.

    Path parameters naming the seeded tenant or city get its real value most of the
    time, so such routes are checked on their 200 answers, not only on 404s. Every
    free-text query parameter and top-level body field sometimes gets a string the
    database must cope with (NUL, quotes, a character outside the BMP).
    """
    bindings: dict[str, Any] = {}
    hostile = {"dictionary": "hostile", "probability": 0.1}
    for parameter in operation.get("parameters", []):
        name, where = parameter["name"], parameter.get("in")
        if where == "path" and "tenant" in name.lower():
            bindings[f"path.{name}"] = {"dictionary": "tenants", "probability": 0.8}
        elif where == "path" and "city" in name.lower():
            bindings[f"path.{name}"] = {"dictionary": "cities", "probability": 0.8}
        elif where == "query" and _is_free_text(parameter.get("schema", {})):
            bindings[f"query.{name}"] = hostile
    content = operation.get("requestBody", {}).get("content", {})
    body = _resolve(document, content.get("application/json", {}).get("schema", {}))
    for branch in [body, *(_resolve(document, b) for b in body.get("anyOf", []))]:
        for name, schema in branch.get("properties", {}).items():
            if _is_free_text(schema):
                bindings[f"body.{name}"] = hostile
    return bindings


def _config(document: dict[str, Any]) -> schemathesis.Config:
    return schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "workers": 1,
            "request-timeout": 30,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "checks": {
                "enabled": False,
                **{name: {"enabled": True} for name in CHECKS},
            },
            "phases": {
                "examples": {"enabled": True},
                # The coverage phase derives boundary values deterministically for every
                # field; its negative half alone is thousands of 422s a run, so invalid
                # input is left to the fuzzing phase (both modes there).
                "coverage": {
                    "enabled": True,
                    "generation": {"mode": "positive"},
                    "unexpected-methods": ["TRACE"],
                },
                "fuzzing": {"enabled": True},
                "stateful": {"enabled": True, "max-steps": STATEFUL_MAX_STEPS},
            },
            # Credentials come from the provider below; no sign-up of its own.
            "auth": {"auto-signup": False},
            "dictionaries": {
                "tenants": {"values": [TENANT]},
                "cities": {"values": [CITY]},
                "hostile": {"values": list(HOSTILE_STRINGS)},
            },
            "operations": [
                {"include-operation-id": operation["operationId"], "parameters": bindings}
                for _, _, operation in _operations(document)
                if (bindings := _parameter_bindings(operation, document))
            ],
        }
    )


@dataclass
class Finding:
    """One kind of failure (check, status) and the operations it was seen on."""

    example: str
    operations: Counter[str] = field(default_factory=Counter)


@dataclass
class RunReport:
    seconds: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    phases: list[str] = field(default_factory=list)
    findings: dict[tuple[str, int | None], Finding] = field(default_factory=dict)
    errors: dict[str, list[str]] = field(default_factory=dict)

    def problems(self) -> str:
        lines = [f"{len(self.findings)} kinds of failure, {len(self.errors)} kinds of error:"]
        for (title, status), finding in self.findings.items():
            operations = ", ".join(sorted(finding.operations))
            lines.append(
                f"\n* {title}, response {status}, on {len(finding.operations)} operations "
                f"({sum(finding.operations.values())} cases): {operations}\n"
                f"  first seen: {finding.example}"
            )
        for error, labels in self.errors.items():
            lines.append(f"\n* ERROR in {', '.join(labels)}:\n  {error}")
        return "\n".join(lines)


def _record_failures(event: events.ScenarioFinished, report: RunReport) -> None:
    recorder = event.recorder
    for case_id, checks in recorder.checks.items():
        for check in checks:
            info = check.failure_info
            if info is None:
                continue
            interaction = recorder.interactions.get(case_id)
            response = interaction.response if interaction is not None else None
            status = response.status_code if response is not None else None
            node = recorder.cases.get(case_id)
            operation = node.value.operation.label if node is not None else recorder.label
            if info.failure.code == "ST103" and status is not None and status >= 500:
                continue  # the same response is reported as a server error (ST101)
            key = (f"{info.failure.code} {info.failure.title}", status)
            if key not in report.findings:
                body = response.text[:300] if response is not None else "(no response)"
                message = " ".join(info.failure.message.split())
                report.findings[key] = Finding(
                    example=f"{operation} ({event.phase.value} phase): {message}\n"
                    f"  response body: {body}\n"
                    f"  reproduce: {info.code_sample}"
                )
            report.findings[key].operations[operation] += 1


def run_schemathesis(api: LiveApi, operation_ids: list[str]) -> RunReport:
    schema: schemathesis.BaseSchema = schemathesis.openapi.from_url(
        f"{api.served.base_url}/openapi.json", config=_config(api.document)
    )
    # Exclude rather than include: the per-operation config blocks already act as
    # include filters, and include filters add up.
    others = [
        operation["operationId"]
        for _, _, operation in _operations(api.document)
        if operation["operationId"] not in operation_ids
    ]
    if others:
        schema = schema.exclude(operation_id=others)

    class PolicyAuth:
        """Each operation is called with the credential its access policy admits."""

        def get(self, case: Case[Any], context: schemathesis.AuthContext) -> str | None:
            return api.bearer_for(case.method, case.path)

        def set(self, case: Case[Any], data: str, context: schemathesis.AuthContext) -> None:
            if case.headers is None:
                case.headers = CaseInsensitiveDict()
            case.headers["Authorization"] = f"Bearer {data}"

    schema.auth(refresh_interval=None)(PolicyAuth)

    def before_call(context: Any, case: Case[Any], kwargs: dict[str, Any]) -> None:
        # Cases are generated in batches: renew a token revoked since this one was made.
        if case.headers is None:
            return
        token = str(case.headers.get("Authorization", "")).removeprefix("Bearer ")
        if token in api.tenant_admin.issued:
            case.headers["Authorization"] = f"Bearer {api.tenant_admin.get()}"

    hooks.GLOBAL_HOOK_DISPATCHER.register_hook_with_name(before_call, "before_call")

    report = RunReport()
    before = Counter(api.counter.statuses)
    started = time.monotonic()
    try:
        phase_started, phase_before = started, before.total()
        for event in schemathesis.engine.from_schema(schema).execute():
            if isinstance(event, events.PhaseStarted):
                phase_started = time.monotonic()
                phase_before = api.counter.statuses.total()
            elif isinstance(event, events.PhaseFinished):
                report.phases.append(
                    f"{event.phase.name.value} {time.monotonic() - phase_started:.1f} s"
                    f" / {api.counter.statuses.total() - phase_before} requests"
                )
            if isinstance(event, events.ScenarioFinished):
                _record_failures(event, report)
            elif isinstance(event, events.NonFatalError):
                text = event.info.format()
                if "AST constructor recursion depth mismatch" in text:
                    text = AST_RACE_NOTE + text
                report.errors.setdefault(text, []).append(event.label)
            elif isinstance(event, events.FatalError):
                report.errors.setdefault(f"fatal: {event.exception!r}", []).append("engine")
    finally:
        hooks.GLOBAL_HOOK_DISPATCHER.unregister(before_call)
    report.seconds = time.monotonic() - started
    report.statuses = api.counter.statuses - before
    return report


def _operation_ids(api: LiveApi, *, platform: bool) -> list[str]:
    """Operations of the tenant run (platform=False) or of the platform run."""
    chosen = []
    for method, path, operation in _operations(api.document):
        policy = api.policies.get((method, path))
        assert policy is not None, f"{method} {path} is in the document but is no APIRoute"
        platform_only = policy.platform and not (policy.roles or policy.node or policy.public)
        if platform_only == platform:
            chosen.append(operation["operationId"])
    return chosen


def _check(report: RunReport, api: LiveApi, label: str) -> None:
    print(
        f"\nschemathesis ({label}): {report.statuses.total()} requests in {report.seconds:.1f} s, "
        f"statuses {dict(sorted(report.statuses.items()))}, "
        f"tenant-admin tokens issued: {api.tenant_admin.tokens_issued}; phases: "
        + ", ".join(report.phases)
    )
    assert report.statuses.total() > 0, "schemathesis sent no request"
    problems = report.problems()
    assert not report.findings, problems
    assert not report.errors, problems


# Over the suite's 300 s default: the reports run several CDR-store queries per request
# (about 0.3 s each on chdb), and every query parameter combination is tried.
@pytest.mark.timeout(900)
def test_tenant_operations_keep_the_documented_contract(live_api: LiveApi) -> None:
    operation_ids = _operation_ids(live_api, platform=False)
    assert len(operation_ids) > 10
    report = run_schemathesis(live_api, operation_ids)
    _check(report, live_api, f"{len(operation_ids)} tenant, node and public operations")
    # Sanity: the run reached the business logic, not only validation and 404s.
    assert report.statuses[200] + report.statuses[201] > len(operation_ids)


def test_platform_operations_keep_the_documented_contract(live_api: LiveApi) -> None:
    operation_ids = _operation_ids(live_api, platform=True)
    if not operation_ids:
        pytest.skip("the app has no platform-admin operations yet")
    report = run_schemathesis(live_api, operation_ids)
    _check(report, live_api, f"{len(operation_ids)} platform operations")


# --- the document itself -----------------------------------------------------------------


def _has_examples(document: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> bool:
    """Whether a client can see what to send: examples on the schema, or on its fields.

    An object is covered by examples on the object, or on each required field (on
    some field when none is required, as in PATCH bodies); a field with an enum, a
    const, a default or a boolean type documents itself.
    """
    schema = _resolve(document, schema)
    if depth > 8:
        return False
    if any(key in schema for key in ("examples", "example", "enum", "const", "default")):
        return True
    if schema.get("type") == "boolean":
        return True
    for key in ("anyOf", "oneOf", "allOf"):
        branches = [b for b in schema.get(key, []) if _resolve(document, b).get("type") != "null"]
        if branches:
            return all(_has_examples(document, branch, depth + 1) for branch in branches)
    if schema.get("type") == "array" and "items" in schema:
        return _has_examples(document, schema["items"], depth + 1)
    properties: dict[str, Any] = schema.get("properties", {})
    if properties:
        required = [name for name in schema.get("required", []) if name in properties]
        if required:
            return all(_has_examples(document, properties[name], depth + 1) for name in required)
        return any(_has_examples(document, prop, depth + 1) for prop in properties.values())
    return False


def test_openapi_document_is_complete() -> None:
    document = create_app(control_settings()).openapi()
    offenders: list[str] = []
    operations = list(_operations(document))
    assert operations
    for method, path, operation in operations:
        label = f"{method} {path}"
        if not operation.get("summary", "").strip():
            offenders.append(f"{label}: no summary")
        for status, response in operation.get("responses", {}).items():
            if not status.startswith("2"):
                continue
            for media_type, content in response.get("content", {}).items():
                if "json" not in media_type:
                    continue
                schema = _resolve(document, content.get("schema", {}))
                if not schema:
                    offenders.append(f"{label}: {status} {media_type} response has no schema")
        body = operation.get("requestBody")
        if body is None:
            continue
        for media_type, content in body.get("content", {}).items():
            if "json" not in media_type:
                continue  # uploads (multipart) carry files; examples do not apply
            if "example" in content or "examples" in content:
                continue
            if not _has_examples(document, content.get("schema", {})):
                offenders.append(f"{label}: {media_type} request body has no examples")
    assert offenders == [], "OpenAPI document incomplete:\n" + "\n".join(offenders)
