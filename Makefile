# vpbx: the two commands are `make up` and `make test`.
SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never

.PHONY: up test deps web web-api web-check lint bench-sip bench-register bench-ws bench-operator bench-api bench-media bench-mixer bench-webrtc bench-phoneregion bench-crm bench-crm-lookup bench-crm-events bench-screenpop bench-analytics clean

deps:
	@bash scripts/install-deps.sh

## Run the whole platform locally from examples/demo.yaml (Ctrl-C stops it).
up: deps web
	uv run vpbx up -f examples/demo.yaml

## The agent workspace (crm/web) built into crm/web/dist, which the CRM serves at /;
## skipped when package-lock.json, the sources and the build's stamp say nothing changed.
web: deps
	bash scripts/build-web.sh

## Regenerate the workspace's typed API client from the services' OpenAPI documents.
web-api:
	uv run python crm/web/scripts/openapi.py

## The workspace's checks: API client up to date, TypeScript strict, unit tests.
web-check:
	bash scripts/build-web.sh
	uv run python crm/web/scripts/openapi.py --check
	cd crm/web && npm run --silent typecheck && npm test --silent

## Install what is missing, then run the whole suite against real services.
test: deps web
	uv run ruff check .
	uv run ruff format --check .
	uv run mypy
	uv run mypy --strict crm/web/scripts
	$(MAKE) --no-print-directory web-check
	@# The object storage tests' S3 server, built from source once and cached.
	bash scripts/build-seaweedfs.sh >/dev/null
	bash scripts/run-tests.sh

lint:
	uv run ruff check . && uv run ruff format --check . && uv run mypy
	uv run mypy --strict crm/web/scripts
	bash scripts/build-web.sh >/dev/null
	cd crm/web && npm run --silent typecheck

## Stepped sipp search of the highest call rate: vpbx edge+node vs Kamailio, per scenario
## (inbound, outbound through a trunk, blind transfer).
## Options: make bench-sip BENCH_SIP_ARGS="--scenario transfer --rates 20,50,80"
BENCH_SIP_ARGS ?=
bench-sip: deps
	uv run python -m loadtest.bench_sip $(BENCH_SIP_ARGS)

## Stepped sipp search of digest-authenticated REGISTERs/s: vpbx edge+node vs Kamailio.
bench-register: deps
	uv run python -m loadtest.bench_register

## 500 Tenants x 2 cities + 2000 Numbers against a local kube-apiserver: time to Ready.
bench-operator: deps
	uv run python -m loadtest.bench_operator

## SIP over WebSocket: the edge's CPU per browser REGISTER and per browser-to-browser call.
bench-ws: deps
	uv run python -m loadtest.bench_ws

## Control API on PostgreSQL: req/s, p50/p99 of typical reads and writes at 1-64 in flight.
bench-api: deps
	uv run python -m loadtest.bench_api

## The CRM side of the routing lookup (what a crm-lookup step costs) with 1M contacts.
## Options: make bench-crm BENCH_CRM_ARGS="--contacts 100000 --concurrency 1,8"
BENCH_CRM_ARGS ?=
bench-crm: deps
	uv run python -m loadtest.bench_crm $(BENCH_CRM_ARGS)

## The CRM's reader of the call events: CPU per call, backlog and steady stream.
## Options: make bench-crm-events BENCH_CRM_EVENTS_ARGS="--rate 40 --calls 800"
BENCH_CRM_EVENTS_ARGS ?=
bench-crm-events: deps
	uv run python -m loadtest.bench_crm_events $(BENCH_CRM_EVENTS_ARGS)

## Paced media: concurrent music-on-hold streams per node core, then per-frame costs.
## Options: make bench-media BENCH_MEDIA_ARGS="--steps 500,1000 --step-seconds 3 --node-realtime"
BENCH_MEDIA_ARGS ?=
bench-media: deps
	uv run python -m loadtest.bench_media $(BENCH_MEDIA_ARGS)

## Conference mixer: CPU per 20 ms tick for 2-32 parties, and per packet taken.
bench-mixer: deps
	uv run python -m loadtest.bench_mixer

## WebRTC legs: gateway CPU per leg and legs per core, browsers in separate processes.
## Options: make bench-webrtc BENCH_WEBRTC_ARGS="--legs 10,25,50,100 --seconds 10"
BENCH_WEBRTC_ARGS ?=
bench-webrtc: deps
	uv run python -m loadtest.bench_webrtc $(BENCH_WEBRTC_ARGS)

## Region look-up and local-presence caller ID: one-off data load, then us per call.
bench-phoneregion:
	uv run python -m loadtest.bench_phoneregion

## The node side of the CRM lookup (a fake CRM): latency and node CPU per lookup, one and 50 at once.
bench-crm-lookup:
	uv run python -m loadtest.bench_crm_lookup

## Screen pop latency: XADD of call.offered -> the agent's WebSocket, and with sipp calls
## (1 and 20/s) the pop's lead over the INVITE reaching the agent's browser device.
## Options: make bench-screenpop BENCH_SCREENPOP_ARGS="--events 200 --calls 10"
BENCH_SCREENPOP_ARGS ?=
bench-screenpop: deps web
	uv run python -m loadtest.bench_screenpop $(BENCH_SCREENPOP_ARGS)

## Analytics: 10M CDRs of 1000 tenants; ingest rows/s through the spool shipper, then p50/p95
## of every report (big and median tenant, 30 and 365 days) on chdb and ClickHouse 18.16.
## Options: make bench-analytics BENCH_ANALYTICS_ARGS="--cdrs 1000000 --tenants 200 --engines server"
BENCH_ANALYTICS_ARGS ?=
bench-analytics: deps
	uv run python -m loadtest.bench_analytics $(BENCH_ANALYTICS_ARGS)

clean:
	rm -rf var .cache .pytest_cache .mypy_cache .ruff_cache crm/web/dist crm/web/node_modules
