"""Start ``mailgate`` as an operator does: a child process with a home of
its own, on free ports of 127.0.0.1."""

from __future__ import annotations

import json
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


# Runs the ``mailgate`` commands given as a JSON list of argument lists
# through the CLI's entry point, one after another in this one interpreter,
# and exits with the status of the first that fails.
_CLI_SCRIPT = """
import json, sys
from mailgate.cli import main
for arguments in json.loads(sys.argv[1]):
    status = main(arguments)
    if status:
        sys.exit(status)
"""


def run_cli(home: Path, *commands: list[str], **settings: str) -> None:
    """Run ``mailgate`` commands, each a list of arguments, in one process:
    one interpreter start, however many commands.

    Raises CalledProcessError, with the output, when one of them fails.
    """
    subprocess.run(
        [sys.executable, "-c", _CLI_SCRIPT, json.dumps(commands)],
        env=gateway_environment(home, **settings), check=True,
        capture_output=True, timeout=120,
    )


def prepare_home(home: Path, **settings: str) -> None:
    """Create the database with one queue and one agent, as the README does.

    Homes on SQLite (``settings`` without MAILGATE_DATABASE_URL) are copies
    of one made beside them with the CLI by ``prepare_template``. The copy
    does not depend on the broker, so homes of the Redis cases are copies
    too.
    """
    if "MAILGATE_DATABASE_URL" in settings:
        _prepare_home_with_cli(home, **settings)
        return
    shutil.copytree(prepare_template(home.parent), home)


def prepare_template(directory: Path) -> Path:
    """Make the home ``directory/.template-home`` with the CLI unless it
    exists, and return its path."""
    template = directory / ".template-home"
    if not template.exists():
        # Made under another name and renamed, so that a failed CLI run
        # leaves no half-made template behind.
        partial = directory / ".template-home.partial"
        shutil.rmtree(partial, ignore_errors=True)
        _prepare_home_with_cli(partial)
        partial.rename(template)
    return template


def _prepare_home_with_cli(home: Path, **settings: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    run_cli(
        home,
        ["queues", "add", "Support", "--address", QUEUE_ADDRESS, "--exist-ok"],
        ["users", "add", "agent", "--email", "agent@example.org", "--queue", "Support", "--exist-ok"],
        **settings,
    )


class Gateway:
    """``mailgate serve`` (or, with ``command="worker"``, ``mailgate worker``)
    as a child process; its log lines are kept.

    The process starts when the object is made; ``wait_ready`` (or entering
    it as a context manager) waits until it accepts mail, so several
    gateways can start side by side.

    NOTE: the gateway runs on when the benchmark is killed with SIGKILL,
    because only the benchmark stops it. SIGTERM and SIGINT stop it, and
    so does a signal to the benchmark's whole process group.
    """

    def __init__(self, home: Path, *args: str, command: str = "serve", **settings: str) -> None:
        self.home = home
        self.command = command
        self.smtp_port = free_port()
        self.http_port = free_port()
        self.lines: list[str] = []
        self.ready_at: float | None = None  # time.monotonic() of the ready line
        self._ready_or_ended = threading.Event()
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
            if self.ready_at is None and "mailgate ready" in line:
                self.ready_at = time.monotonic()
                self._ready_or_ended.set()
        self._ready_or_ended.set()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Return once the gateway accepts mail, at once if it already does.

        Raises TimeoutError, with the end of its log, when it exits first or
        is not ready within ``timeout`` seconds.
        """
        self._ready_or_ended.wait(timeout)
        if self.ready_at is None:
            self.stop()
            tail = "\n".join(self.lines[-30:])
            raise TimeoutError(
                f"mailgate {self.command} not ready within {timeout:.0f}s "
                f"(exit code {self.process.returncode}):\n{tail}"
            )

    def terminate(self) -> None:
        """Send SIGTERM, as an operator does, without waiting for the exit."""
        if self.process.poll() is None:
            self.process.terminate()

    def stop(self) -> None:
        """Stop with SIGTERM as an operator does; kill after 60 seconds."""
        self.terminate()
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
