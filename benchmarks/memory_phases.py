"""Profile the memory that receiving and processing one large mail take in
the gateway process, phase by phase.

    python benchmarks/memory_phases.py [--size 25000000] [--trace]

The phases run in this one process as in ``mailgate serve``'s embedded
default: the SMTP listener (on a free port of 127.0.0.1, fed by a client
process) receives and spools the mail, then ``process_spool_entry``
processes it. For each phase it prints the resident memory at its start
and the growth of the peak (VmHWM) during it; the peak is reset at each
start through ``/proc/self/clear_refs`` (Linux 4.0 and later).

With ``--trace`` it also prints tracemalloc's peak of Python allocations
per phase, and the largest blocks alive when the first attachment is
stored. Tracing costs memory of its own, so the VmHWM figures of a traced
run are higher.

Parsing runs in a child process as in ``mailgate serve``, so its own
memory is not counted here: the last line gives the child's peak.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import subprocess
import sys
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MEBIBYTE = 2**20

_CLIENT = """
import smtplib, sys
raw = sys.stdin.buffer.read()
with smtplib.SMTP("127.0.0.1", int(sys.argv[1]), timeout=600) as client:
    client.sendmail("customer@example.com", ["support@example.org"], raw)
"""


def read_status() -> dict[str, int]:
    """Return VmRSS and VmHWM of this process, in bytes."""
    values = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) * 1024
    return values


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


class Phases:
    """The figures of each measured phase, in the order they ran."""

    def __init__(self, trace: bool) -> None:
        self.trace = trace
        self.rows: list[str] = []

    def measure(self, name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start_rss = read_status()["VmRSS"]
            reset_peak()
            if self.trace:
                traced_before, _ = tracemalloc.get_traced_memory()
                tracemalloc.reset_peak()
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds = time.perf_counter() - started
                status = read_status()
                row = (
                    f"{name:20} {seconds:5.2f} s  RSS at start {start_rss / MEBIBYTE:6.1f} MiB,"
                    f" peak growth {(status['VmHWM'] - start_rss) / MEBIBYTE:6.1f} MiB,"
                    f" RSS after {status['VmRSS'] / MEBIBYTE:6.1f} MiB"
                )
                if self.trace:
                    traced_after, traced_peak = tracemalloc.get_traced_memory()
                    row += (
                        f"; traced in use {traced_before / MEBIBYTE:5.1f} MiB,"
                        f" peak {traced_peak / MEBIBYTE:5.1f}, after {traced_after / MEBIBYTE:5.1f}"
                    )
                self.rows.append(row)

        return wrapper


def receive(app: Any, mail_path: Path, phases: Phases) -> int:
    """Receive the mail at ``mail_path`` over SMTP in this process; return
    its spool id."""
    from mailgate.listeners.smtp import start_smtp_server

    spooled: list[int] = []
    ready = threading.Event()
    loop = asyncio.new_event_loop()
    listener_holder: list[Any] = []

    async def start() -> None:
        listener = await start_smtp_server(app, "127.0.0.1", 0, spooled.append)
        listener_holder.append(listener)
        ready.set()

    thread = threading.Thread(
        target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True
    )
    thread.start()
    ready.wait(30)
    port = listener_holder[0].sockets[0].getsockname()[1]
    try:
        # The client reads the mail from the file, so this process has no
        # copy of it while the listener receives.
        with mail_path.open("rb") as source:
            send = phases.measure(
                "receive and spool",
                lambda: subprocess.run(
                    [sys.executable, "-c", _CLIENT, str(port)], stdin=source, check=True
                ),
            )
            send()
    finally:
        loop.call_soon_threadsafe(listener_holder[0].close)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
    return spooled[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=25_000_000, help="mail size in bytes")
    parser.add_argument("--trace", action="store_true", help="also trace Python allocations")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import store.tickets as tickets
    from benchmarks.cases import pdf_mail
    from benchmarks.gateway import descendants, peak_rss_bytes
    from mailgate import pipeline
    from mailgate.app import App
    from mailgate.settings import Settings
    from store.directory import add_queue, add_user
    from store.models import Role

    app = App.create(Settings(home=Path(tempfile.mkdtemp(prefix="mailgate-memory-")),
                              domain="example.org"))
    add_queue(app.sessions, "Support", "support@example.org")
    add_user(app.sessions, "agent", "agent@example.org", Role.FRONTLINE, ["Support"], "")
    mail_path = Path(tempfile.mkdtemp(prefix="mailgate-memory-mail-")) / "mail.eml"
    mail_path.write_bytes(pdf_mail(options.size))
    size = mail_path.stat().st_size

    phases = Phases(options.trace)
    if options.trace:
        tracemalloc.start(40)
    spool_id = receive(app, mail_path, phases)

    snapshots: list[tracemalloc.Snapshot] = []
    store_blob = tickets._store_blob

    def store_blob_with_snapshot(*args: Any, **kwargs: Any) -> Any:
        if options.trace and not snapshots:
            snapshots.append(tracemalloc.take_snapshot())
        return store_blob(*args, **kwargs)

    pipeline.parse_spooled_mail = phases.measure("parse_spooled_mail", pipeline.parse_spooled_mail)
    pipeline._decide_and_act = phases.measure("_decide_and_act", pipeline._decide_and_act)
    tickets._store_blob = store_blob_with_snapshot
    started = time.perf_counter()
    outcome = pipeline.process_spool_entry(app, spool_id)
    seconds = time.perf_counter() - started
    children = [peak_rss_bytes(pid) for pid in descendants(threading.get_native_id())]

    print(f"one mail of {size:,} bytes, processed as {outcome.state.value} in {seconds:.2f} s")
    for row in phases.rows:
        print(row)
    if children:
        rss, peak = max(children, key=lambda item: item[1])
        print(f"parser child: peak {peak / MEBIBYTE:.1f} MiB, RSS now {rss / MEBIBYTE:.1f} MiB")
    if snapshots:
        print("largest blocks alive when the first attachment is stored:")
        for stat in snapshots[0].statistics("traceback")[:3]:
            ours = [line.strip() for line in stat.traceback.format()
                    if "mailgate" in line or "store" in line]
            print(f"  {stat.size / MEBIBYTE:6.1f} MiB  {' <- '.join(reversed(ours[-4:]))}")


if __name__ == "__main__":
    main()
