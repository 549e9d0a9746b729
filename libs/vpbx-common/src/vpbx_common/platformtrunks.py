"""The platform's trunks: the operator's carriers, which every tenant may call out through.

They are Trunk manifests (vpbx_common.manifests.Trunk), read from a YAML file:
``VPBX_PLATFORM_TRUNKS_FILE`` (in a cluster, the Helm chart mounts it from a
Secret), else in local mode the platform file ``vpbx up`` seeds from
(``VPBX_SEED_FILE``, e.g. examples/demo.yaml), whose Trunk documents are the
platform's trunks. Other kinds in the file are ignored here.

Two readers: the control API (they go into every tenant's node config) and the
operator (their networks go into the edge routing table: calls to numbers are
taken only from carriers, vpbx_common.carriers).

The file is read at start (a broken one stops the reader from starting) and read
again when it changes (a Secret updated in place): the nodes get the new trunks
with their next config, within the node-config cache's lifetime. A file that
breaks later keeps the trunks read last, loudly.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from vpbx_common.manifests import ManifestError, Trunk, load_platform_file

logger = logging.getLogger(__name__)


class PlatformTrunksError(RuntimeError):
    """The platform trunks file cannot be used (unreadable, invalid, a name twice)."""


def _load(path: Path) -> list[Trunk]:
    try:
        trunks = load_platform_file(path).trunks
    except ManifestError as exc:
        raise PlatformTrunksError(f"platform trunks: {exc}") from exc
    twice = sorted(name for name, count in Counter(t.name for t in trunks).items() if count > 1)
    if twice:
        raise PlatformTrunksError(f"{path}: Trunk defined twice: {', '.join(twice)}")
    return trunks


def _signature(path: Path) -> tuple[int, int, int]:
    status = os.stat(path)  # follows the symlinks a mounted Secret is made of
    return status.st_mtime_ns, status.st_size, status.st_ino


class PlatformTrunks:
    """The platform's Trunk manifests, kept current with their file (if any)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._trunks: list[Trunk] = []
        self._signature: tuple[int, int, int] | None = None
        if path is not None:
            try:
                self._signature = _signature(path)
            except OSError as exc:
                raise PlatformTrunksError(f"platform trunks: {path}: cannot read: {exc}") from exc
            self._trunks = _load(path)
            logger.info("%d platform trunks from %s", len(self._trunks), path)

    def current(self) -> Sequence[Trunk]:
        """The trunks, read again first when the file changed since."""
        if self.path is None:
            return self._trunks
        try:
            signature = _signature(self.path)
        except OSError as exc:
            logger.error("platform trunks: %s unreadable, the last read kept: %s", self.path, exc)
            return self._trunks
        if signature != self._signature:
            try:
                self._trunks = _load(self.path)
            except PlatformTrunksError as exc:
                logger.error("%s; the last read kept", exc)
            else:
                logger.info("%d platform trunks read again from %s", len(self._trunks), self.path)
            self._signature = signature
        return self._trunks
