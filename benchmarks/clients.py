"""SMTP load clients: separate processes, each with threads holding one
connection, that send prepared mails and time DATA-end to the final reply."""

from __future__ import annotations

import multiprocessing
import smtplib
import sys
import threading
import time
from dataclasses import dataclass, field

# Client processes at most; the connections are spread over them as threads.
MAX_CLIENT_PROCESSES = 4
# How long the client processes of one load get to start.
CLIENT_START_TIMEOUT_SECONDS = 120
# Mails sent over one connection before the next one is opened.
MAILS_PER_CONNECTION = 100


@dataclass
class LoadResult:
    """Mails accepted with 250 and their timings, as the clients measured them."""

    accepted: int
    failed: int
    started: float  # time.time() when the first client began
    finished: float  # time.time() when the last client finished
    reply_seconds: list[float] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    def percentile(self, fraction: float) -> float:
        ordered = sorted(self.reply_seconds)
        if not ordered:
            return float("nan")
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def plain_mail(number: int, size: int = 2048, rcpt: str = "support@support.example.org") -> bytes:
    """Return a plain-text mail of about ``size`` bytes from a sender of its own."""
    header = (
        f"From: Customer {number} <customer{number}@example.com>\r\n"
        f"To: {rcpt}\r\n"
        f"Subject: Printer {number} is jammed\r\n"
        f"Message-ID: <bench-{number}-{time.time_ns()}@example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n"
        "\r\n"
    )
    line = "The printer on floor 3 is jammed again and shows error E42.\r\n"
    body = line * max(1, (size - len(header)) // len(line))
    return (header + body).encode()


def _send_one(connection: smtplib.SMTP, sender: str, rcpt: str, raw: bytes) -> float:
    """Send one mail and return the seconds from the end of DATA to the reply.

    Raises smtplib.SMTPResponseException unless every step is accepted.
    """
    code, message = connection.mail(sender)
    if code != 250:
        raise smtplib.SMTPResponseException(code, message)
    code, message = connection.rcpt(rcpt)
    if code not in (250, 251):
        raise smtplib.SMTPResponseException(code, message)
    connection.putcmd("data")
    code, message = connection.getreply()
    if code != 354:
        raise smtplib.SMTPResponseException(code, message)
    payload = smtplib.quotedata(raw.decode("utf-8", "surrogateescape"))
    connection.send(payload.encode("utf-8", "surrogateescape") + b"\r\n.\r\n")
    data_end = time.perf_counter()
    code, message = connection.getreply()
    reply_seconds = time.perf_counter() - data_end
    if code != 250:
        raise smtplib.SMTPResponseException(code, message)
    return reply_seconds


def _connection_thread(
    port: int, mails: list[tuple[str, str, bytes]], results: list, barrier: threading.Barrier,
) -> None:
    timings: list[float] = []
    failed = 0
    barrier.wait()
    try:
        # A new connection every MAILS_PER_CONNECTION mails, as an MTA that
        # caps reuse does, and to stay under mailgate's commands per connection.
        for start in range(0, len(mails), MAILS_PER_CONNECTION):
            with smtplib.SMTP("127.0.0.1", port, timeout=120) as connection:
                connection.ehlo("bench.example.com")
                for sender, rcpt, raw in mails[start:start + MAILS_PER_CONNECTION]:
                    try:
                        timings.append(_send_one(connection, sender, rcpt, raw))
                    except smtplib.SMTPResponseException:
                        failed += 1
                        connection.rset()
    except (OSError, smtplib.SMTPException) as error:
        print(f"benchmark client: connection to port {port} failed: {error!r}", file=sys.stderr)
        failed += len(mails) - len(timings) - failed
    results.append((timings, failed))


def _paced_connection_thread(
    port: int, pace: tuple[int, float, float], results: list, barrier: threading.Barrier,
) -> None:
    """Send 2 KB plain mails at ``rate`` per second until ``seconds`` have
    passed; ``pace`` is (first mail number, rate, seconds). A mail that
    falls behind its slot is sent at once, and the run ends on time even
    when the server was too slow to take every mail offered."""
    first_number, rate, seconds = pace
    timings: list[float] = []
    failed = 0
    sent = 0
    total = max(1, int(rate * seconds))
    barrier.wait()
    started = time.monotonic()

    try:
        while sent < total and time.monotonic() - started < seconds:
            with smtplib.SMTP("127.0.0.1", port, timeout=120) as connection:
                connection.ehlo("bench.example.com")
                for _ in range(min(MAILS_PER_CONNECTION, total - sent)):
                    if time.monotonic() - started >= seconds:
                        break
                    slot = started + sent / rate
                    time.sleep(max(0.0, slot - time.monotonic()))
                    number = first_number + sent
                    sent += 1
                    try:
                        timings.append(_send_one(
                            connection, f"customer{number}@example.com",
                            "support@support.example.org", plain_mail(number),
                        ))
                    except smtplib.SMTPResponseException:
                        failed += 1
                        connection.rset()
    except (OSError, smtplib.SMTPException) as error:
        print(f"benchmark client: connection to port {port} failed: {error!r}", file=sys.stderr)
        failed += 1
    results.append((timings, failed))


def process_context() -> multiprocessing.context.BaseContext:
    """Return the context that starts the benchmark's own processes: the
    load clients and the bare SMTP server.

    They are forked from a forkserver that imported the benchmark modules
    once, so each one starts in milliseconds. Spawn would start a new
    interpreter and import them again for every process.
    """
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["benchmarks.cases"])
    return context


