"""Profile the memory that processing one large mail takes in the gateway
process, with tracemalloc: the peak of each phase, and the largest blocks
alive when the first attachment is stored.

    python benchmarks/memory_phases.py [--size 25000000]

Parsing runs in a child process as in ``mailgate serve``, so its own memory
is not traced here; the benchmark's ``memory-parser`` line measures it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

MEBIBYTE = 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=25_000_000, help="mail size in bytes")
    options = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import store.tickets as tickets
    from benchmarks.cases import pdf_mail
    from mailgate import pipeline
    from mailgate.app import App
    from mailgate.settings import Settings
    from store.directory import add_queue, add_user
    from store.models import Role
    from store.spool import Envelope, spool_message

    app = App.create(Settings(home=Path(tempfile.mkdtemp(prefix="mailgate-memory-")),
                              domain="example.org"))
    add_queue(app.sessions, "Support", "support@example.org")
    add_user(app.sessions, "agent", "agent@example.org", Role.FRONTLINE, ["Support"], "")
    envelope = Envelope(source="smtp", mail_from="customer@example.com",
                        rcpt_tos=["support@example.org"], peer=None, helo=None)
    spool_id = spool_message(app.sessions, pdf_mail(options.size), envelope)

    phases: list[tuple[str, int, int, int]] = []

    def measured(name: str, function):  # type: ignore[no-untyped-def]
        def wrapper(*args, **kwargs):  # type: ignore[no-untyped-def]
            before, _ = tracemalloc.get_traced_memory()
            tracemalloc.reset_peak()
            try:
                return function(*args, **kwargs)
            finally:
                after, peak = tracemalloc.get_traced_memory()
                phases.append((name, before, peak, after))
        return wrapper

    snapshots: list[tracemalloc.Snapshot] = []
    store_blob = tickets._store_blob

    def store_blob_with_snapshot(session, data):  # type: ignore[no-untyped-def]
        if not snapshots:
            snapshots.append(tracemalloc.take_snapshot())
        return store_blob(session, data)

    pipeline.parse_spooled_mail = measured("parse_spooled_mail", pipeline.parse_spooled_mail)
    pipeline._decide_and_act = measured("_decide_and_act", pipeline._decide_and_act)
    tickets._store_blob = store_blob_with_snapshot
    tracemalloc.start(40)
    pipeline.process_spool_entry(app, spool_id)
    _, peak = tracemalloc.get_traced_memory()

    print(f"one mail of {options.size:,} bytes, traced peak of the last phase {peak / MEBIBYTE:.1f} MiB")
    for name, before, phase_peak, after in phases:
        print(f"{name:20} in use before {before / MEBIBYTE:6.1f} MiB, "
              f"peak during {phase_peak / MEBIBYTE:6.1f} MiB, after {after / MEBIBYTE:6.1f} MiB")
    if snapshots:
        print("largest blocks alive when the first attachment is stored:")
        for stat in snapshots[0].statistics("traceback")[:3]:
            ours = [line.strip() for line in stat.traceback.format()
                    if "mailgate" in line or "store" in line]
            print(f"  {stat.size / MEBIBYTE:6.1f} MiB  {' <- '.join(reversed(ours[-4:]))}")


if __name__ == "__main__":
    main()
