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

from benchmarks import cases, mails, peer, plot
from benchmarks.cases import Figure

CASES = (
    "accept", "end-to-end", "html", "corpus", "production", "sustained", "reply", "outbound",
    "memory", "peer",
)


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true",
        help="small counts, to check that every figure is produced; skips the production "
        "case and, unless its environment exists, the peer case",
    )
    parser.add_argument(
        "--only", action="append", choices=CASES,
        help="run only these cases (repeatable); the ceiling always runs",
    )
    parser.add_argument(
        "--redis-url", default=cases.DEFAULT_REDIS_URL,
        help="Redis for the durable accept and production cases, which use a key prefix "
        "of their own and delete their keys afterwards  [default: %(default)s]",
    )
    parser.add_argument(
        "--postgres-url", default=cases.DEFAULT_POSTGRES_URL,
        help="PostgreSQL admin URL; the production case creates a database of its own "
        "there and drops it afterwards  [default: %(default)s]",
    )
    parser.add_argument(
        "--plot", type=Path, default=None,
        help="write a PNG of end-to-end throughput against connections to this path "
        "(needs matplotlib, the optional extra 'bench')",
    )
    return parser.parse_args(argv)


def plan(quick: bool) -> dict[str, object]:
    """Return the mail counts, connection counts and durations of a run."""
    if quick:
        return {
            "ceiling": 60, "accept": 60, "end_to_end": 20, "html": 8, "corpus": 16,
            "production": 0, "sustained_seconds": 2, "replies": 3, "outbound": 20,
            "peer": 0, "connections": [8], "accept_connections": [8],
            "memory_bytes": 2_000_000,
        }
    return {
        "ceiling": 3000, "accept": 3000, "end_to_end": 600, "html": 300, "corpus": 600,
        "production": 600, "sustained_seconds": 60, "replies": 200, "outbound": 1000,
        "peer": 2000, "connections": [1, 8, 32], "accept_connections": [8, 32],
        "memory_bytes": 25_000_000,
    }


def format_figure(figure: Figure, ceilings: dict[tuple[str, int | None], float]) -> str:
    """Return one figure line: case, connections, what, count, time, value, ratio."""
    if figure.ratio_base is not None:
        base, base_name = figure.ratio_base, figure.ratio_name or figure.metric
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


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or "unknown CPU"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    counts = plan(arguments.quick)
    only = set(arguments.only or CASES)
    load = os.getloadavg()
    print(
        f"mailgate benchmarks{' --quick' if arguments.quick else ''}: "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} cores ({cpu_model()}), "
        f"Python {platform.python_version()}, "
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
    end_to_end: list[Figure] = []
    with tempfile.TemporaryDirectory(prefix="mailgate-bench-") as directory:
        work = Path(directory)
        if "accept" in only:
            for connections in counts["accept_connections"]:
                report(cases.durable_accept(work, counts["accept"], connections, arguments.redis_url))
        for connections in counts["connections"]:
            if "end-to-end" in only:
                end_to_end.append(cases.end_to_end(
                    work, cases.customer_mails(counts["end_to_end"]), connections))
                report(end_to_end[-1:])
            if "html" in only:
                html = [
                    (f"customer{number}@example.com", cases.QUEUE_ADDRESS, mails.html_reply_mail(number))
                    for number in range(counts["html"])
                ]
                end_to_end.append(cases.end_to_end(
                    work, html, connections, "end-to-end-html",
                    "50 KB HTML replies with a quote to trim, to tickets with notifications",
                ))
                report(end_to_end[-1:])
            if "corpus" in only and mails.corpus_files():
                end_to_end.append(cases.end_to_end(
                    work, mails.corpus_set(counts["corpus"]), connections, "end-to-end-corpus",
                    "sample corpus mails, each with a Message-ID of its own, to tickets",
                ))
                report(end_to_end[-1:])
            if "production" in only and counts["production"]:
                end_to_end.append(cases.production_end_to_end(
                    work, counts["production"], connections, arguments.redis_url,
                    arguments.postgres_url,
                ))
                report(end_to_end[-1:])
        if "sustained" in only:
            # Offered at the target rate: a quarter of the ceiling at 32
            # connections (or the largest count measured).
            top = max(counts["connections"])
            rate = 0.25 * ceilings[("rate", top)]
            report(cases.sustained(work, counts["sustained_seconds"], rate, top))
        if "reply" in only:
            report(cases.reply_to_note(work, counts["replies"]))
        if "outbound" in only:
            report([cases.outbound(work, counts["outbound"])])
        if "memory" in only:
            report(cases.memory(work, counts["memory_bytes"]))
        if "peer" in only and mails.corpus_files():
            peer_count = counts["peer"] or counts["corpus"]
            report(peer.peer(
                work / "peer", peer_count, max(counts["connections"]),
                install=not arguments.quick,
            ))
    if arguments.plot is not None:
        print(plot.plot_end_to_end(end_to_end, ceilings, arguments.plot), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