def _client_process(port: int, batches: list, start: threading.Barrier,
                    output: multiprocessing.Queue, paced: bool = False) -> None:
    results: list = []
    barrier = threading.Barrier(len(batches) + 1)
    target = _paced_connection_thread if paced else _connection_thread
    threads = [
        threading.Thread(target=target, args=(port, batch, results, barrier))
        for batch in batches
    ]
    for thread in threads:
        thread.start()
    # Every client process waits here until all of them are running.
    start.wait(CLIENT_START_TIMEOUT_SECONDS)
    started = time.time()
    barrier.wait()
    for thread in threads:
        thread.join()
    timings = [seconds for batch_timings, _ in results for seconds in batch_timings]
    failed = sum(batch_failed for _, batch_failed in results)
    output.put((started, time.time(), timings, failed))


def run_load(port: int, mails: list[tuple[str, str, bytes]], connections: int) -> LoadResult:
    """Send ``mails`` (sender, recipient, raw) over ``connections`` SMTP
    connections to 127.0.0.1:``port`` from separate client processes."""
    batches = [mails[index::connections] for index in range(connections)]
    return _run_clients(port, batches, paced=False)


def run_paced_load(port: int, rate: float, seconds: float, connections: int) -> LoadResult:
    """Offer 2 KB plain mails at ``rate`` per second in total for ``seconds``
    over ``connections`` connections, whatever the server's pace."""
    per_connection = rate / connections
    # Customer numbers from 10,000,000 up, one range per connection, so no
    # sender is shared with the mails of another case.
    paces = [((index + 1) * 10_000_000, per_connection, seconds) for index in range(connections)]
    return _run_clients(port, paces, paced=True)


def _run_clients(port: int, batches: list, paced: bool) -> LoadResult:
    connections = len(batches)
    processes_count = min(MAX_CLIENT_PROCESSES, connections)
    groups = [batches[index::processes_count] for index in range(processes_count)]
    context = process_context()
    output = context.Queue()
    start = context.Barrier(processes_count)
    processes = [
        context.Process(
            target=_client_process, args=(port, group, start, output, paced), daemon=True,
        )
        for group in groups
    ]
    for process in processes:
        process.start()
    reports = [output.get(timeout=900) for _ in processes]
    for process in processes:
        process.join(30)
    timings = [seconds for report in reports for seconds in report[2]]
    return LoadResult(
        accepted=len(timings),
        failed=sum(report[3] for report in reports),
        started=min(report[0] for report in reports),
        finished=max(report[1] for report in reports),
        reply_seconds=timings,
    )
