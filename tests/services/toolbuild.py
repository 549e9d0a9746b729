"""Tools the tests build from source (kube-apiserver, SeaweedFS): one way to run their
build scripts, and to run them once after collection, outside any test's timeout."""

from __future__ import annotations

import logging
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)

BUILD_TIMEOUT_SECONDS = 40 * 60


class ToolBuildError(RuntimeError):
    """A build script failed, timed out or printed no directory."""


def run_build_script(script: Path, what: str, *, echo: bool = True) -> Path:
    """Run ``script`` (a no-op when its tools are cached); the bin directory it prints."""
    started = time.monotonic()
    try:
        completed = subprocess.run(
            ["bash", str(script)],
            stdout=subprocess.PIPE,
            stderr=None if echo else subprocess.PIPE,
            text=True,
            timeout=BUILD_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as error:
        raise ToolBuildError(f"{script} did not finish in {BUILD_TIMEOUT_SECONDS}s") from error
    if completed.returncode != 0:
        raise ToolBuildError(
            f"{script} failed with exit code {completed.returncode}: {completed.stderr or ''}"
        )
    lines = completed.stdout.strip().splitlines()
    if not lines:
        raise ToolBuildError(f"{script} printed no directory")
    directory = Path(lines[-1])
    logger.info("%s in %s after %.1fs", what, directory, time.monotonic() - started)
    return directory


@dataclass(frozen=True)
class BuildBeforeTests:
    """Builds a tool after collection when a selected test uses ``fixture``; the fixture
    then takes the directory from ``directory(config)``, or fails with the build's error."""

    fixture: str
    announcement: str
    build: Callable[[], Path]
    _directory: pytest.StashKey[Path] = field(default_factory=pytest.StashKey[Path])
    _error: pytest.StashKey[str] = field(default_factory=pytest.StashKey[str])

    def collection_finished(self, session: pytest.Session) -> None:
        config = session.config
        if config.option.collectonly:
            return
        if not any(self.fixture in getattr(item, "fixturenames", ()) for item in session.items):
            return
        capture = config.pluginmanager.get_plugin("capturemanager")
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(self.announcement)
        try:
            if capture is None:
                config.stash[self._directory] = self.build()
            else:
                with capture.global_and_fixture_disabled():
                    config.stash[self._directory] = self.build()
        except (ToolBuildError, OSError) as error:
            # Fail the tests that need the tool, not the whole session.
            config.stash[self._error] = str(error)

    def directory(self, config: pytest.Config) -> Path:
        error = config.stash.get(self._error, None)
        if error is not None:
            pytest.fail(f"cannot build the tool for {self.fixture}: {error}")
        return config.stash.get(self._directory, None) or self.build()
