"""Run ``mailgate serve`` as a separate process, as an operator does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class MailgateProcess:
    """A ``mailgate`` child process whose log lines are collected."""

    def __init__(self, args: list[str], home: Path, **env: str) -> None:
        environment = {
            **os.environ,
            "MAILGATE_HOME": str(home),
            "MAILGATE_DOMAIN": "support.example.org",
            "MAILGATE_SWEEP_INTERVAL_SECONDS": "1",
            **env,
        }
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailgate", *args],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=environment,
        )
        self.lines: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.process.pid

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            self.lines.append(line)
            if "mailgate ready" in line:
                self._ready.set()

    def wait_ready(self, timeout: float = 60.0) -> None:
        if not self._ready.wait(timeout):
            self.process.kill()
            raise TimeoutError("mailgate not ready:\n" + "\n".join(self.lines[-30:]))

    def log_text(self) -> str:
        """Return every line logged so far, once the process has exited."""
        if self.process.poll() is not None:
            self._reader.join(10)
        return "\n".join(self.lines)

    def stop(self, timeout: float = 60.0) -> int:
        self.process.terminate()
        return self.process.wait(timeout)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(30)


class ServeProcess(MailgateProcess):
    """``mailgate serve`` on the given SMTP port, with ``args`` after it."""

    def __init__(
        self, home: Path, port: int, http_port: int | None = None,
        args: tuple[str, ...] = (), **env: str,
    ) -> None:
        self.http_port = http_port or free_port()
        super().__init__(
            ["serve", "--smtp-port", str(port), "--http-port", str(self.http_port), *args],
            home, **env,
        )


def wait_for(condition, timeout: float = 120.0, interval: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise TimeoutError(f"condition not met within {timeout}s")


def descendants(pid: int) -> list[int]:
    """Return the ids of every process below ``pid``, read from /proc."""
    found: list[int] = []
    pending = [pid]
    while pending:
        parent = pending.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                children = [int(child) for child in (task / "children").read_text().split()]
            except OSError:
                continue
            found.extend(children)
            pending.extend(children)
    return found


def still_running(pids: list[int], timeout: float) -> list[int]:
    """Poll until none of ``pids`` runs; return those still running after
    ``timeout`` seconds. A zombie counts as ended."""
    deadline = time.monotonic() + timeout
    while True:
        running = [pid for pid in pids if _is_running(pid)]
        if not running or time.monotonic() >= deadline:
            return running
        time.sleep(0.05)


def _is_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
