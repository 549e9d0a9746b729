"""The CDR schema as an ordered list of migrations, shared by ClickHouse 18.16 and chdb.

Rules for every statement here (both engines must accept it, see docs/cdr.md):
- idempotent on its own (IF NOT EXISTS ..., or an AddColumn step), because two processes may
  migrate at once and a crash may leave a migration half applied without its schema_migrations
  row. ClickHouse 18.16 has no ALTER TABLE ... ADD COLUMN IF NOT EXISTS (a syntax error there),
  so a new column is an AddColumn step that the store runs only if system.columns lacks it;
- no DateTime64, LowCardinality, Map, JSON or other types newer than ClickHouse 18.16;
- never edit a released migration: append a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

from vpbx_common.cdr.record import CallRecord, EndReason

CDR_TABLE = "cdr"
MIGRATIONS_TABLE = "schema_migrations"
LEGS_TABLE = "call_legs"  # one row per route step (migration 7)
DEAL_EVENTS_TABLE = "deal_events"  # deal events from the CRM (migration 8)

# The record's fields in column order, then the replacing version. Inserts and selects use this.
RECORD_COLUMNS: tuple[str, ...] = (
    "call_id",
    "tenant",
    "city",
    "node",
    "direction",
    "caller",
    "dialled",
    "label",
    "answered_by",
    "start_ms",
    "answer_ms",
    "end_ms",
    "ring_ms",
    "talk_ms",
    "end_reason",
    "sip_status",
    "hangup_by",
    "route",  # compact JSON of CallRecord.route (dumps_route), '' for none; added by migration 2
    "recording",  # storage key of the call's recording, '' for none; added by migration 4
    # The CRM contact the node found for the caller ('' / 0: none); added by migration 6.
    "contact_id",
    "contact_category",
    "contact_vip",  # UInt8: 18.16 has no Bool type
    "contact_owner_user_id",
)
VERSION_COLUMN = "version"

# Columns derived from the record at insert (vpbx_common.cdr.derived.derive_call), after the
# version in INSERT order; added by migration 7. They are not part of the record: rows written
# before migration 7 read their defaults ('' / 0), and record_from_row() never reads them.
ANALYTICS_COLUMNS: tuple[str, ...] = (
    "group_name",  # the last group the call entered ('' if none)
    "last_rung",  # the last extension that rang ('' if none rang)
    "queue",  # the last queue (its group's name) the caller waited in ('' if none)
    "queue_wait_ms",  # time spent waiting in queues, all visits together
    "abandoned_in",  # unanswered and the caller left: 'queue', 'ivr', 'ring', 'other'; else ''
    "ivr_menu",  # the last IVR menu the call entered ('' if none)
    "ivr_choice",  # the digit chosen in it ('' if none)
)

# call_legs, one row per route step, in INSERT order; the replacing version comes last.
LEG_COLUMNS: tuple[str, ...] = (
    "tenant",
    "call_id",
    "seq",  # the step's index in the route, from 0
    "start_ms",  # the call's start: the period filter and the partition, shared by its legs
    "at_ms",  # when the step happened: start_ms + after_s
    "kind",  # ring, queue, ivr, voicemail, crm, decision, schedule, plan, transfer, ...
    "target",  # what the step belongs to: group:sales, queue:support, ivr:main, user:101, ...
    "subject",
    "member",  # '' for none
    "outcome",
    "detail",
)

# DealEvent's fields in column order (the replacing version follows); migration 8.
DEAL_EVENT_COLUMNS: tuple[str, ...] = (
    "tenant",
    "event_id",
    "deal_id",
    "contact_id",
    "label",
    "kind",
    "stage",
    "pipeline",
    "amount",
    "currency",
    "user_id",
    "owner_user_id",
    "at_ms",
)

BOOTSTRAP_SQL = (
    f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
    "version UInt32, name String, applied_ms UInt64"
    ") ENGINE = ReplacingMergeTree ORDER BY version"
)


@dataclass(frozen=True, slots=True)
class AddColumn:
    """`ALTER TABLE table ADD COLUMN name definition`, made idempotent by the store.

    ClickHouse 18.16 refuses `ADD COLUMN IF NOT EXISTS` (syntax error, code 62) and fails a second
    plain ADD COLUMN ("already exists", code 44; current versions: DUPLICATE_COLUMN, code 15).
    The store therefore runs `sql` only when `exists_sql` counts no such column, and when the ALTER
    fails it asks again: if the column is there now (another process added it meanwhile), the
    step is done, otherwise the error stands.
    """

    table: str
    name: str
    definition: str  # type and default, e.g. "String DEFAULT ''"

    @property
    def sql(self) -> str:
        return f"ALTER TABLE {self.table} ADD COLUMN {self.name} {self.definition}"

    @property
    def exists_sql(self) -> str:
        # table and name are identifiers written in this module, never input.
        return (
            "SELECT count() FROM system.columns WHERE database = currentDatabase()"  # noqa: S608
            f" AND table = '{self.table}' AND name = '{self.name}'"
        )


Statement = str | AddColumn


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[Statement, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        name="create cdr",
        statements=(
            f"""CREATE TABLE IF NOT EXISTS {CDR_TABLE} (
    call_id String,
    tenant String,
    city String,
    node String,
    direction Enum8('inbound' = 1, 'outbound' = 2, 'internal' = 3),
    caller String,
    dialled String,
    label String,
    answered_by String,
    start_ms UInt64,
    answer_ms Nullable(UInt64),
    end_ms UInt64,
    ring_ms UInt64,
    talk_ms UInt64,
    end_reason Enum8('completed' = 1, 'cancelled' = 2, 'no-answer' = 3, 'busy' = 4,
                     'unavailable' = 5, 'rejected' = 6, 'failed' = 7, 'node-lost' = 8),
    sip_status UInt16,
    hangup_by Enum8('caller' = 1, 'callee' = 2, 'system' = 3),
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(toDateTime(intDiv(start_ms, 1000), 'UTC'))
ORDER BY (tenant, call_id)""",
        ),
    ),
    Migration(
        version=2,
        name="route trace and voicemail",
        statements=(
            # Rows written before this migration read '' (no route) from the default.
            AddColumn(CDR_TABLE, "route", "String DEFAULT ''"),
            # Widening an Enum8 keeps the stored values; running it again changes nothing.
            f"""ALTER TABLE {CDR_TABLE} MODIFY COLUMN end_reason Enum8(
    'completed' = 1, 'cancelled' = 2, 'no-answer' = 3, 'busy' = 4, 'unavailable' = 5,
    'rejected' = 6, 'failed' = 7, 'node-lost' = 8, 'voicemail' = 9)""",
        ),
    ),
    Migration(
        version=3,
        name="end reason no-capacity",
        statements=(
            # Widening an Enum8 keeps every stored value (ClickHouse 18.16 and current);
            # running it again is a no-op.
            f"""ALTER TABLE {CDR_TABLE} MODIFY COLUMN end_reason Enum8(
    'completed' = 1, 'cancelled' = 2, 'no-answer' = 3, 'busy' = 4, 'unavailable' = 5,
    'rejected' = 6, 'failed' = 7, 'node-lost' = 8, 'voicemail' = 9, 'no-capacity' = 10)""",
        ),
    ),
    Migration(
        version=4,
        name="recording key",
        # Rows written before this migration read '' (not recorded) from the default.
        statements=(AddColumn(CDR_TABLE, "recording", "String DEFAULT ''"),),
    ),
    Migration(
        version=5,
        name="end reason callback",
        statements=(
            f"""ALTER TABLE {CDR_TABLE} MODIFY COLUMN end_reason Enum8(
    'completed' = 1, 'cancelled' = 2, 'no-answer' = 3, 'busy' = 4, 'unavailable' = 5,
    'rejected' = 6, 'failed' = 7, 'node-lost' = 8, 'voicemail' = 9, 'no-capacity' = 10,
    'callback' = 11)""",
        ),
    ),
    Migration(
        version=6,
        name="crm contact",
        # Rows written before this migration read no contact from the defaults. The
        # category stays a String (a tenant may name its own categories); no LowCardinality,
        # which 18.16 lacks.
        statements=(
            AddColumn(CDR_TABLE, "contact_id", "String DEFAULT ''"),
            AddColumn(CDR_TABLE, "contact_category", "String DEFAULT ''"),
            AddColumn(CDR_TABLE, "contact_vip", "UInt8 DEFAULT 0"),
            AddColumn(CDR_TABLE, "contact_owner_user_id", "String DEFAULT ''"),
        ),
    ),
    Migration(
        version=7,
        name="analytics",
        statements=(
            # Derived from the route at insert; rows written before read the defaults, i.e.
            # no group, queue or IVR and never abandoned.
            AddColumn(CDR_TABLE, "group_name", "String DEFAULT ''"),
            AddColumn(CDR_TABLE, "last_rung", "String DEFAULT ''"),
            AddColumn(CDR_TABLE, "queue", "String DEFAULT ''"),
            AddColumn(CDR_TABLE, "queue_wait_ms", "UInt64 DEFAULT 0"),
            AddColumn(CDR_TABLE, "abandoned_in", "String DEFAULT ''"),
            AddColumn(CDR_TABLE, "ivr_menu", "String DEFAULT ''"),
            AddColumn(CDR_TABLE, "ivr_choice", "String DEFAULT ''"),
            # Same key, version and partition as the call's row, so re-shipping a batch (or a
            # node-lost record replaced by the real one) collapses the legs the same way.
            f"""CREATE TABLE IF NOT EXISTS {LEGS_TABLE} (
    tenant String,
    call_id String,
    seq UInt16,
    start_ms UInt64,
    at_ms UInt64,
    kind String,
    target String,
    subject String,
    member String,
    outcome String,
    detail String,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(toDateTime(intDiv(start_ms, 1000), 'UTC'))
ORDER BY (tenant, call_id, seq)""",
        ),
    ),
    Migration(
        version=8,
        name="deal events",
        # The CRM's deal steps (vpbx_common.cdr.deals.DealEvent) for the funnel, channels and
        # managers reports. A step never changes, so duplicates (a batch shipped twice) are the
        # only thing the replacing merge collapses. amount: hundredths as Int64 (NULL: the deal
        # has no amount), because 18.16 has no usable Decimal on both engines.
        statements=(
            f"""CREATE TABLE IF NOT EXISTS {DEAL_EVENTS_TABLE} (
    tenant String,
    event_id String,
    deal_id String,
    contact_id String,
    label String,
    kind Enum8('created' = 1, 'stage-changed' = 2, 'won' = 3, 'lost' = 4, 'reopened' = 5),
    stage String,
    pipeline String,
    amount Nullable(Int64),
    currency String,
    user_id String,
    owner_user_id String,
    at_ms UInt64,
    version UInt64
) ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(toDateTime(intDiv(at_ms, 1000), 'UTC'))
ORDER BY (tenant, event_id)""",
        ),
    ),
)

# Bit above any plausible epoch-ms value (2**56 ms is two million years).
_AUTHORITATIVE = 1 << 56


def row_version(record: CallRecord) -> int:
    """ReplacingMergeTree keeps the row with the highest version per (tenant, call_id).

    A record the B2BUA wrote at the real end of a call always beats a node-lost record that crash
    recovery reconstructed for the same call (possible if the node died between spooling the CDR
    and removing the call from its journal). Between records of the same kind the later end wins;
    identical duplicates (a batch shipped twice) collapse to one row either way.
    """
    authority = 0 if record.end_reason is EndReason.NODE_LOST else _AUTHORITATIVE
    return authority + record.end_ms
