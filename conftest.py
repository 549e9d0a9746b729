"""Root conftest: every module under tests/services is a pytest plugin providing real services."""

from pathlib import Path

pytest_plugins = sorted(
    f"tests.services.{path.stem}"
    for path in (Path(__file__).parent / "tests" / "services").glob("*.py")
    # ports.py and toolbuild.py hold helpers only, and the plugins import them before pytest
    # could rewrite them.
    if path.stem not in {"__init__", "ports", "toolbuild"}
)
