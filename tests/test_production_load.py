"""A small run of scripts/load_production.py: two listeners and four worker
processes on PostgreSQL and Redis, SIGTERM to every process mid-run and a
restart, and every mail on exactly one ticket. The full run sends 5,000
mails; this one sends few enough to stay under a minute on two cores."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

MAILS = 160


def test_load_survives_sigterm_restart(postgres_server: str, redis_url: str) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "load_production.py"),
         "--mails", str(MAILS), "--threads", "2", "--timeout", "240"],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert any(
        line.startswith("SIGTERM to every process") and "exit codes [0, 0, 0]" in line
        for line in lines
    ), result.stdout
    assert f"passed: {MAILS} tickets, no Message-ID on two tickets, no acknowledged mail lost" in lines
