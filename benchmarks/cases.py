"""The benchmark cases. Each returns Figure rows; ``__main__`` prints them."""

from __future__ import annotations

import base64
import os
import smtplib
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from benchmarks.clients import LoadResult, plain_mail, run_load, run_paced_load
from benchmarks.gateway import (
    DOMAIN,
    QUEUE_ADDRESS,
    Gateway,
    count_rows,
    descendants,
    free_port,
    peak_rss_bytes,
    prepare_home,
    run_cli,
    wait_for_count,
)
from benchmarks.mails import agent_reply
from benchmarks.sink import SinkProcess

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DONE_SPOOL = "SELECT count(*) FROM spool WHERE state != 'pending'"
PENDING_SPOOL = "SELECT count(*) FROM spool WHERE state = 'pending'"
FAILED_SPOOL = "SELECT count(*) FROM spool WHERE state = 'failed'"
AGENT_ADDRESS = "agent@example.org"
SENT_OUTBOX = "SELECT count(*) FROM outbox WHERE state = 'sent'"
TICKETS = "SELECT count(*) FROM tickets"
OUTBOX = "SELECT count(*) FROM outbox"
NOTES = "SELECT count(*) FROM notes"
# First customer number of the senders of each case's mails. The ranges do
# not overlap (the sustained case's start at 10,000,000), so cases that
# share one gateway in --quick never write as the same customer.
END_TO_END_CUSTOMERS = 0
HTML_CUSTOMERS = 1_000_000
REPLY_CUSTOMERS = 2_000_000
# The memory case's idle figure is taken this long after the ready line.
IDLE_SECONDS = 2.0


@dataclass
class Figure:
    """One measured line: what, how many, how long, and the rate."""

    case: str
    what: str
    count: int
    seconds: float
    unit: str = "mails/s"
    value: float | None = None  # the figure when it is not count / seconds
    connections: int | None = None
    detail: str = ""
    # What the ratio compares: "rate" and "p50"/"p99" against the ceiling at
    # the same connection count, "mail size" for memory.
    metric: str = "rate"
    ratio_base: float | None = None  # the denominator when it is not the ceiling
    ratio_name: str | None = None  # what ratio_base is, when not ``metric``
    tickets: int | None = None  # tickets in the database after the case

    @property
    def rate(self) -> float:
        if self.value is not None:
            return self.value
        return self.count / self.seconds if self.seconds > 0 else float("nan")


def customer_mails(count: int, first: int = 0, size: int = 2048) -> list[tuple[str, str, bytes]]:
    """Return ``count`` 2 KB plain mails from customers ``first`` onwards."""
    return [
        (f"customer{number}@example.com", QUEUE_ADDRESS, plain_mail(number, size))
        for number in range(first, first + count)
    ]


@contextmanager
def embedded_gateway(work: Path, name: str, **settings: str) -> Iterator[Gateway]:
    """Start ``mailgate serve`` (the embedded default, plus ``settings``) on
    a fresh home ``work/name``, and stop it on exit. The gateway may still
    be starting when this yields, because each case waits until it is
    ready."""
    home = work / name
    prepare_home(home)
    gateway = Gateway(home, **settings)
    try:
        yield gateway
    finally:
        gateway.stop()


@contextmanager
def accept_gateway(work: Path, connections: int, redis_url: str) -> Iterator[Gateway]:
    """Start ``serve --role smtp`` on a Redis namespace of its own with no
    worker, and delete the namespace's keys after it stopped."""
    namespace = f"mailgate-bench-{uuid.uuid4().hex[:12]}"
    settings = {"MAILGATE_REDIS_URL": redis_url, "MAILGATE_REDIS_NAMESPACE": namespace}
    home = work / f"accept-{connections}"
    prepare_home(home, **settings)
    try:
        gateway = Gateway(home, "--role", "smtp", **settings)
        try:
            yield gateway
        finally:
            gateway.stop()
    finally:
        _delete_redis_namespace(redis_url, namespace)


@dataclass
class Relayed:
    """A gateway whose outbox goes to an aiosmtpd sink (``outbound_gateway``)."""

    gateway: Gateway
    sink: SinkProcess

    def terminate(self) -> None:
        self.gateway.terminate()


