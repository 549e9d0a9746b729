"""Root conftest: every module under tests/services is a pytest plugin providing real services."""

from pathlib import Path

pytest_plugins = sorted(
    f"tests.services.{path.stem}"
    for path in (Path(__file__).parent / "tests" / "services").glob("*.py")
    # ports.py holds helpers only, and the plugins import it before pytest could rewrite it.
    if path.stem not in {"__init__", "ports"}
)
