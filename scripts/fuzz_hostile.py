"""Fuzz the worker with mutated real mail for a fixed time and print figures.

Each round takes a mail from ../shared (corpus and cases) and applies 1 to
6 random mutations (tests/hostile/mutations.py). Every 50th round takes one
of the large hostile builders instead. The bytes are spooled and the
worker's own actor function runs on the row, as a worker thread does. The
run counts exceptions that escape the worker (a worker crash), rows left
pending, the end states and the processing time per mail.

Usage (from the repository root, with its virtualenv):

    .venv/bin/python scripts/fuzz_hostile.py --seconds 600 --seed 1

The run uses SQLite and Dramatiq's in-process broker in a temporary home.
"""

from __future__ import annotations

import argparse
import logging
import random
import re
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dramatiq.brokers.stub import StubBroker  # noqa: E402

from mailgate.actors import declare_actors  # noqa: E402
from mailgate.app import App  # noqa: E402
from mailgate.settings import load_settings  # noqa: E402
from store.directory import add_queue, add_user  # noqa: E402
from store.models import Role, SpoolEntry, SpoolState  # noqa: E402
from store.spool import Envelope, spool_message  # noqa: E402
from tests.hostile.builders import BUILDERS  # noqa: E402
from tests.hostile.mutations import mutate, random_mutations  # noqa: E402

SHARED = REPO.parent / "shared"
# One round in this many sends a large hostile builder instead of a mutation.
BUILDER_EVERY = 50


def failure_kind(error: str) -> str:
    """Group failure reasons: the text after "cannot be parsed:", digits as N."""
    reason = error.split("cannot be parsed: ", 1)[-1]
    return re.sub(r"\d+", "N", reason)[:70]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to run")
    parser.add_argument("--seed", type=int, default=1, help="random seed")
    options = parser.parse_args()
    logging.basicConfig(level=logging.CRITICAL)

    corpus = sorted((SHARED / "corpus").glob("*/*.eml")) + sorted((SHARED / "cases").glob("*.eml"))
    if not corpus:
        print(f"no sample mail under {SHARED}", file=sys.stderr)
        return 1
    mails = [path.read_bytes() for path in corpus]
    builders = sorted(BUILDERS.items())
    rng = random.Random(options.seed)

    home = Path(tempfile.mkdtemp(prefix="mailgate-fuzz-"))
    app = App.create(load_settings(home=home, domain="support.example.org"))
    add_queue(app.sessions, "Support", "support@support.example.org")
    add_user(app.sessions, "carol", "carol@example.org", Role.FRONTLINE, ["Support"])
    broker = StubBroker()
    actors = declare_actors(app, broker)
    envelope = Envelope(
        mail_from="ana@example.com", rcpt_tos=("support@support.example.org",), source="smtp"
    )

    states: Counter[str] = Counter()
    failures: Counter[str] = Counter()
    escaped: list[str] = []
    durations: list[float] = []
    pending = 0
    deadline = time.monotonic() + options.seconds
    rounds = 0
    while time.monotonic() < deadline:
        rounds += 1
        if rounds % BUILDER_EVERY == 0:
            name, build = builders[rng.randrange(len(builders))]
            raw = build()
        else:
            raw = mutate(rng.choice(mails), random_mutations(rng, rng.randint(1, 6)))
        spool_id = spool_message(app.sessions, raw, envelope)
        started = time.monotonic()
        try:
            actors.process_spool.fn(spool_id)
        except BaseException as error:  # noqa: BLE001 - what a worker would die of
            escaped.append(f"spool {spool_id}: {type(error).__name__}: {error}")
        durations.append(time.monotonic() - started)
        with app.sessions() as session:
            entry = session.get(SpoolEntry, spool_id)
            states[entry.state] += 1
            if entry.state == SpoolState.PENDING.value:
                pending += 1
            if entry.state == SpoolState.FAILED.value:
                failures[failure_kind(entry.error or "")] += 1

    durations.sort()
    print(f"seconds: {options.seconds:.0f}  seed: {options.seed}  mails: {rounds}")
    print(f"exceptions escaping the worker: {len(escaped)}")
    print(f"rows left pending: {pending}")
    print("end states: " + ", ".join(f"{state} {count}" for state, count in states.most_common()))
    print("failure reasons: " + ", ".join(f"{reason!r} {count}" for reason, count in failures.most_common(8)))
    print(
        f"processing seconds per mail: median {statistics.median(durations):.4f}, "
        f"p99 {durations[int(len(durations) * 0.99)]:.4f}, max {durations[-1]:.3f}"
    )
    for line in escaped[:20]:
        print("escaped:", line)
    broker.close()
    app.close()
    return 1 if escaped or pending else 0


if __name__ == "__main__":
    sys.exit(main())
