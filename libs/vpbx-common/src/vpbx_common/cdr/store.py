"""CDR storage in ClickHouse: a server over the native protocol, or chdb (in-process) on a data dir.

Both backends run the same SQL text (built here); only the transport differs. The API is
synchronous: async callers wrap it in asyncio.to_thread.
"""

from __future__ import annotations

import functools
import json
import logging
import random
import re
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from vpbx_common.cdr.deals import DealEvent, DealEventKind
from vpbx_common.cdr.derived import CallAnalytics, derive_call
from vpbx_common.cdr.migrations import (
    ANALYTICS_COLUMNS,
    BOOTSTRAP_SQL,
    CDR_TABLE,
    DEAL_EVENT_COLUMNS,
    DEAL_EVENTS_TABLE,
    LEG_COLUMNS,
    LEGS_TABLE,
    MIGRATIONS,
    MIGRATIONS_TABLE,
    RECORD_COLUMNS,
    VERSION_COLUMN,
    AddColumn,
    Migration,
    Statement,
    row_version,
)
from vpbx_common.cdr.record import (
    CallRecord,
    Direction,
    EndReason,
    HangupBy,
    dumps_route,
    loads_route,
    now_ms,
)

logger = logging.getLogger(__name__)

Row = tuple[Any, ...]
SqlValue = str | int | None

# SQL is built as text so that both engines run exactly the same statements; the S608 waivers
# below are safe because identifiers are module constants and values pass through sql_literal().
_SELECT_COLUMNS = ", ".join(RECORD_COLUMNS)
_DERIVED_COLUMNS = ", ".join(ANALYTICS_COLUMNS)
INSERT_SQL = (
    f"INSERT INTO {CDR_TABLE} ({_SELECT_COLUMNS}, {VERSION_COLUMN}, {_DERIVED_COLUMNS}) VALUES"
)
INSERT_LEGS_SQL = f"INSERT INTO {LEGS_TABLE} ({', '.join(LEG_COLUMNS)}, {VERSION_COLUMN}) VALUES"
_DEAL_EVENT_SELECT = ", ".join(DEAL_EVENT_COLUMNS)
DEAL_EVENTS_INSERT_SQL = (
    f"INSERT INTO {DEAL_EVENTS_TABLE} ({_DEAL_EVENT_SELECT}, {VERSION_COLUMN}) VALUES"
)


class CdrStoreError(Exception):
    """The store refused or failed an operation."""


class CdrStoreUnavailableError(CdrStoreError):
    """The store cannot be reached right now (server down, chdb dir locked): retry later."""


def sql_literal(value: SqlValue) -> str:
    """A ClickHouse literal; every engine version we support parses this escaping."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        raise TypeError("booleans have no column in the CDR schema")
    if isinstance(value, int):
        return str(value)
    escaped = (
        value.replace("\\", "\\\\")
        .replace("'", "\\'")
        .replace("\n", "\\n")
        .replace("\r", "\\r")
        .replace("\t", "\\t")
        .replace("\0", "\\0")
    )
    return f"'{escaped}'"


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True, slots=True)
class CdrQuery:
    """A read statement with named placeholders (``{tenant}``) and their values.

    ClickHouse 18.16 has no query parameters on the native protocol (and chdb must run the same
    text), so binding happens here, in one place: every value is rendered by sql_literal() and
    only ever where a placeholder stands; the template itself must be constant text. Rendering
    is one pass, so a value containing ``{name}`` stays a value. A placeholder without a value,
    or a value without a placeholder, is a programming error (ValueError).
    """

    template: str
    params: Mapping[str, SqlValue] = field(default_factory=dict)

    def render(self) -> str:
        used: set[str] = set()

        def literal(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self.params:
                raise ValueError(f"no value for placeholder {{{name}}}")
            used.add(name)
            return sql_literal(self.params[name])

        text = _PLACEHOLDER.sub(literal, self.template)
        unused = sorted(set(self.params) - used)
        if unused:
            raise ValueError(f"values without a placeholder: {', '.join(unused)}")
        return text


def record_row(record: CallRecord, derived: CallAnalytics | None = None) -> tuple[SqlValue, ...]:
    """The `cdr` row of INSERT_SQL: the record's columns, its version, the derived columns."""
    fields = record.to_json()
    fields["route"] = dumps_route(record.route)  # one String column holding compact JSON
    fields["contact_vip"] = int(record.contact_vip)  # a UInt8 column: sql_literal takes no bool
    analytics = derive_call(record) if derived is None else derived
    return (
        *(fields[column] for column in RECORD_COLUMNS),
        row_version(record),
        *analytics.columns(),
    )


