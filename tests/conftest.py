"""Shared fixtures: a clean environment, real databases and a real gateway.

Tests that need PostgreSQL or Redis skip when the service is absent on a
developer's machine, but fail when ``CI`` is set, so CI cannot pass by
skipping them.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness import (
    POSTGRES_ADMIN_URL,
    REDIS_URL,
    Gateway,
    as_environment,
    backend_settings,
)
from tests.process import free_port  # noqa: F401  (re-exported for tests)

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@dataclass(frozen=True)
class Backend:
    """A database and a Dramatiq broker to run the gateway on."""

    database: str  # "sqlite" or "postgresql"
    broker: str  # "stub" (in-process) or "redis"

    @property
    def name(self) -> str:
        return self.database if self.broker == "stub" else f"{self.database}-{self.broker}"


# The embedded default and the production shape. The mixed pairs run in
# test_backends.py.
BACKENDS = (Backend("sqlite", "stub"), Backend("postgresql", "redis"))


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


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """The admin URL of a PostgreSQL server that answers."""
    try:
        import psycopg

        with psycopg.connect(POSTGRES_ADMIN_URL, connect_timeout=5):
            pass
    except Exception as error:  # any failure to reach it means "absent"
        service_missing("PostgreSQL", str(error))
    return POSTGRES_ADMIN_URL


@pytest.fixture(params=BACKENDS, ids=[backend.name for backend in BACKENDS])
def backend(request: pytest.FixtureRequest) -> Backend:
    """Each backend in turn; skips (fails under CI) when its services are absent."""
    chosen: Backend = request.param
    if chosen.database == "postgresql":
        request.getfixturevalue("postgres_server")
    if chosen.broker == "redis":
        request.getfixturevalue("redis_url")
    return chosen


@pytest.fixture
def backend_env(
    backend: Backend, clean_environment: None, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Set MAILGATE_* variables for a fresh database and broker namespace of
    ``backend``, for tests that run mailgate as a child process."""
    with backend_settings(backend.database, backend.broker) as settings:
        environment = as_environment(settings)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        yield environment


@pytest.fixture
def gateway(tmp_path: Path, backend: Backend) -> Iterator[Gateway]:
    """The gateway on each backend, on a real socket."""
    with Gateway.start(
        home=tmp_path / "gateway", database=backend.database, broker=backend.broker
    ) as running:
        yield running
