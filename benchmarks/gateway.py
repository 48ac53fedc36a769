"""Start ``mailgate`` as an operator does: a child process with a home of
its own, on free ports of 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

DOMAIN = "support.example.org"
QUEUE_ADDRESS = f"support@{DOMAIN}"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def gateway_environment(home: Path, **settings: str) -> dict[str, str]:
    return {
        **os.environ,
        "MAILGATE_HOME": str(home),
        "MAILGATE_DOMAIN": DOMAIN,
        # The default of 10 per address would reject most of 32 local clients.
        "MAILGATE_MAX_CONNECTIONS_PER_IP": "64",
        "MAILGATE_SWEEP_INTERVAL_SECONDS": "1",
        **settings,
    }


def run_cli(home: Path, *args: str, **settings: str) -> None:
    """Run one ``mailgate`` command; raise CalledProcessError with its output."""
    subprocess.run(
        [sys.executable, "-m", "mailgate", *args],
        env=gateway_environment(home, **settings), check=True,
        capture_output=True, timeout=120,
    )


def prepare_home(home: Path, **settings: str) -> None:
    """Create the database with one queue and one agent, as the README does.

    Homes of the embedded default (no ``settings``) are copies of one made
    beside them with the CLI, which saves two CLI starts per case.
    """
    if not settings:
        template = home.parent / ".template-home"
        if not template.exists():
            _prepare_home_with_cli(template)
        shutil.copytree(template, home)
        return
    _prepare_home_with_cli(home, **settings)


def _prepare_home_with_cli(home: Path, **settings: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    run_cli(home, "queues", "add", "Support", "--address", QUEUE_ADDRESS, "--exist-ok", **settings)
    run_cli(
        home, "users", "add", "agent", "--email", "agent@example.org",
        "--queue", "Support", "--exist-ok", **settings,
    )


class Gateway:
    """``mailgate serve`` (or, with ``command="worker"``, ``mailgate worker``)
    as a child process; its log lines are kept."""

    def __init__(self, home: Path, *args: str, command: str = "serve", **settings: str) -> None:
        self.smtp_port = free_port()
        self.http_port = free_port()
        self.lines: list[str] = []
        self._ready = threading.Event()
        ports = ["--http-port", str(self.http_port)]
        if command == "serve":
            ports += ["--smtp-port", str(self.smtp_port)]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailgate", command, *ports, *args],
            env=gateway_environment(home, **settings),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if len(self.lines) < 10_000:
                self.lines.append(line)
            if "mailgate ready" in line:
                self._ready.set()

    def wait_ready(self, timeout: float = 60.0) -> None:
        if not self._ready.wait(timeout):
            self.stop()
            tail = "\n".join(self.lines[-30:])
            raise TimeoutError(f"mailgate serve not ready within {timeout:.0f}s:\n{tail}")

    def stop(self) -> None:
        """Stop with SIGTERM as an operator does; kill after 60 seconds."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
        self._reader.join(10)

    def __enter__(self) -> Gateway:
        self.wait_ready()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def count_rows(home: Path, query: str, database_url: str | None = None) -> int:
    """Run a counting query on the gateway's database: its SQLite file under
    ``home``, read-only, or ``database_url`` (PostgreSQL) when given."""
    if database_url:
        import psycopg

        with psycopg.connect(database_url, autocommit=True, connect_timeout=10) as connection:
            return connection.execute(query).fetchone()[0]
    database = home / "mailgate.db"
    with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=30) as connection:
        return connection.execute(query).fetchone()[0]


def wait_for_count(
    home: Path, query: str, expected: int, timeout: float, database_url: str | None = None
) -> float:
    """Poll until ``query`` counts ``expected`` rows; return time.time() then.

    Raises TimeoutError with the last count when it is not reached in time.
    """
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count = count_rows(home, query, database_url)
        if count >= expected:
            return time.time()
        time.sleep(0.05)
    raise TimeoutError(f"{count} of {expected} rows after {timeout:.0f}s: {query}")


def peak_rss_bytes(pid: int) -> tuple[int, int]:
    """Return (current, peak) resident memory of a process from /proc, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) * 1024
    return values["VmRSS"], values["VmHWM"]


def descendants(pid: int) -> list[int]:
    """Return the ids of every process below ``pid``, read from /proc."""
    found: list[int] = []
    pending = [pid]
    while pending and len(found) < 1000:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            for child in children:
                found.append(int(child))
                pending.append(int(child))
    return found
