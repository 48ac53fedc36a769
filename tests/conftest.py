"""Shared fixtures: a clean environment, real databases and a real gateway.

Tests that need PostgreSQL or Redis skip when the service is absent on a
developer's machine, but fail when ``CI`` is set, so CI cannot pass by
skipping them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness import Gateway
from tests.process import free_port  # noqa: F401  (re-exported for tests)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
POSTGRES_ADMIN_URL = os.environ.get(
    "MAILGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("MAILGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def service_missing(name: str, reason: str) -> None:
    """Skip, or fail under CI, for a service the test needs."""
    if os.environ.get("CI"):
        pytest.fail(f"{name} is required when CI is set: {reason}")
    pytest.skip(f"{name} not available: {reason}")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Remove every MAILGATE_* variable, so settings come only from the test."""
    for name in list(os.environ):
        if name.startswith("MAILGATE_") and not name.startswith("MAILGATE_TEST_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MAILGATE_HOME", str(tmp_path / "home"))


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session."""
    try:
        import psycopg
    except ImportError as error:
        service_missing("psycopg", str(error))
    name = f"mailgate_test_{uuid.uuid4().hex[:12]}"
    admin = POSTGRES_ADMIN_URL
    try:
        with psycopg.connect(admin, autocommit=True, connect_timeout=5) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as error:
        service_missing("PostgreSQL", str(error))
    base = admin.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def redis_url() -> str:
    try:
        import redis

        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2).ping()
    except Exception as error:  # any failure to reach it means "absent"
        service_missing("Redis", str(error))
    return REDIS_URL


@pytest.fixture
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    """The gateway on SQLite with the in-process broker, on a real socket."""
    with Gateway.start(home=tmp_path / "gateway") as running:
        yield running
