"""/healthz follows PostgreSQL and Redis going away and coming back.

The test runs its own PostgreSQL and Redis servers on free ports, so that
it can stop and start them without disturbing anything else.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from store import migrate
from store.db import make_engine
from tests.conftest import service_missing
from tests.process import ServeProcess, free_port

# An outage must show as unready within this time, and the return as ready.
UNREADY_WITHIN_SECONDS = 5.0
READY_AGAIN_WITHIN_SECONDS = 15.0


def postgres_binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


class OwnPostgres:
    """A throwaway PostgreSQL server in a temporary directory."""

    def __init__(self) -> None:
        self.initdb, self.pg_ctl = postgres_binary("initdb"), postgres_binary("pg_ctl")
        if not self.initdb or not self.pg_ctl:
            service_missing("PostgreSQL server programs", "initdb and pg_ctl not found")
        self.port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="mailgate-health-pg-"))
        # PostgreSQL refuses to run as root, so root runs it as postgres.
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.directory, "postgres")
        self._run(self.initdb, "-D", str(self.directory / "data"), "-U", "postgres",
                  "--auth=trust", "--no-sync", "-E", "UTF8")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        result = subprocess.run([*self.as_user, *args], capture_output=True, timeout=120)
        assert result.returncode == 0, result.stderr.decode(errors="replace")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        )
        self._run(self.pg_ctl, "-D", str(self.directory / "data"), "-o", options,
                  "-l", str(self.directory / "server.log"), "-w", "start")

    def stop(self) -> None:
        self._run(self.pg_ctl, "-D", str(self.directory / "data"), "-m", "fast", "-w", "stop")

    def remove(self) -> None:
        subprocess.run(
            [*self.as_user, self.pg_ctl, "-D", str(self.directory / "data"), "-m",
             "immediate", "stop"], capture_output=True, timeout=60,
        )
        shutil.rmtree(self.directory, ignore_errors=True)


class OwnRedis:
    """A throwaway Redis server without persistence."""

    def __init__(self) -> None:
        if not shutil.which("redis-server"):
            service_missing("redis-server", "not on PATH")
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                import redis

                redis.Redis(port=self.port, socket_connect_timeout=1).ping()
                return
            except Exception:
                time.sleep(0.1)
        raise TimeoutError(f"redis-server on port {self.port} did not start")

    def stop(self) -> None:
        assert self.process is not None
        self.process.terminate()
        self.process.wait(30)


@pytest.fixture
def servers() -> Iterator[tuple[OwnPostgres, OwnRedis]]:
    postgres, redis_server = OwnPostgres(), OwnRedis()
    try:
        postgres.start()
        redis_server.start()
        engine = make_engine(postgres.url)
        migrate.upgrade(engine)
        engine.dispose()
        yield postgres, redis_server
    finally:
        postgres.remove()
        if redis_server.process is not None and redis_server.process.poll() is None:
            redis_server.stop()


def wait_for_health(port: int, expected_status: int, timeout: float) -> tuple[float, dict]:
    """Poll /healthz until it returns ``expected_status``; return the seconds
    it took and the last body."""
    started = time.monotonic()
    body: dict = {}
    while time.monotonic() - started < timeout:
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
            body = response.json()
            if response.status_code == expected_status:
                return time.monotonic() - started, body
        except httpx.HTTPError as error:
            body = {"error": str(error)}
        time.sleep(0.2)
    raise AssertionError(f"/healthz not {expected_status} within {timeout}s: {body}")


def test_health_follows_database_and_broker(
    servers: tuple[OwnPostgres, OwnRedis], tmp_path: Path
) -> None:
    postgres, redis_server = servers
    server = ServeProcess(
        tmp_path / "home", free_port(),
        MAILGATE_DATABASE_URL=postgres.url, MAILGATE_REDIS_URL=redis_server.url,
        MAILGATE_SHUTDOWN_GRACE_SECONDS="5",
    )
    server.wait_ready()
    port = server.http_port
    _, body = wait_for_health(port, 200, READY_AGAIN_WITHIN_SECONDS)
    assert body == {"status": "ok", "database": "ok", "broker": "ok"}

    redis_server.stop()
    _, body = wait_for_health(port, 503, UNREADY_WITHIN_SECONDS)
    assert body == {"status": "unavailable", "database": "ok", "broker": "unavailable"}
    redis_server.start()
    wait_for_health(port, 200, READY_AGAIN_WITHIN_SECONDS)

    postgres.stop()
    _, body = wait_for_health(port, 503, UNREADY_WITHIN_SECONDS)
    assert body == {"status": "unavailable", "database": "unavailable", "broker": "ok"}
    postgres.start()
    _, body = wait_for_health(port, 200, READY_AGAIN_WITHIN_SECONDS)
    assert body == {"status": "ok", "database": "ok", "broker": "ok"}
    assert server.stop() == 0
