"""The media node's durable CDR spool and open-call journal.

Layout under the spool directory (one spool per node process, enforced with a lock file):

    spool.lock
    segments/segment-00000000000000000001.jsonl   append-only JSON lines, one CallRecord each
    segments/segment-00000000000000000001.ack     bytes of that segment already shipped
    open-calls/<sha256 of call id>.json           one file per call in progress

Every method does blocking file I/O with fsync; call it from asyncio via asyncio.to_thread.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vpbx_common.cdr.record import CallRecord, OpenCall, now_ms

__all__ = ["Batch", "CdrSpool", "OpenCall", "SegmentCursor", "SpoolBusyError"]

logger = logging.getLogger(__name__)

_SEGMENT_PREFIX = "segment-"
_SEGMENT_SUFFIX = ".jsonl"
_ACK_SUFFIX = ".ack"
_OPEN_SUFFIX = ".json"
_TMP_SUFFIX = ".tmp"
_BAD_SUFFIX = ".bad"


class SpoolBusyError(RuntimeError):
    """Another live process owns this spool directory."""


@dataclass(frozen=True, slots=True)
class SegmentCursor:
    """How far into one segment a batch reaches (byte offset just past its last line)."""

    segment: int
    offset: int


@dataclass(frozen=True, slots=True)
class Batch:
    """Records read from the spool, and where to mark them shipped once the store has them."""

    records: tuple[CallRecord, ...]
    cursors: tuple[SegmentCursor, ...]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def has_progress(self) -> bool:
        """True if acknowledging would move anything (records, or skipped/finished segments)."""
        return bool(self.cursors)


def _fsync_dir(directory: Path) -> None:
    # A created, renamed or removed file is only durable once its directory entry is.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + _TMP_SUFFIX)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    tmp.replace(path)
    _fsync_dir(path.parent)


class CdrSpool:
    """Append-only, fsynced CDR segments plus a journal of calls in progress."""

    def __init__(self, directory: Path, segment_max_bytes: int = 1 << 20) -> None:
        if segment_max_bytes <= 0:
            raise ValueError("segment_max_bytes must be positive")
        self.directory = directory
        self.segments_dir = directory / "segments"
        self.open_calls_dir = directory / "open-calls"
        self._segment_max_bytes = segment_max_bytes
        self._lock = threading.RLock()
        self._writer_fd: int | None = None
        self._writer_segment = 0
        self._writer_size = 0
        self._begun_here: set[str] = set()
        self.segments_dir.mkdir(parents=True, exist_ok=True)
        self.open_calls_dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd: int | None = self._take_directory_lock()

    def _take_directory_lock(self) -> int:
        # Two processes appending to and deleting the same segments would lose or duplicate
        # records; the kernel drops this lock when the owner dies, even on SIGKILL.
        fd = os.open(self.directory / "spool.lock", os.O_RDWR | os.O_CREAT, 0o640)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SpoolBusyError(
                f"CDR spool {self.directory} is in use by another process"
            ) from None
        return fd

    def close(self) -> None:
        with self._lock:
            self._close_writer()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # closing releases the flock
                self._lock_fd = None

    def __enter__(self) -> CdrSpool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- segments ---------------------------------------------------------------------------

    def _segment_path(self, segment: int) -> Path:
        return self.segments_dir / f"{_SEGMENT_PREFIX}{segment:020d}{_SEGMENT_SUFFIX}"

    def _ack_path(self, segment: int) -> Path:
        return self.segments_dir / f"{_SEGMENT_PREFIX}{segment:020d}{_ACK_SUFFIX}"

    def _segments(self) -> list[int]:
        numbers = []
        for path in self.segments_dir.glob(f"{_SEGMENT_PREFIX}*{_SEGMENT_SUFFIX}"):
            digits = path.name[len(_SEGMENT_PREFIX) : -len(_SEGMENT_SUFFIX)]
            if digits.isdigit():
                numbers.append(int(digits))
            else:
                logger.warning("ignoring unexpected file %s in the CDR spool", path)
        return sorted(numbers)

    def _close_writer(self) -> None:
        if self._writer_fd is not None:
            os.close(self._writer_fd)
            self._writer_fd = None

    def _open_new_segment(self) -> int:
        # Always a fresh segment after open or rotation: the tail of an older one may be a torn
        # line from a crash, and appending after it would glue the next record onto the garbage.
        self._close_writer()
        existing = self._segments()
        segment = max([*existing, self._writer_segment]) + 1
        self._ack_path(segment).unlink(missing_ok=True)  # never inherit a stale offset
        fd = os.open(
            self._segment_path(segment), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o640
        )
        _fsync_dir(self.segments_dir)
        self._writer_fd, self._writer_segment, self._writer_size = fd, segment, 0
        return fd

    def append(self, record: CallRecord) -> None:
        """Add one CDR; it is on disk (fsynced) when this returns."""
        line = (record.dumps() + "\n").encode("utf-8")
        with self._lock:
            fd = self._writer_fd
            if fd is None or (
                self._writer_size > 0 and self._writer_size + len(line) > self._segment_max_bytes
            ):
                fd = self._open_new_segment()
            _write_all(fd, line)
            os.fsync(fd)
            self._writer_size += len(line)

    def finish_call(self, record: CallRecord) -> None:
        """The normal end of a call: spool its CDR, then drop it from the open-call journal."""
        self.append(record)
        self.end_call(record.call_id)

    def _acked_offset(self, segment: int) -> int:
        try:
            return int(self._ack_path(segment).read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError:
            # A garbled ack only means re-shipping (the store is idempotent), never losing.
            logger.warning("unreadable ack file for CDR segment %d; re-shipping it", segment)
            return 0

    def pending(self, max_records: int) -> Batch:
        """Up to max_records unshipped CDRs, oldest first; acknowledge() removes them."""
        if max_records <= 0:
            raise ValueError("max_records must be positive")
        records: list[CallRecord] = []
        cursors: list[SegmentCursor] = []
        with self._lock:
            for segment in self._segments():
                if len(records) >= max_records:
                    break
                start = self._acked_offset(segment)
                path = self._segment_path(segment)
                with path.open("rb") as handle:
                    handle.seek(start)
                    data = handle.read()
                end = self._parse_lines(segment, start, data, max_records - len(records), records)
                sealed = segment != self._writer_segment or self._writer_fd is None
                if end > start or (sealed and not data):
                    # An empty remainder of a sealed segment still gets a cursor so that
                    # acknowledging the batch deletes the finished file.
                    cursors.append(SegmentCursor(segment, end))
        return Batch(tuple(records), tuple(cursors))

    def _parse_lines(
        self, segment: int, start: int, data: bytes, limit: int, into: list[CallRecord]
    ) -> int:
        """Parse complete lines into `into`; returns the offset just past the last one consumed."""
        index = 0
        taken = 0
        while taken < limit:
            newline = data.find(b"\n", index)
            if newline == -1:
                tail = data[index:]
                active = segment == self._writer_segment and self._writer_fd is not None
                if tail and not active:
                    # Only a crash mid-append leaves an unterminated last line; this process
                    # writes whole lines under the lock, so its own segment never has one.
                    logger.warning(
                        "skipping torn last line (%d bytes) of CDR segment %d", len(tail), segment
                    )
                    index = len(data)
                break
            line = data[index:newline]
            index = newline + 1
            if not line.strip():
                continue
            try:
                into.append(CallRecord.loads(line))
            except ValueError as exc:  # JSON, UTF-8 and field errors are all ValueError
                logger.warning(
                    "skipping unreadable CDR at byte %d of segment %d: %s",
                    start + index - len(line) - 1,
                    segment,
                    exc,
                )
                continue
            taken += 1
        return start + index

    def acknowledge(self, batch: Batch) -> None:
        """Mark a batch shipped: finished segments are deleted, others remember the offset."""
        removed = False
        with self._lock:
            for cursor in batch.cursors:
                path = self._segment_path(cursor.segment)
                try:
                    size = path.stat().st_size
                except FileNotFoundError:
                    continue  # acknowledged twice; already gone
                offset = max(cursor.offset, self._acked_offset(cursor.segment))
                if offset < size:
                    _atomic_write(self._ack_path(cursor.segment), f"{offset}\n".encode())
                    continue
                if cursor.segment == self._writer_segment and self._writer_fd is not None:
                    # Everything written so far is shipped: start the next append in a new file
                    # so this one can go.
                    self._close_writer()
                # Ack first: a crash in between then re-ships the segment (harmless) instead of
                # leaving an ack that a future segment with the same number would inherit.
                self._ack_path(cursor.segment).unlink(missing_ok=True)
                path.unlink()
                removed = True
            if removed:
                _fsync_dir(self.segments_dir)

    def pending_count(self) -> int:
        """Unshipped records (reads everything; for tests and metrics, not the hot path)."""
        total = 0
        while True:
            batch = self.pending(10_000)
            total += len(batch)
            if len(batch) < 10_000:
                return total

    # -- open-call journal ------------------------------------------------------------------

    def _open_call_path(self, call_id: str) -> Path:
        # Call-IDs may contain '/', '@' and anything else; a digest is always a safe file name.
        digest = hashlib.sha256(call_id.encode("utf-8")).hexdigest()[:40]
        return self.open_calls_dir / f"{digest}{_OPEN_SUFFIX}"

    def begin_call(self, partial: OpenCall) -> None:
        """Durably note that a call started, so a crash still yields its CDR."""
        self._journal(partial)

    def update_call(self, call: OpenCall) -> None:
        """Replace what is known about an open call (e.g. after answer)."""
        self._journal(call)

    def _journal(self, call: OpenCall) -> None:
        document: dict[str, Any] = {**call.to_json(), "touched_ms": now_ms()}
        payload = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        with self._lock:
            _atomic_write(self._open_call_path(call.call_id), payload)
            self._begun_here.add(call.call_id)

    def end_call(self, call_id: str) -> None:
        """The call's CDR is spooled (or it never needed one): forget it."""
        with self._lock:
            # No directory fsync: if this unlink is lost in a crash, recovery writes a node-lost
            # duplicate that the store's version rule ranks below the real CDR.
            self._open_call_path(call_id).unlink(missing_ok=True)
            self._begun_here.discard(call_id)

    def touch_open_calls(self) -> int:
        """Heartbeat: stamp every open call of this process as alive now.

        Call it every few seconds; a node killed mid-call then gets an end time at most one
        heartbeat early instead of the time of the last answer/update.
        """
        now = time.time()
        touched = 0
        with self._lock:
            for call_id in list(self._begun_here):
                try:
                    os.utime(self._open_call_path(call_id), (now, now))
                    touched += 1
                except FileNotFoundError:
                    self._begun_here.discard(call_id)
        return touched

    def open_calls(self) -> list[OpenCall]:
        calls = []
        with self._lock:
            for path in sorted(self.open_calls_dir.glob(f"*{_OPEN_SUFFIX}")):
                loaded = self._load_open_call(path)
                if loaded is not None:
                    calls.append(loaded[0])
        return calls

    def _load_open_call(self, path: Path) -> tuple[OpenCall, int] | None:
        try:
            document = json.loads(path.read_bytes())
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
            touched = document.get("touched_ms", 0)
            if not isinstance(touched, int) or isinstance(touched, bool):
                raise ValueError("touched_ms is not an integer")
            return OpenCall.from_json(document), touched
        except (OSError, ValueError) as exc:
            logger.warning("unreadable open-call journal entry %s: %s", path, exc)
            return None

    def recover_open_calls(self, now_ms: int) -> list[CallRecord]:
        """At node start: CDRs (end reason node-lost) for calls a dead process left open.

        The end time is the last sign of life of the call: the later of the journal entry's own
        timestamp and its mtime (moved by touch_open_calls), never later than now_ms. The records
        are appended to the spool before their journal entries are removed, so a crash during
        recovery repeats it (the store collapses the duplicates) rather than losing calls.
        """
        recovered: list[CallRecord] = []
        with self._lock:
            for leftover in self.open_calls_dir.glob(f"*{_TMP_SUFFIX}"):
                # A journal write that never reached its rename: the call was not yet durably
                # begun (or the previous version of its entry is still in place).
                logger.info("removing incomplete open-call journal write %s", leftover)
                leftover.unlink(missing_ok=True)
            for path in sorted(self.open_calls_dir.glob(f"*{_OPEN_SUFFIX}")):
                loaded = self._load_open_call(path)
                if loaded is None:
                    with contextlib.suppress(FileNotFoundError):
                        path.rename(path.with_name(path.name + _BAD_SUFFIX))
                    continue
                call, touched_ms = loaded
                if call.call_id in self._begun_here:
                    continue  # alive in this very process
                mtime_ms = path.stat().st_mtime_ns // 1_000_000
                end_ms = min(max(touched_ms, mtime_ms), now_ms)
                record = call.lost(end_ms)
                self.append(record)
                path.unlink()
                recovered.append(record)
                logger.warning(
                    "call %s of tenant %s was open when the node died; recorded as node-lost",
                    call.call_id,
                    call.tenant,
                )
        return recovered