def leg_rows(record: CallRecord, derived: CallAnalytics) -> list[tuple[SqlValue, ...]]:
    """The `call_legs` rows of INSERT_LEGS_SQL, one per route step, with the call's version
    (so a re-shipped or replaced call's legs collapse as its row does)."""
    version = row_version(record)
    return [
        (
            record.tenant,
            record.call_id,
            leg.seq,
            record.start_ms,
            leg.at_ms,
            leg.kind,
            leg.target,
            leg.subject,
            leg.member,
            leg.outcome,
            leg.detail,
            version,
        )
        for leg in derived.legs
    ]


def record_from_row(row: Row) -> CallRecord:
    # int() because JSON output of 64-bit integers may be quoted, depending on engine version.
    answer = row[10]
    return CallRecord(
        call_id=str(row[0]),
        tenant=str(row[1]),
        city=str(row[2]),
        node=str(row[3]),
        direction=Direction(row[4]),
        caller=str(row[5]),
        dialled=str(row[6]),
        label=str(row[7]),
        answered_by=str(row[8]),
        start_ms=int(row[9]),
        answer_ms=None if answer is None else int(answer),
        end_ms=int(row[11]),
        ring_ms=int(row[12]),
        talk_ms=int(row[13]),
        end_reason=EndReason(row[14]),
        sip_status=int(row[15]),
        hangup_by=HangupBy(row[16]),
        route=loads_route(str(row[17])),
        recording=str(row[18]),
        contact_id=str(row[19]),
        contact_category=str(row[20]),
        contact_vip=bool(int(row[21])),
        contact_owner_user_id=str(row[22]),
    )


def deal_event_row(event: DealEvent) -> tuple[SqlValue, ...]:
    fields = event.to_json()
    # A step never changes: any version would do; its time keeps the column meaningful.
    return (*(fields[column] for column in DEAL_EVENT_COLUMNS), event.at_ms)


def deal_event_from_row(row: Row) -> DealEvent:
    amount = row[8]
    return DealEvent(
        tenant=str(row[0]),
        event_id=str(row[1]),
        deal_id=str(row[2]),
        contact_id=str(row[3]),
        label=str(row[4]),
        kind=DealEventKind(row[5]),
        stage=str(row[6]),
        pipeline=str(row[7]),
        amount=None if amount is None else int(amount),
        currency=str(row[9]),
        user_id=str(row[10]),
        owner_user_id=str(row[11]),
        at_ms=int(row[12]),
    )


class Connection(ABC):
    """One open conversation with the engine, held for one public store operation."""

    @abstractmethod
    def execute(self, sql: str) -> list[Row]: ...

    @abstractmethod
    def insert(self, sql: str, rows: Sequence[tuple[SqlValue, ...]]) -> None:
        """Run `INSERT ... VALUES` (no data in sql) with rows."""


def run_migration(conn: Connection, migration: Migration) -> None:
    """Run a migration's statements, without its bookkeeping row. Every statement is idempotent,
    so running a migration that is already (partly) applied changes nothing."""
    for statement in migration.statements:
        _run_statement(conn, statement)


