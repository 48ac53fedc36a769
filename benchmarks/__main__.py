"""Run the gateway benchmarks: ``python -m benchmarks [--quick]``.

Every case starts its own ``mailgate serve`` child process on free ports of
127.0.0.1 with a fresh MAILGATE_HOME and drives it from client processes
over SMTP. Figures are ratios against a bare aiosmtpd server measured in the
same run, because absolute times drift on a shared machine.
``benchmarks/rules.py`` is a separate benchmark of routing rules.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import cases
from benchmarks.cases import Figure


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true",
        help="small counts (about 40 seconds), to check that every figure is produced",
    )
    parser.add_argument(
        "--only", action="append", choices=["accept", "end-to-end", "outbound", "memory"],
        help="run only these cases (repeatable); the ceiling always runs",
    )
    parser.add_argument(
        "--redis-url", default=cases.DEFAULT_REDIS_URL,
        help="Redis for the durable accept case, which uses a key prefix of its own "
        "and deletes its keys afterwards  [default: %(default)s]",
    )
    return parser.parse_args(argv)


def plan(quick: bool) -> dict[str, object]:
    """Return the mail counts and connection counts of a run."""
    if quick:
        return {
            "ceiling": 60, "accept": 60, "end_to_end": 20, "outbound": 20,
            "connections": [1, 8], "accept_connections": [8], "memory_bytes": 2_000_000,
        }
    return {
        "ceiling": 3000, "accept": 3000, "end_to_end": 600, "outbound": 1000,
        "connections": [1, 8, 32], "accept_connections": [8, 32],
        "memory_bytes": 25_000_000,
    }


def format_figure(figure: Figure, ceilings: dict[tuple[str, int | None], float]) -> str:
    """Return one figure line: case, connections, what, count, time, value, ratio."""
    if figure.ratio_base is not None:
        base, base_name = figure.ratio_base, figure.metric
    else:
        base = ceilings.get((figure.metric, figure.connections), float("nan"))
        base_name = f"ceiling {figure.metric}"
    ratio = figure.rate / base if base else float("nan")
    connections = f"{figure.connections:>2} conn" if figure.connections else "       "
    detail = f" ({figure.detail.lstrip(', ')})" if figure.detail else ""
    return (
        f"{figure.case:<23} {connections}  count {figure.count:>5}  time {figure.seconds:7.2f} s"
        f"  {figure.rate:9.1f} {figure.unit:<7}  ratio {ratio:5.2f} of {base_name}"
        f"  | {figure.what}{detail}"
    )


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    counts = plan(arguments.quick)
    only = set(arguments.only or ["accept", "end-to-end", "outbound", "memory"])
    load = os.getloadavg()
    print(
        f"mailgate benchmarks{' --quick' if arguments.quick else ''}: {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    ceilings: dict[tuple[str, int | None], float] = {}

    def report(figures: list[Figure]) -> None:
        for figure in figures:
            if figure.case.startswith("ceiling"):
                ceilings[(figure.metric, figure.connections)] = figure.rate
            print(format_figure(figure, ceilings), flush=True)

    connection_counts = sorted({*counts["connections"], *counts["accept_connections"], 4})
    for connections in connection_counts:
        report(cases.ceiling(counts["ceiling"], connections))
    with tempfile.TemporaryDirectory(prefix="mailgate-bench-") as directory:
        work = Path(directory)
        if "accept" in only:
            for connections in counts["accept_connections"]:
                report(cases.durable_accept(work, counts["accept"], connections, arguments.redis_url))
        if "end-to-end" in only:
            for connections in counts["connections"]:
                report([cases.end_to_end(work, counts["end_to_end"], connections)])
        if "outbound" in only:
            report([cases.outbound(work, counts["outbound"])])
        if "memory" in only:
            report(cases.memory(work, counts["memory_bytes"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
