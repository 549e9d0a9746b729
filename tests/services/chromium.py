"""Debian's Chromium driven by Playwright for the workspace's browser tests: the launch
(no browser download; headless, fake media devices when asked), the login, and screenshots
kept as test artifacts."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, sync_playwright

CHROMIUM = Path("/usr/bin/chromium")
# Headless in a sandboxed root session on a closed network: no GPU, no sandbox, and none of
# Chromium's own background traffic (refused here, and slow to fail).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
# A microphone and a speaker without hardware or a permission prompt.
FAKE_MEDIA_ARGS = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--autoplay-policy=no-user-gesture-required",
]


@contextmanager
def chromium(extra_args: Sequence[str] = ()) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests drive Debian's Chromium "
            "(apt-get install chromium; scripts/install-deps.sh installs it)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=[*CHROMIUM_ARGS, *extra_args]
        )
        try:
            yield launched
        finally:
            launched.close()


def watch_console(tab: Page) -> list[str]:
    """The page's errors from now on: a refused script, style or connection (CSP) or an
    error of the app; a failed request the app handles (a 422 it shows) is not one."""
    problems: list[str] = []

    def console(message: ConsoleMessage) -> None:
        if message.type == "error" and "Failed to load resource" not in message.text:
            problems.append(message.text)

    tab.on("console", console)
    tab.on("pageerror", lambda error: problems.append(str(error)))
    return problems


def log_in(tab: Page, email: str, password: str) -> None:
    tab.goto("/")
    tab.wait_for_url("**/login")
    tab.get_by_label("E-mail").fill(email)
    tab.get_by_label("Password").fill(password)
    tab.get_by_role("button", name="Log in").click()
    tab.wait_for_url("**/contacts")


def artifact(tab: Page, tmp_path: Path, name: str) -> Path:
    """A screenshot of the page, under the test's tmp dir and $VPBX_TEST_ARTIFACTS."""
    path = tmp_path / name
    tab.screenshot(path=str(path), full_page=True)
    target = os.environ.get("VPBX_TEST_ARTIFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(target) / name)
    return path