def _run_statement(conn: Connection, statement: Statement) -> None:
    if isinstance(statement, str):
        conn.execute(statement)
        return
    _add_column(conn, statement)


def _column_exists(conn: Connection, step: AddColumn) -> bool:
    return int(conn.execute(step.exists_sql)[0][0]) > 0


def _add_column(conn: Connection, step: AddColumn) -> None:
    if _column_exists(conn, step):
        return
    try:
        conn.execute(step.sql)
    except Exception:
        # Another process may have added the column between the check and the ALTER; the
        # engine's error type differs per backend, so ask the schema rather than the error.
        if _column_exists(conn, step):
            logger.info("column %s.%s was added concurrently", step.table, step.name)
            return
        raise


class CdrStore(ABC):
    """CDRs in ClickHouse, idempotent by call id (ReplacingMergeTree, read with FINAL)."""

    @abstractmethod
    def _connect(self) -> AbstractContextManager[Connection]: ...

    @abstractmethod
    def close(self) -> None: ...

    def migrate(self, up_to: int | None = None) -> list[int]:
        """Apply missing migrations in order (those up to version `up_to`, default all);
        returns the versions this call applied."""
        applied_now: list[int] = []
        with self._connect() as conn:
            conn.execute(BOOTSTRAP_SQL)
            applied = {
                int(row[0])
                for row in conn.execute(f"SELECT DISTINCT version FROM {MIGRATIONS_TABLE}")  # noqa: S608
            }
            for migration in MIGRATIONS:
                if migration.version in applied:
                    continue
                if up_to is not None and migration.version > up_to:
                    break
                logger.info("applying CDR migration %d (%s)", migration.version, migration.name)
                run_migration(conn, migration)
                conn.insert(
                    f"INSERT INTO {MIGRATIONS_TABLE} (version, name, applied_ms) VALUES",
                    [(migration.version, migration.name, now_ms())],
                )
                applied_now.append(migration.version)
        return applied_now

    def applied_migrations(self) -> list[int]:
        with self._connect() as conn:
            rows = conn.execute(
                f"SELECT DISTINCT version FROM {MIGRATIONS_TABLE} ORDER BY version"  # noqa: S608
            )
        return [int(row[0]) for row in rows]

    def insert(self, records: Sequence[CallRecord]) -> None:
        """Store the calls with their derived columns and legs (migration 7 must be applied).

        The legs go first: a call whose row is visible has its legs too. The two inserts are
        not atomic; if the second fails the caller retries the whole batch (the shipper
        does), and both tables collapse the repeated rows."""
        if not records:
            return
        derived = [derive_call(record) for record in records]
        legs = [
            row
            for record, analytics in zip(records, derived, strict=True)
            for row in leg_rows(record, analytics)
        ]
        rows = [
            record_row(record, analytics)
            for record, analytics in zip(records, derived, strict=True)
        ]
        with self._connect() as conn:
            if legs:
                conn.insert(INSERT_LEGS_SQL, legs)
            conn.insert(INSERT_SQL, rows)

    def insert_deal_events(self, events: Sequence[DealEvent]) -> None:
        """Store the CRM's deal steps; one shipped twice is still one row (by event id)."""
        if not events:
            return
        with self._connect() as conn:
            conn.insert(DEAL_EVENTS_INSERT_SQL, [deal_event_row(event) for event in events])

    def deal_events(self, tenant: str) -> list[DealEvent]:
        """A tenant's deal steps (duplicates collapsed), oldest first: for tests and checks;
        reports read them through vpbx_common.analytics."""
        sql = (
            f"SELECT {_DEAL_EVENT_SELECT} FROM {DEAL_EVENTS_TABLE} FINAL"  # noqa: S608
            f" WHERE tenant = {sql_literal(tenant)} ORDER BY at_ms, event_id"
        )
        with self._connect() as conn:
            rows = conn.execute(sql)
        return [deal_event_from_row(row) for row in rows]

    def last(self, n: int, tenant: str | None = None) -> list[CallRecord]:
        """The n most recent calls (by start time), newest first, optionally of one tenant."""
        if n <= 0:
            return []
        where = "" if tenant is None else f" WHERE tenant = {sql_literal(tenant)}"
        sql = (
            f"SELECT {_SELECT_COLUMNS} FROM {CDR_TABLE} FINAL{where}"  # noqa: S608
            f" ORDER BY start_ms DESC, call_id DESC LIMIT {int(n)}"
        )
        with self._connect() as conn:
            rows = conn.execute(sql)
        return [record_from_row(row) for row in rows]

    def get(self, call_id: str) -> CallRecord | None:
        sql = (
            f"SELECT {_SELECT_COLUMNS} FROM {CDR_TABLE} FINAL"  # noqa: S608
            f" WHERE call_id = {sql_literal(call_id)} LIMIT 1"
        )
        with self._connect() as conn:
            rows = conn.execute(sql)
        return record_from_row(rows[0]) if rows else None

    def read(self, *queries: CdrQuery) -> list[list[Row]]:
        """Run read-only queries in one session (one chdb open for all of them); the rows of
        each, in order. Callers select RECORD_COLUMNS to turn rows into records with
        record_from_row()."""
        statements = [query.render() for query in queries]
        with self._connect() as conn:
            return [conn.execute(sql) for sql in statements]

    def count(self, tenant: str | None = None) -> int:
        """Distinct calls stored (duplicates collapsed), for tests and health checks."""
        where = "" if tenant is None else f" WHERE tenant = {sql_literal(tenant)}"
        with self._connect() as conn:
            rows = conn.execute(f"SELECT count() FROM {CDR_TABLE} FINAL{where}")  # noqa: S608
        return int(rows[0][0])

    def __enter__(self) -> CdrStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _first_line(exc: BaseException) -> str:
    # Server exceptions from 18.16 carry the server's whole C++ stack trace in their text.
    text = str(exc).strip()
    lines = [line for line in text.splitlines() if line.strip()]
    return " ".join(lines[:2]) if lines else type(exc).__name__


