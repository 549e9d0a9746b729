"""Root conftest: the real services tests need are pytest plugins under tests/services."""

pytest_plugins = [
    "tests.services.redis",
]