@contextmanager
def outbound_gateway(work: Path, count: int) -> Iterator[Relayed]:
    """Write ``count`` rows to the outbox of a fresh home, then start an
    aiosmtpd sink and ``mailgate serve`` relaying to it. Both stop on exit."""
    home = work / "outbound"
    prepare_home(home)
    _fill_outbox(home, count)
    port = free_port()
    sink = SinkProcess(port)
    try:
        gateway = Gateway(home, MAILGATE_SMTP_RELAY=f"smtp://127.0.0.1:{port}")
        try:
            yield Relayed(gateway, sink)
        finally:
            gateway.stop()
    finally:
        sink.stop()


def ceiling(count: int, connections: int) -> list[Figure]:
    """Measure a bare aiosmtpd server that replies 250 to every mail."""
    port = free_port()
    sink = SinkProcess(port)
    try:
        load = run_load(port, customer_mails(count), connections)
    finally:
        sink.stop()
    return [
        Figure(
            "ceiling", "2 KB mails acknowledged by a bare aiosmtpd 250 handler",
            load.accepted, load.seconds, connections=connections, detail=_failures(load),
        ),
        *_latencies("ceiling-latency", load, connections),
    ]


def _latencies(case: str, load: LoadResult, connections: int) -> list[Figure]:
    return [
        Figure(
            case, f"{metric} DATA-end to 250", load.accepted, load.seconds, unit="ms",
            value=load.percentile(fraction) * 1000, connections=connections, metric=metric,
        )
        for metric, fraction in (("p50", 0.50), ("p99", 0.99))
    ]


def durable_accept(gateway: Gateway, count: int, connections: int) -> list[Figure]:
    """Measure ``serve --role smtp`` with a Redis broker and no worker
    (``accept_gateway``), so every mail is spooled and committed before
    250 and none is processed."""
    gateway.wait_ready()
    spooled_before = count_rows(gateway.home, "SELECT count(*) FROM spool")
    load = run_load(gateway.smtp_port, customer_mails(count), connections)
    spooled = count_rows(gateway.home, "SELECT count(*) FROM spool") - spooled_before
    detail = f"spooled {spooled}{_failures(load)}"
    return [
        Figure(
            "durable-accept", "2 KB mails spooled, committed and acknowledged, processing paused",
            load.accepted, load.seconds, connections=connections, detail=detail,
        ),
        *_latencies("durable-accept-latency", load, connections),
    ]


def end_to_end(
    gateway: Gateway, mails: list[tuple[str, str, bytes]], connections: int,
    case: str = "end-to-end", what: str = "2 KB plain mails to tickets with notifications",
) -> Figure:
    """Measure the embedded default from the first byte sent until every
    accepted mail is processed: a new ticket (or a follow-up) with its New
    Ticket mail and acknowledgement in the outbox.

    The counts are of the rows this case added, so the gateway may have
    taken mail before, as long as all of it is processed.
    """
    gateway.wait_ready()
    home = gateway.home
    before = _row_counts(home)
    load = run_load(gateway.smtp_port, mails, connections)
    done = wait_for_count(home, DONE_SPOOL, before["done"] + load.accepted, timeout=1200)
    added = {name: count - before[name] for name, count in _row_counts(home).items()}
    return Figure(
        case, f"{what}, embedded default",
        load.accepted, done - load.started, connections=connections, tickets=added["tickets"],
        detail=f"tickets {added['tickets']}, outbox rows {added['outbox']}, "
        f"spool failed {added['failed']}{_failures(load)}",
    )


def _row_counts(home: Path) -> dict[str, int]:
    return {
        "done": count_rows(home, DONE_SPOOL), "tickets": count_rows(home, TICKETS),
        "outbox": count_rows(home, OUTBOX), "failed": count_rows(home, FAILED_SPOOL),
    }


