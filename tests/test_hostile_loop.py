"""Two gateways, each the other's customer, with acknowledgements on: the
mail they exchange over five minutes of simulated time stays within the
caps, and the exchange stops."""

from __future__ import annotations

import re
from collections.abc import Callable
from contextlib import ExitStack
from datetime import datetime, timedelta, timezone
from pathlib import Path

import time_machine

from tests.harness import Gateway
from tests.mail import customer_mail

ROUND_SECONDS = 30
SIMULATED_MINUTES = 5
ACK_LIMIT_PER_HOUR = 5
# Header fields that mark mail as automatic or thread it; a badly behaved
# forwarder drops them all and writes its own Message-ID.
MARKERS = ("Auto-Submitted", "X-Auto-Response-Suppress", "X-Loop", "Precedence",
           "In-Reply-To", "References", "Reply-To", "Message-ID")


def start_pair(stack: ExitStack, tmp_path: Path) -> tuple[Gateway, Gateway]:
    pair = []
    for name in ("a", "b"):
        domain = f"{name}.example.org"
        desk = stack.enter_context(Gateway.start(
            home=tmp_path / name, domain=domain, ack_limit_per_hour=ACK_LIMIT_PER_HOUR,
        ))
        desk.add_queue("Support", f"support@{domain}")
        desk.add_agent(f"agent-{name}", f"agent@{domain}")
        pair.append(desk)
    return pair[0], pair[1]


def keep(raw: bytes, number: int) -> bytes:
    return raw


def strip_markers(raw: bytes, number: int) -> bytes:
    """Drop the automatic and threading fields and the ticket tag, and give
    the mail a new Message-ID, as a broken forwarder or auto-responder does."""
    head, _, body = raw.partition(b"\r\n\r\n")
    fields = re.split(rb"\r\n(?![ \t])", head)
    names = tuple(name.lower().encode() for name in MARKERS)
    kept = [field for field in fields if not field.lower().startswith(tuple(n + b":" for n in names))]
    kept = [re.sub(rb"\[#\d+\] ?", b"", field) if field.lower().startswith(b"subject:") else field
            for field in kept]
    kept.append(b"Message-ID: <relayed-%d@relay.example.net>" % number)
    return b"\r\n".join(kept) + b"\r\n\r\n" + body


def run_loop(tmp_path: Path, relay: Callable[[bytes, int], bytes]) -> list[int]:
    """Seed one mail from B's address to A, then relay every mail between
    them for five simulated minutes; return the mails relayed per round."""
    start = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
    relayed_per_round = []
    with time_machine.travel(start, tick=True) as clock, ExitStack() as stack:
        desk_a, desk_b = start_pair(stack, tmp_path)
        seed = customer_mail(sender="Support B <support@b.example.org>", to="support@a.example.org")
        desk_a.send(seed, "support@b.example.org", ["support@a.example.org"])
        desk_a.wait_idle()
        relayed: set[tuple[str, int]] = set()
        for _ in range(SIMULATED_MINUTES * 60 // ROUND_SECONDS):
            count = 0
            for source, target, name in ((desk_a, desk_b, "a"), (desk_b, desk_a, "b")):
                for row in source.outbox_rows():
                    if (name, row.id) in relayed or not row.rcpt_to.startswith("support@"):
                        continue
                    relayed.add((name, row.id))
                    count += 1
                    raw = relay(row.raw, len(relayed))
                    target.send(raw, row.mail_from if relay is keep else f"relay@{name}.example.org",
                                [row.rcpt_to])
                target.wait_idle()
            relayed_per_round.append(count)
            clock.shift(timedelta(seconds=ROUND_SECONDS))
    return relayed_per_round


def test_rfc3834_markers_stop_loop(tmp_path: Path) -> None:
    rounds = run_loop(tmp_path, keep)
    # A acknowledges the seed; B sees Auto-Submitted and answers nothing.
    assert sum(rounds) == 1
    assert rounds[0] == 1


def test_caps_bound_loop_without_markers(tmp_path: Path) -> None:
    rounds = run_loop(tmp_path, strip_markers)
    # Every relayed mail opens a ticket on the other side, and its
    # acknowledgement goes back. Each side sends at most
    # ACK_LIMIT_PER_HOUR of them to the other's address in the hour.
    assert sum(rounds) <= 2 * ACK_LIMIT_PER_HOUR
    assert sum(rounds) >= ACK_LIMIT_PER_HOUR
    assert rounds[-1] == 0
    assert rounds[-2] == 0
