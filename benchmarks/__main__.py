"""Run the gateway benchmarks: ``python -m benchmarks [--quick]``.

Every case starts its own ``mailgate serve`` child process on free ports of
127.0.0.1 with a fresh MAILGATE_HOME and drives it from client processes
over SMTP. Figures are ratios against a bare aiosmtpd server measured in the
same run, because absolute times drift on a shared machine.
``--quick`` starts the gateways side by side instead, and runs the
end-to-end, reply and sustained cases on one shared gateway.
``benchmarks/rules.py`` is a separate benchmark of routing rules.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, ContextManager

from benchmarks import cases, mails, peer, plot
from benchmarks.cases import Figure
from benchmarks.gateway import prepare_template

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
            "ceiling": 60, "accept": 60, "end_to_end": 16, "html": 6, "corpus": 12,
            "production": 0, "sustained_seconds": 1, "replies": 3, "outbound": 20,
            "peer": 0, "connections": [4], "accept_connections": [4],
            "memory_bytes": 1_000_000,
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


@dataclass
class Step:
    """One case: the gateway it runs on and what it measures there.

    ``setup`` starts the gateway without waiting for it and yields it. It
    yields None for cases that start their own gateways. ``run`` measures
    on what ``setup`` yielded and returns the figures. Steps with the same
    ``shared`` name run on one gateway in ``--quick``.
    """

    setup: Callable[[], ContextManager[Any]]
    run: Callable[[Any], Figure | list[Figure]]
    shared: str | None = None


def plan_steps(
    arguments: argparse.Namespace, counts: dict[str, Any], work: Path,
    ceilings: dict[tuple[str, int | None], float],
) -> list[Step]:
    """Return the cases chosen by ``--only``, in the order they run."""
    only = set(arguments.only or CASES)
    # In --quick the embedded cases share one gateway: each case counts only
    # the rows it added, and its senders are customers of its own.
    shared = "embedded" if arguments.quick else None
    steps: list[Step] = []

    def embedded(name: str, run: Callable[[Any], Figure | list[Figure]]) -> Step:
        return Step(partial(cases.embedded_gateway, work, name), run, shared)

    if "accept" in only:
        for connections in counts["accept_connections"]:
            steps.append(Step(
                partial(cases.accept_gateway, work, connections, arguments.redis_url),
                partial(cases.durable_accept, count=counts["accept"], connections=connections),
            ))
    for connections in counts["connections"]:
        if "end-to-end" in only:
            plain = cases.customer_mails(counts["end_to_end"], cases.END_TO_END_CUSTOMERS)
            steps.append(embedded(
                f"end-to-end-{connections}",
                partial(cases.end_to_end, mails=plain, connections=connections),
            ))
        if "html" in only:
            first = cases.HTML_CUSTOMERS
            html = [
                (f"customer{number}@example.com", cases.QUEUE_ADDRESS, mails.html_reply_mail(number))
                for number in range(first, first + counts["html"])
            ]
            steps.append(embedded(f"end-to-end-html-{connections}", partial(
                cases.end_to_end, mails=html, connections=connections, case="end-to-end-html",
                what="50 KB HTML replies with a quote to trim, to tickets with notifications",
            )))
        if "corpus" in only and mails.corpus_files():
            steps.append(embedded(f"end-to-end-corpus-{connections}", partial(
                cases.end_to_end, mails=mails.corpus_set(counts["corpus"]),
                connections=connections, case="end-to-end-corpus",
                what="sample corpus mails, each with a Message-ID of its own, to tickets",
            )))
        if "production" in only and counts["production"]:
            steps.append(_with_own_gateways(partial(
                cases.production_end_to_end, work, counts["production"], connections,
                arguments.redis_url, arguments.postgres_url,
            )))
    if "reply" in only:
        steps.append(embedded("reply", partial(cases.reply_to_note, count=counts["replies"])))
    if "memory" in only:
        # The full run measures a gateway that took no other mail.
        steps.append(embedded("memory", partial(
            cases.memory, size=counts["memory_bytes"], fresh=not arguments.quick,
        )))
    if "sustained" in only:
        # Offered at the target rate: a quarter of the ceiling at 32
        # connections (or the largest count measured). It is the last case
        # on the shared gateway, because it leaves a backlog there.
        top = max(counts["connections"])
        steps.append(embedded("sustained", partial(
            cases.sustained, seconds=counts["sustained_seconds"],
            rate=0.25 * ceilings[("rate", top)], connections=top,
        )))
    if "outbound" in only:
        steps.append(Step(
            partial(cases.outbound_gateway, work, counts["outbound"]),
            partial(cases.outbound, count=counts["outbound"]),
        ))
    if "peer" in only and mails.corpus_files():
        steps.append(_with_own_gateways(partial(
            peer.peer, work / "peer", counts["peer"] or counts["corpus"],
            max(counts["connections"]), install=not arguments.quick,
        )))
    return steps


def _with_own_gateways(measure: Callable[[], Figure | list[Figure]]) -> Step:
    """Return the step of a case that starts and stops its gateways itself."""
    return Step(contextlib.nullcontext, lambda _: measure())


def run_one_by_one(steps: list[Step], report: Callable[[Figure | list[Figure]], None]) -> None:
    """Run each step on a gateway of its own, started just before it and
    stopped just after, so no other gateway runs during a measurement."""
    for step in steps:
        with step.setup() as target:
            report(step.run(target))


def run_side_by_side(steps: list[Step], report: Callable[[Figure | list[Figure]], None]) -> None:
    """Start the gateways of all steps at once, then run the steps in order.

    A gateway gets SIGTERM after its last step, so that a backlog it still
    processes does not slow the steps after it. The exits are awaited at
    the end, all together.
    """
    last_step = {step.shared: index for index, step in enumerate(steps) if step.shared}
    with contextlib.ExitStack() as stack:
        targets: list[Any] = []
        shared: dict[str, Any] = {}
        for step in steps:
            if step.shared is None:
                targets.append(stack.enter_context(step.setup()))
            elif step.shared not in shared:
                shared[step.shared] = stack.enter_context(step.setup())
                targets.append(shared[step.shared])
            else:
                targets.append(shared[step.shared])
        for index, (step, target) in enumerate(zip(steps, targets)):
            report(step.run(target))
            if target is not None and (step.shared is None or last_step[step.shared] == index):
                target.terminate()


def _exit_on_signal(signum: int, frame: object) -> None:
    """Raise SystemExit, so that every gateway and sink started is stopped
    on the way out. By default SIGTERM ends the process at once and leaves
    them running."""
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    signal.signal(signal.SIGTERM, _exit_on_signal)
    counts = plan(arguments.quick)
    load = os.getloadavg()
    print(
        f"mailgate benchmarks{' --quick' if arguments.quick else ''}: "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}, {os.cpu_count()} cores ({cpu_model()}), "
        f"Python {platform.python_version()}, "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )
    ceilings: dict[tuple[str, int | None], float] = {}
    end_to_end: list[Figure] = []

    def report(figures: Figure | list[Figure]) -> None:
        for figure in figures if isinstance(figures, list) else [figures]:
            if figure.case.startswith("ceiling"):
                ceilings[(figure.metric, figure.connections)] = figure.rate
            if figure.case.startswith("end-to-end"):
                end_to_end.append(figure)
            print(format_figure(figure, ceilings), flush=True)

    connection_counts = sorted({*counts["connections"], *counts["accept_connections"], 4})
    with tempfile.TemporaryDirectory(prefix="mailgate-bench-") as directory, \
            ThreadPoolExecutor(1) as background:
        work = Path(directory)
        # --quick makes the gateways' home with the CLI while the ceiling
        # runs; the full run makes it after, so that nothing else runs then.
        template = background.submit(prepare_template, work) if arguments.quick else None
        for connections in connection_counts:
            report(cases.ceiling(counts["ceiling"], connections))
        if template is not None:
            template.result()
        steps = plan_steps(arguments, counts, work, ceilings)
        if arguments.quick:
            run_side_by_side(steps, report)
        else:
            run_one_by_one(steps, report)
    if arguments.plot is not None:
        print(plot.plot_end_to_end(end_to_end, ceilings, arguments.plot), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
