"""The benchmark's quick run produces every figure; it asserts no speed."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

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


def test_quick_benchmark_prints_figures(redis_url: str, tmp_path: Path) -> None:
    # The peer case runs in --quick only when its environment exists, which
    # depends on the machine; an absent path keeps this run the same everywhere.
    environment = {**os.environ, "MAILGATE_BENCH_PEER_VENV": str(tmp_path / "absent")}
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--redis-url", redis_url],
        cwd=ROOT, capture_output=True, text=True, timeout=600, env=environment,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    figures = [FIGURE_LINE.match(line) for line in result.stdout.splitlines()]
    printed = {match["case"] for match in figures if match}
    expected = set(CASES)
    if list(SHARED.glob("corpus/*/*.eml")):
        expected.add("end-to-end-corpus")
    for case in sorted(expected):
        assert case in printed, result.stdout
    for match in filter(None, figures):
        assert int(match["count"]) > 0, match.string
        assert float(match["ratio"]) > 0, match.string
