"""The benchmark's quick run produces every figure and leaves no process
running. The tests assert no speed."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import SHARED

ROOT = Path(__file__).resolve().parent.parent

# case, connections (optional), count, time, value with unit, ratio
FIGURE_LINE = re.compile(
    r"^(?P<case>[a-z-]+)\s+(?:\d+ conn\s+)?count\s+(?P<count>\d+)\s+time\s+[\d.]+ s"
    r"\s+(?P<value>[\d.]+) \S+\s+ratio\s+(?P<ratio>[\d.]+) of "
)

CASES = (
    "ceiling", "ceiling-latency", "durable-accept", "durable-accept-latency",
    "end-to-end", "end-to-end-html", "sustained-accepted", "sustained-processed",
    "reply-to-note", "outbound", "memory", "memory-parser",
)

# The run must end before pytest-timeout (300 s in pyproject.toml) stops
# the test, because the test can then no longer stop the run's processes.
RUN_TIMEOUT_SECONDS = 200
# How long a run that timed out gets to stop its gateways after SIGTERM.
STOP_GRACE_SECONDS = 30
# How long the processes of a finished run get to exit. The forkservers of
# the benchmark and of each gateway exit only after their parent.
EXIT_WAIT_SECONDS = 10


@dataclass
class QuickRun:
    returncode: int
    stdout: str
    stderr: str
    left_running: list[str]  # "pid command" of processes that outlived the run


@pytest.fixture(scope="module")
def quick_run(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    """Run ``python -m benchmarks --quick`` in a session of its own, so that
    every process it starts, at any depth, can be found and stopped."""
    directory = tmp_path_factory.mktemp("quick-run")
    environment = {
        name: value for name, value in os.environ.items()
        if not name.startswith("MAILGATE_") or name.startswith("MAILGATE_TEST_")
    }
    # The peer case runs in --quick only when its environment exists, which
    # depends on the machine; an absent path keeps this run the same everywhere.
    environment["MAILGATE_BENCH_PEER_VENV"] = str(directory / "absent")
    # Files, not pipes: a process left running would hold a pipe open and
    # keep the test waiting for its end.
    stdout_path, stderr_path = directory / "stdout", directory / "stderr"
    with stdout_path.open("w") as stdout, stderr_path.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks", "--quick", "--redis-url", redis_url],
            cwd=ROOT, stdout=stdout, stderr=stderr, env=environment, start_new_session=True,
        )
    try:
        process.wait(RUN_TIMEOUT_SECONDS)
    except BaseException:
        _stop_session(process)
        raise
    left_running = _wait_for_session_exit(process.pid, EXIT_WAIT_SECONDS)
    if left_running:
        _signal_group(process.pid, signal.SIGKILL)
    return QuickRun(process.returncode, stdout_path.read_text(), stderr_path.read_text(), left_running)


def test_quick_run_prints_every_figure(quick_run: QuickRun) -> None:
    assert quick_run.returncode == 0, quick_run.stderr[-3000:]
    figures = [FIGURE_LINE.match(line) for line in quick_run.stdout.splitlines()]
    printed = {match["case"] for match in figures if match}
    expected = set(CASES)
    if list(SHARED.glob("corpus/*/*.eml")):
        expected.add("end-to-end-corpus")
    for case in sorted(expected):
        assert case in printed, quick_run.stdout
    for match in filter(None, figures):
        assert int(match["count"]) > 0, match.string
        assert float(match["ratio"]) > 0, match.string


def test_quick_run_leaves_no_process(quick_run: QuickRun) -> None:
    # Gateways, their parser processes, load clients and SMTP sinks are all
    # in the run's session; none may outlive the run.
    assert quick_run.left_running == [], quick_run.stderr[-3000:]


def _stop_session(process: subprocess.Popen) -> None:
    """Stop a run as a CI runner does: SIGTERM to all of its processes,
    then SIGKILL to whatever is left after STOP_GRACE_SECONDS."""
    _signal_group(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    if _wait_for_session_exit(process.pid, STOP_GRACE_SECONDS):
        _signal_group(process.pid, signal.SIGKILL)
    process.wait()


def _signal_group(group_id: int, signum: int) -> None:
    try:
        os.killpg(group_id, signum)
    except ProcessLookupError:
        pass


def _wait_for_session_exit(session_id: int, timeout: float) -> list[str]:
    """Poll until no process of the session is running; return the ones
    still running after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    running = _session_processes(session_id)
    while running and time.monotonic() < deadline:
        time.sleep(0.1)
        running = _session_processes(session_id)
    return running


def _session_processes(session_id: int) -> list[str]:
    """Return "pid command" of each process of the session, zombies left out."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        # The fields after the command name in parentheses: state, parent
        # id, process group id, session id (proc(5)).
        state, _, _, session = stat.rsplit(")", 1)[1].split()[:4]
        if state != "Z" and int(session) == session_id:
            arguments = command.replace(b"\0", b" ").decode(errors="replace").strip()
            found.append(f"{entry.name} {arguments}")
    return found