def production_end_to_end(
    work: Path, count: int, connections: int, redis_url: str, postgres_url: str,
    worker_processes: int = 2,
) -> Figure:
    """Measure production mode end to end: a PostgreSQL database and a Redis
    namespace of its own, ``serve --role smtp`` and ``mailgate worker`` with
    ``worker_processes`` processes."""
    import psycopg

    name = f"mailgate_bench_{uuid.uuid4().hex[:12]}"
    database_url = f"{postgres_url.rsplit('/', 1)[0]}/{name}"
    namespace = f"mailgate-bench-{uuid.uuid4().hex[:12]}"
    settings = {
        "MAILGATE_DATABASE_URL": database_url, "MAILGATE_REDIS_URL": redis_url,
        "MAILGATE_REDIS_NAMESPACE": namespace,
        "MAILGATE_SIGNING_KEYS": "k1:" + os.urandom(32).hex(),
    }
    home = work / f"production-{connections}"
    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=10) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        home.mkdir(parents=True, exist_ok=True)
        run_cli(home, ["db", "upgrade"], **settings)
        prepare_home(home, **settings)
        with Gateway(home, "--processes", str(worker_processes), command="worker", **settings), \
                Gateway(home, "--role", "smtp", **settings) as listener:
            load = run_load(listener.smtp_port, customer_mails(count), connections)
            done = wait_for_count(home, DONE_SPOOL, load.accepted, 1200, database_url)
            tickets = count_rows(home, "SELECT count(*) FROM tickets", database_url)
            outbox = count_rows(home, "SELECT count(*) FROM outbox", database_url)
    finally:
        _delete_redis_namespace(redis_url, namespace)
        with psycopg.connect(postgres_url, autocommit=True, connect_timeout=10) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    return Figure(
        "end-to-end-production",
        f"2 KB plain mails to tickets, PostgreSQL + Redis, {worker_processes} worker processes",
        load.accepted, done - load.started, connections=connections,
        detail=f"tickets {tickets}, outbox rows {outbox}{_failures(load)}",
    )