class _DriverConnection(Connection):
    def __init__(self, client: Any) -> None:
        self._client = client

    def execute(self, sql: str) -> list[Row]:
        return [tuple(row) for row in self._client.execute(sql)]

    def insert(self, sql: str, rows: Sequence[tuple[SqlValue, ...]]) -> None:
        # The native protocol sends rows as a data block after the query; ClickHouse 18.16 does
        # not read VALUES inlined in a native-protocol query (it waits for the block and times out).
        self._client.execute(sql, list(rows))


_DRIVER_DEFAULTS = {"connect_timeout": "3", "send_receive_timeout": "30"}


def _with_driver_defaults(url: str) -> str:
    """Bounded timeouts unless the URL sets its own: a dead server must not hang the shipper."""
    parts = urlsplit(url)
    if parts.scheme not in ("clickhouse", "clickhouses"):
        raise ValueError(f"not a ClickHouse native-protocol URL: {url!r}")
    query = dict(parse_qsl(parts.query))
    for key, value in _DRIVER_DEFAULTS.items():
        query.setdefault(key, value)
    return urlunsplit(parts._replace(query=urlencode(query)))


class ClickHouseCdrStore(CdrStore):
    """A ClickHouse server (18.16 or newer) over the native protocol, e.g.
    clickhouse://127.0.0.1:9000/default. One connection, reconnected on the next call after an
    error; calls are serialised because the driver's client is not thread-safe."""

    def __init__(self, url: str) -> None:
        from clickhouse_driver import Client

        self.url = url
        self._client = Client.from_url(_with_driver_defaults(url))
        self._lock = threading.Lock()

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        from clickhouse_driver import errors

        with self._lock:
            try:
                yield _DriverConnection(self._client)
            except (errors.NetworkError, errors.SocketTimeoutError, EOFError, OSError) as exc:
                self._client.disconnect()
                raise CdrStoreUnavailableError(
                    f"ClickHouse at {self._safe_url()} is unreachable: {_first_line(exc)}"
                ) from exc
            except errors.Error as exc:
                # A half-read response leaves the connection unusable; start clean next time.
                self._client.disconnect()
                raise CdrStoreError(
                    f"ClickHouse at {self._safe_url()} failed: {_first_line(exc)}"
                ) from exc

    def _safe_url(self) -> str:
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}{parts.path}"

    def close(self) -> None:
        with self._lock:
            self._client.disconnect()


