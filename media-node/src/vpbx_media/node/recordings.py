"""The node's recordings: spooled while calls go on, encoded and stored after them.

``RecordingService`` owns the spool directory ``<spool>/recordings/``. A call
starts a ``Recording`` there (``begin``); every second the service flushes what
each recording in progress received, so a node killed mid-call keeps all but the
last second. When a recording ends (``finish``) it is queued for the uploader:
one task that encodes it to Opus/Ogg in a worker thread (``media/encode.py``),
puts it into the object store under the key the CDR already carries, publishes
``recording.ready`` or ``voicemail.new`` on the call-event stream, and removes
the spool directory. A node that starts finds the directories a dead node left
behind and stores what they hold (marked incomplete: the end was lost).

A store that fails keeps the recording on disk and is tried again with backoff;
a spool directory that cannot be encoded is moved to ``failed/`` and logged, so
one broken file never blocks the others.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
import logging
import shutil
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from redis.exceptions import RedisError

from vpbx_common.cdr import now_ms
from vpbx_common.events import CallEvent, CallEventError, CallEventType
from vpbx_common.storage import RECORDING_CONTENT_TYPE, ObjectStore, StorageError

from ..media.encode import EncodedAudio, encode_recording
from ..media.recorder import Recording, RecordingKind, RecordingMeta

logger = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 1.0
_RETRY_MIN_S = 1.0
_RETRY_MAX_S = 60.0
_ENCODED_NAME = "audio.ogg"

Publish = Callable[[CallEvent], Awaitable[object]]


class RecordingServiceState(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


def _directory_name(meta: RecordingMeta) -> str:
    # The storage key is already path-safe and unique per call and kind.
    return meta.key.replace("/", "__")


class RecordingService:
    def __init__(self, spool_dir: Path, store: ObjectStore | None, publish: Publish) -> None:
        self.root = spool_dir / "recordings"
        self.failed = self.root / "failed"
        self._store = store
        self._publish = publish
        self._active: set[Recording] = set()
        self._jobs: asyncio.Queue[Path] = asyncio.Queue()
        self._queued: set[Path] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self.state = RecordingServiceState.NEW

    @property
    def enabled(self) -> bool:
        """Whether recordings can be kept at all (a store is configured)."""
        return self._store is not None

    async def start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for directory in sorted(self.root.iterdir()):
            if directory.is_dir() and directory != self.failed:
                self._enqueue(directory)
        if self._queued:
            logger.info("recordings: %d left by an earlier run, storing them", len(self._queued))
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._flush_loop(), name="recordings-flush"),
            loop.create_task(self._upload_loop(), name="recordings-upload"),
        ]
        self.state = RecordingServiceState.RUNNING

    async def stop(self, upload_timeout: float = 10.0) -> None:
        """Store what has ended (a pod being removed may never start again here), for at
        most ``upload_timeout`` seconds; flush what is in progress. What is left stays on
        disk for the next start."""
        if self.state is RecordingServiceState.RUNNING and self._store is not None:
            try:
                await asyncio.wait_for(self._jobs.join(), upload_timeout)
            except TimeoutError:
                logger.warning(
                    "recordings: %d not stored before stopping; kept in %s for the next start",
                    len(self._queued),
                    self.root,
                )
        for recording in self._active:
            recording.flush()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        self.state = RecordingServiceState.STOPPED

    def begin(self, meta: RecordingMeta, clock: Callable[[], float] = time.monotonic) -> Recording:
        recording = Recording(self.root / _directory_name(meta), meta, clock)
        self._active.add(recording)
        return recording

    def finish(self, recording: Recording, *, length_samples: int | None = None) -> None:
        """The recording ended: write the rest and queue it for storing."""
        recording.close(length_samples=length_samples)
        self._active.discard(recording)
        self._enqueue(recording.directory)

    def discard(self, recording: Recording) -> None:
        """Drop a recording nobody wants (a voice message of no length)."""
        recording.close()
        self._active.discard(recording)
        _remove(recording.directory)

    def _enqueue(self, directory: Path) -> None:
        if directory not in self._queued:
            self._queued.add(directory)
            self._jobs.put_nowait(directory)

    async def wait_idle(self) -> None:
        """Until every finished recording is stored (tests, drain)."""
        await self._jobs.join()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL_S)
            for recording in list(self._active):
                try:
                    recording.flush()
                except OSError as exc:
                    logger.error("call=%s recording not flushed: %s", recording.meta.call_id, exc)

    async def _upload_loop(self) -> None:
        delay = _RETRY_MIN_S
        while True:
            directory = await self._jobs.get()
            try:
                while True:
                    try:
                        await self._store_one(directory)
                        delay = _RETRY_MIN_S
                        break
                    except (StorageError, RedisError) as exc:
                        # Storing and announcing again is harmless: same key, and event
                        # consumers deduplicate.
                        logger.warning(
                            "recording %s not stored (%s); retrying in %.0f s",
                            directory.name,
                            exc,
                            delay,
                        )
                        await asyncio.sleep(delay)
                        delay = min(delay * 2, _RETRY_MAX_S)
            finally:
                self._queued.discard(directory)
                self._jobs.task_done()

    async def _store_one(self, directory: Path) -> None:
        try:
            meta = RecordingMeta.load(directory)
            encoded = await asyncio.to_thread(
                encode_recording, directory, meta, directory / _ENCODED_NAME
            )
        except (OSError, ValueError) as exc:
            logger.error("recording %s cannot be encoded (%s); moved aside", directory.name, exc)
            self.failed.mkdir(parents=True, exist_ok=True)
            shutil.move(directory, self.failed / directory.name)
            return
        if self._store is None:
            raise StorageError("no object store is configured (VPBX_STORAGE_URL)")
        await self._store.put_file(meta.key, encoded.path, RECORDING_CONTENT_TYPE)
        if not meta.complete:
            logger.warning(
                "call=%s recording stored as far as it was flushed (the node stopped)",
                meta.call_id,
            )
        await self._announce(meta, encoded)
        _remove(directory)

    async def _announce(self, meta: RecordingMeta, encoded: EncodedAudio) -> None:
        try:
            base = CallEvent.from_json(meta.extra.get("event", ""))
        except CallEventError as exc:
            logger.error("call=%s recording stored but not announced: %s", meta.call_id, exc)
            return
        event_type = (
            CallEventType.VOICEMAIL_NEW
            if meta.kind is RecordingKind.VOICEMAIL
            else CallEventType.RECORDING_READY
        )
        event = dataclasses.replace(
            base,
            type=event_type,
            at_ms=now_ms(),
            key=meta.key,
            duration_ms=encoded.duration_ms,
            size_bytes=encoded.size_bytes,
        )
        await self._publish(event)


def _remove(directory: Path) -> None:
    """Remove a spool directory that is done with; one left behind is stored again (the
    same key, and consumers deduplicate), so a failure is worth a warning, not more."""
    try:
        shutil.rmtree(directory)
    except OSError as exc:
        logger.warning("recording spool %s not removed: %s", directory, exc)