def sustained(gateway: Gateway, seconds: float, rate: float, connections: int) -> list[Figure]:
    """Offer 2 KB mails at ``rate`` per second for ``seconds`` to the
    embedded default, and sample the backlog (spool rows still pending)
    every tenth of the run. The backlog grows when processing is slower
    than the offered rate."""
    gateway.wait_ready()
    home = gateway.home
    done_before = count_rows(home, DONE_SPOOL)
    samples: list[tuple[float, int, int]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(max(0.25, seconds / 10)):
            samples.append((
                time.time(), count_rows(home, PENDING_SPOOL), count_rows(home, DONE_SPOOL)
            ))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    load = run_paced_load(gateway.smtp_port, rate, seconds, connections)
    stop.set()
    sampler.join(30)
    ended = time.time()
    pending = count_rows(home, PENDING_SPOOL)
    processed = count_rows(home, DONE_SPOOL) - done_before
    window = ended - load.started
    backlog = ", ".join(f"{at - load.started:.0f}s:{waiting}" for at, waiting, _ in samples)
    growth = (pending - samples[0][1]) / (ended - samples[0][0]) if samples else float("nan")
    return [
        Figure(
            "sustained-accepted", f"2 KB mails acknowledged, offered at {rate:.0f}/s",
            load.accepted, load.seconds, connections=connections, detail=_failures(load).lstrip(", "),
        ),
        Figure(
            "sustained-processed", "of them processed within the run, embedded default",
            processed, window, connections=connections,
            detail=f"backlog pending at s:{backlog}; grows {growth:.1f} mails/s",
        ),
    ]


def reply_to_note(gateway: Gateway, count: int) -> list[Figure]:
    """Send ``count`` customer mails, then for each New Ticket mail they
    brought to the Maildir outbox an agent's reply to its Reply-To address,
    one at a time, and time each from its 250 until the note is in the
    database."""
    gateway.wait_ready()
    home = gateway.home
    maildir = home / "outbox"
    # Mail the gateway took before is delivered first, so that its New
    # Ticket mails are all among the files seen here.
    wait_for_count(home, SENT_OUTBOX, count_rows(home, OUTBOX), timeout=600)
    seen = _maildir_files(maildir)
    done_before = count_rows(home, DONE_SPOOL)
    notes_at_start = count_rows(home, NOTES)
    latencies: list[float] = []
    load = run_load(gateway.smtp_port, customer_mails(count, REPLY_CUSTOMERS), 4)
    wait_for_count(home, DONE_SPOOL, done_before + load.accepted, timeout=600)
    outbox = count_rows(home, OUTBOX)
    wait_for_count(home, SENT_OUTBOX, outbox, timeout=600)
    notifications = _new_ticket_mails(maildir, AGENT_ADDRESS, seen)
    for number, notification in enumerate(notifications[:count]):
        recipient, raw = agent_reply(notification, AGENT_ADDRESS, number)
        notes_before = count_rows(home, NOTES)
        with smtplib.SMTP("127.0.0.1", gateway.smtp_port, timeout=60) as connection:
            connection.sendmail(AGENT_ADDRESS, [recipient], raw)
            acknowledged = time.perf_counter()
        visible = _wait_for_rows(home, NOTES, notes_before + 1, 30)
        if visible is not None:
            latencies.append(visible - acknowledged)
    notes = count_rows(home, NOTES) - notes_at_start
    latencies.sort()
    figures = []
    for metric, fraction in (("p50", 0.50), ("p99", 0.99)):
        value = latencies[min(len(latencies) - 1, int(fraction * len(latencies)))] if latencies else float("nan")
        figures.append(Figure(
            "reply-to-note", f"{metric} from the 250 of an agent's reply to its note in the database",
            len(latencies), sum(latencies), unit="ms", value=value * 1000, metric=metric,
            connections=1, ratio_base=1000.0, ratio_name="1 s",
            detail=f"{notes} notes from {len(notifications)} New Ticket mails",
        ))
    return figures


def _maildir_files(maildir: Path) -> set[str]:
    folder = maildir / "new"
    return {path.name for path in folder.iterdir()} if folder.is_dir() else set()


def _new_ticket_mails(maildir: Path, agent: str, seen: set[str]) -> list[bytes]:
    """Return the New Ticket mails to ``agent`` in a Maildir, oldest first,
    leaving out the files named in ``seen``."""
    found = []
    paths = [path for path in (maildir / "new").iterdir() if path.name not in seen]
    for path in sorted(paths, key=lambda item: item.stat().st_mtime):
        raw = path.read_bytes()
        head = raw.split(b"\r\n\r\n", 1)[0].split(b"\n\n", 1)[0]
        if f"Delivered-To: {agent}".encode() in head and b"New Ticket" in head:
            found.append(raw)
    return found


def _wait_for_rows(home: Path, query: str, expected: int, timeout: float) -> float | None:
    """Poll every millisecond; return time.perf_counter() once ``query``
    counts ``expected``, or None after ``timeout`` seconds."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if count_rows(home, query) >= expected:
            return time.perf_counter()
        time.sleep(0.001)
    return None


def outbound(relayed: Relayed, count: int) -> Figure:
    """Measure sending the ``count`` outbox rows of ``outbound_gateway`` to
    its aiosmtpd relay, which replies 250."""
    relayed.gateway.wait_ready()
    wait_for_count(relayed.gateway.home, SENT_OUTBOX, count, timeout=600)
    received, first, last = relayed.sink.stop()
    seconds = (last - first) if first is not None and last is not None else float("nan")
    # The span runs from the first mail received to the last one, so it
    # covers count - 1 deliveries.
    return Figure(
        "outbound", "outbox rows sent to a local aiosmtpd relay (4 relay connections)",
        max(received - 1, 0), seconds, connections=4,
        detail=f"received {received} of {count}",
    )


def memory(gateway: Gateway, size: int, fresh: bool = True) -> list[Figure]:
    """Measure peak resident memory, over the idle figure, while one mail of
    ``size`` bytes with a PDF attachment is received and processed.

    On a ``fresh`` gateway, one that took no mail, the idle figure is its
    VmRSS IDLE_SECONDS after the ready line and the peak is the VmHWM of
    its whole life. On a gateway that took mail before, the peaks of the
    serve process and its children are first reset to their current RSS
    (``/proc/PID/clear_refs``, Linux 4.0 and later), and the idle figure is
    the RSS then.
    """
    gateway.wait_ready()
    home = gateway.home
    mail = pdf_mail(size)
    if fresh:
        assert gateway.ready_at is not None
        time.sleep(max(0.0, gateway.ready_at + IDLE_SECONDS - time.monotonic()))
    else:
        for pid in (gateway.pid, *descendants(gateway.pid)):
            _reset_peak_rss(pid)
    done_before = count_rows(home, DONE_SPOOL)
    idle_rss, _ = peak_rss_bytes(gateway.pid)
    started = time.time()
    load = run_load(gateway.smtp_port, [("customer@example.com", QUEUE_ADDRESS, mail)], 1)
    done = wait_for_count(home, DONE_SPOOL, done_before + 1, timeout=300)
    _, serve_peak = peak_rss_bytes(gateway.pid)
    children = descendants(gateway.pid)
    child_peaks = [_child_peak(pid) for pid in children]
    child_peak = max(child_peaks, default=0)
    forkserver_rss = _forkserver_rss(children)
    mebibyte = 1024 * 1024
    return [
        Figure(
            "memory", f"serve process peak RSS over idle, one {len(mail) / 1e6:.1f} MB mail with a PDF",
            load.accepted, done - started, unit="MiB", value=(serve_peak - idle_rss) / mebibyte,
            detail=f"idle {idle_rss / mebibyte:.0f} MiB, peak {serve_peak / mebibyte:.0f} MiB",
            metric="mail size",
            ratio_base=len(mail) / mebibyte,
        ),
        Figure(
            "memory-parser", "largest parser child peak RSS (absolute)",
            load.accepted, done - started, unit="MiB", value=child_peak / mebibyte,
            # Parser processes are forked from the forkserver, so its RSS is
            # about the RSS of one before its first parse.
            detail=f"{len(child_peaks)} child processes, forkserver RSS"
                   f" {forkserver_rss / mebibyte:.0f} MiB", metric="mail size",
            ratio_base=len(mail) / mebibyte,
        ),
    ]


def pdf_mail(size: int) -> bytes:
    """Return a mail of about ``size`` bytes: a short text and a PDF attachment."""
    # Base64 grows the attachment by 4/3 plus line ends (78 bytes per 57).
    pdf_bytes = size * 57 // 78 - 4096
    pdf = b"%PDF-1.4\n" + os.urandom(pdf_bytes) + b"\n%%EOF\n"
    encoded = base64.encodebytes(pdf).replace(b"\n", b"\r\n")
    boundary = f"bench-{uuid.uuid4().hex}"
    head = (
        "From: Customer <customer@example.com>\r\n"
        f"To: {QUEUE_ADDRESS}\r\n"
        "Subject: Scanned invoice\r\n"
        f"Message-ID: <bench-{uuid.uuid4().hex}@example.com>\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n'
        "\r\n"
        f"--{boundary}\r\n"
        "Content-Type: text/plain; charset=utf-8\r\n\r\n"
        "The scanned invoice is attached.\r\n"
        f"--{boundary}\r\n"
        'Content-Type: application/pdf; name="invoice.pdf"\r\n'
        'Content-Disposition: attachment; filename="invoice.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n\r\n"
    ).encode()
    return head + encoded + f"--{boundary}--\r\n".encode()


def _reset_peak_rss(pid: int) -> None:
    """Set the VmHWM of a process to its current RSS (proc(5), clear_refs)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except (FileNotFoundError, ProcessLookupError):
        pass  # the process has exited since it was listed


def _forkserver_rss(pids: list[int]) -> int:
    """Return the VmRSS of the multiprocessing forkserver among ``pids``, or 0."""
    for pid in pids:
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
            if b"multiprocessing.forkserver" in command:
                return peak_rss_bytes(pid)[0]
        except (OSError, KeyError):
            continue
    return 0


def _child_peak(pid: int) -> int:
    try:
        return peak_rss_bytes(pid)[1]
    except (OSError, KeyError):
        return 0


def _failures(load: LoadResult) -> str:
    return f", {load.failed} rejected" if load.failed else ""


def _fill_outbox(home: Path, count: int) -> None:
    from store.db import make_engine, make_sessionmaker
    from store.outbox import OutgoingMail, add_to_outbox

    engine = make_engine(f"sqlite:///{home / 'mailgate.db'}")
    sessions = make_sessionmaker(engine)
    with sessions() as session:
        for number in range(count):
            add_to_outbox(session, OutgoingMail(
                kind="acknowledgement", mail_from=f"support@{DOMAIN}",
                rcpt_to=f"customer{number}@example.com",
                message_id=f"<bench-out-{number}@{DOMAIN}>",
                raw=plain_mail(number, rcpt=f"customer{number}@example.com"),
                ticket_id=None,
            ))
        session.commit()
    engine.dispose()


def _delete_redis_namespace(redis_url: str, namespace: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        keys = list(client.scan_iter(match=f"{namespace}*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
