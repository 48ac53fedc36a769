"""The benchmark cases. Each returns Figure rows; ``__main__`` prints them."""

from __future__ import annotations

import base64
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from benchmarks.clients import LoadResult, plain_mail, run_load
from benchmarks.gateway import (
    DOMAIN,
    QUEUE_ADDRESS,
    Gateway,
    count_rows,
    descendants,
    free_port,
    peak_rss_bytes,
    prepare_home,
    wait_for_count,
)
from benchmarks.sink import SinkProcess

DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"
DONE_SPOOL = "SELECT count(*) FROM spool WHERE state != 'pending'"
SENT_OUTBOX = "SELECT count(*) FROM outbox WHERE state = 'sent'"


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

    @property
    def rate(self) -> float:
        if self.value is not None:
            return self.value
        return self.count / self.seconds if self.seconds > 0 else float("nan")


def customer_mails(count: int, size: int = 2048) -> list[tuple[str, str, bytes]]:
    return [
        (f"customer{number}@example.com", QUEUE_ADDRESS, plain_mail(number, size))
        for number in range(count)
    ]


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


def durable_accept(work: Path, count: int, connections: int, redis_url: str) -> list[Figure]:
    """Measure ``serve --role smtp`` on a Redis namespace of its own with no
    worker, so every mail is spooled and committed before 250 and none is
    processed."""
    home = work / f"accept-{connections}"
    namespace = f"mailgate-bench-{uuid.uuid4().hex[:12]}"
    settings = {"MAILGATE_REDIS_URL": redis_url, "MAILGATE_REDIS_NAMESPACE": namespace}
    prepare_home(home, **settings)
    try:
        with Gateway(home, "--role", "smtp", **settings) as gateway:
            load = run_load(gateway.smtp_port, customer_mails(count), connections)
            spooled = count_rows(home, "SELECT count(*) FROM spool")
    finally:
        _delete_redis_namespace(redis_url, namespace)
    detail = f"spooled {spooled}{_failures(load)}"
    return [
        Figure(
            "durable-accept", "2 KB mails spooled, committed and acknowledged, processing paused",
            load.accepted, load.seconds, connections=connections, detail=detail,
        ),
        *_latencies("durable-accept-latency", load, connections),
    ]


def end_to_end(work: Path, count: int, connections: int) -> Figure:
    """Measure the embedded default from the first byte sent until every mail
    is processed, each a new ticket with its New Ticket mail and acknowledgement
    in the outbox."""
    home = work / f"e2e-{connections}"
    prepare_home(home)
    with Gateway(home) as gateway:
        load = run_load(gateway.smtp_port, customer_mails(count), connections)
        done = wait_for_count(home, DONE_SPOOL, load.accepted, timeout=600)
        tickets = count_rows(home, "SELECT count(*) FROM tickets")
        outbox = count_rows(home, "SELECT count(*) FROM outbox")
    return Figure(
        "end-to-end", "2 KB plain mails to tickets with notifications, embedded default",
        load.accepted, done - load.started, connections=connections,
        detail=f"tickets {tickets}, outbox rows {outbox}{_failures(load)}",
    )


def outbound(work: Path, count: int) -> Figure:
    """Measure sending outbox rows to a local aiosmtpd relay that replies 250."""
    home = work / "outbound"
    prepare_home(home)
    _fill_outbox(home, count)
    port = free_port()
    sink = SinkProcess(port)
    received = 0
    first = last = None
    try:
        relay = {"MAILGATE_SMTP_RELAY": f"smtp://127.0.0.1:{port}"}
        with Gateway(home, **relay):
            wait_for_count(home, SENT_OUTBOX, count, timeout=600)
    finally:
        received, first, last = sink.stop()
    seconds = (last - first) if first is not None and last is not None else float("nan")
    # The span runs from the first mail received to the last one, so it
    # covers count - 1 deliveries.
    return Figure(
        "outbound", "outbox rows sent to a local aiosmtpd relay (4 relay connections)",
        max(received - 1, 0), seconds, connections=4,
        detail=f"received {received} of {count}",
    )


def memory(work: Path, size: int) -> list[Figure]:
    """Measure peak resident memory, over the idle figure, while one mail of
    ``size`` bytes with a PDF attachment is received and processed."""
    home = work / "memory"
    prepare_home(home)
    mail = pdf_mail(size)
    with Gateway(home) as gateway:
        time.sleep(2)
        idle_rss, _ = peak_rss_bytes(gateway.pid)
        started = time.time()
        load = run_load(gateway.smtp_port, [("customer@example.com", QUEUE_ADDRESS, mail)], 1)
        done = wait_for_count(home, DONE_SPOOL, 1, timeout=300)
        _, serve_peak = peak_rss_bytes(gateway.pid)
        child_peaks = [_child_peak(pid) for pid in descendants(gateway.pid)]
        child_peak = max(child_peaks, default=0)
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
            detail=f"{len(child_peaks)} child processes", metric="mail size",
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