class _ChdbConnection(Connection):
    def __init__(self, session: Any) -> None:
        self._session = session

    def execute(self, sql: str) -> list[Row]:
        raw: bytes = self._session.query(sql, "JSONCompact").bytes()
        if not raw.strip():
            return []
        document = json.loads(raw)
        return [tuple(row) for row in document.get("data", [])]

    def insert(self, sql: str, rows: Sequence[tuple[SqlValue, ...]]) -> None:
        values = ", ".join("(" + ", ".join(sql_literal(v) for v in row) + ")" for row in rows)
        self._session.query(f"{sql} {values}")


@functools.cache
def _chdb_process_lock() -> threading.Lock:
    # chdb runs one embedded server per process, bound to one data dir at a time; concurrent
    # sessions from threads of this process must take turns. Created on first use, not import.
    return threading.Lock()


class ChdbCdrStore(CdrStore):
    """chdb on a persistent data dir. The dir is locked by whichever process has a session open,
    so a session is held only for one operation and opening retries with backoff while another
    process (the shipper, a `vpbx calls` in another terminal) holds it."""

    def __init__(self, path: Path, busy_timeout: float = 10.0) -> None:
        if "?" in str(path):
            raise ValueError(f"chdb data dir must not contain '?': {path}")
        self.path = path
        self._busy_timeout = busy_timeout

    @contextmanager
    def _connect(self) -> Iterator[Connection]:
        lock = _chdb_process_lock()
        if not lock.acquire(timeout=self._busy_timeout):
            raise CdrStoreUnavailableError(
                f"chdb is busy in this process for {self._busy_timeout}s"
            )
        try:
            session = self._open_session()
            try:
                yield _ChdbConnection(session)
            except RuntimeError as exc:  # chdb's ChdbError is a RuntimeError
                raise CdrStoreError(f"chdb at {self.path} failed: {exc}") from exc
            finally:
                session.close()
        finally:
            lock.release()

    def _open_session(self) -> Any:
        from chdb import session as chdb_session

        session_class: Any = chdb_session.Session  # chdb ships no annotations

        self.path.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self._busy_timeout
        delay = 0.01
        attempts = 0
        while True:
            attempts += 1
            try:
                return session_class(str(self.path))
            except RuntimeError as exc:
                # chdb reports a dir locked by another process only as "Error initializing
                # EmbeddedServer" (the lock message goes to stderr), so every open failure is
                # treated as "busy" until the deadline.
                if time.monotonic() + delay > deadline:
                    raise CdrStoreUnavailableError(
                        f"chdb data dir {self.path} stayed busy for {self._busy_timeout}s "
                        f"({attempts} attempts): {exc}"
                    ) from exc
                logger.debug("chdb dir %s busy (attempt %d), retrying", self.path, attempts)
                time.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 0.2)

    def close(self) -> None:
        # Nothing is held between operations.
        return


def open_cdr_store(clickhouse_url: str | None, chdb_path: Path) -> CdrStore:
    """The ClickHouse server if a URL is configured, else embedded chdb on chdb_path."""
    if clickhouse_url:
        return ClickHouseCdrStore(clickhouse_url)
    return ChdbCdrStore(chdb_path)
