"""Listener and worker processes apart, on PostgreSQL and Redis, as an
operator runs them: roles, start-up checks, metrics and SIGTERM."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select

from mailgate.app import App
from mailgate.serve import parse_roles
from mailgate.settings import load_settings
from store.directory import add_queue, add_user
from store.models import OutboxEntry, OutboxState, Role, SpoolEntry, Ticket
from tests.harness import POSTGRES_ADMIN_URL, SUPPORT, backend_settings
from tests.mail import customer_mail
from tests.process import MailgateProcess, ServeProcess, free_port, wait_for

# Written into the settings to prove that no log line shows them.
DATABASE_PASSWORD = "db-secret-7Q2"
SIGNING_SECRET = "5ec2e7" * 6
MAILS = 8


def mailgate(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mailgate", *args], capture_output=True, timeout=timeout
    )


@pytest.fixture
def production(
    tmp_path: Path, postgres_server: str, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[App]:
    """A fresh PostgreSQL database and Redis namespace in the environment, with
    a queue and an agent; yields the App the test reads results through."""
    with backend_settings("postgresql", "redis") as settings:
        # Trust authentication accepts any password, so this one only shows
        # whether a log line would leak it.
        url = settings["database_url"].replace(
            "://postgres@", f"://postgres:{DATABASE_PASSWORD}@"
        )
        environment = {
            "MAILGATE_DATABASE_URL": url,
            "MAILGATE_REDIS_URL": settings["redis_url"],
            "MAILGATE_REDIS_NAMESPACE": settings["redis_namespace"],
            "MAILGATE_SIGNING_KEYS": f"k1:{SIGNING_SECRET}",
            "MAILGATE_DOMAIN": "support.example.org",
            "MAILGATE_HOME": str(tmp_path / "home"),
            "MAILGATE_SHUTDOWN_GRACE_SECONDS": "10",
        }
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        app = App.create(load_settings())
        add_queue(app.sessions, "Support", SUPPORT)
        add_user(app.sessions, "carol", "carol@example.org", Role.FRONTLINE, ["Support"])
        try:
            yield app
        finally:
            app.close()


def metric_values(port: int) -> dict[tuple[str, tuple], float]:
    """Scrape /metrics and parse it with the Prometheus client's parser."""
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert response.status_code == 200
    values = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def count_sent(app: App) -> int:
    with app.sessions() as session:
        return session.scalar(
            select(func.count()).where(OutboxEntry.state == OutboxState.SENT.value)
        )


def count_tickets(app: App) -> int:
    with app.sessions() as session:
        return session.scalar(select(func.count(Ticket.id)))


def send_mails(port: int, first: int, count: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        for number in range(first, first + count):
            mail = customer_mail(
                subject=f"Roles {number}", message_id=f"<roles-{number}@example.com>",
                sender=f"c{number}@example.com",
            )
            client.sendmail(f"c{number}@example.com", [SUPPORT], mail.as_bytes())


def worker_pids(worker: MailgateProcess) -> dict[int, int]:
    """Return the pid of each worker process slot, from the supervisor's log."""
    pids = {}
    for line in worker.lines:
        if "mailgate.workers: worker process" in line and "started: pid=" in line:
            slot = int(line.split("worker process ", 1)[1].split("/", 1)[0])
            pids[slot] = int(line.rsplit("pid=", 1)[1])
    return pids


def test_listener_and_workers_apart(production: App, tmp_path: Path) -> None:
    home = tmp_path / "home"
    smtp_port, worker_http = free_port(), free_port()
    listener = ServeProcess(home, smtp_port, args=("--role", "smtp"))
    worker = MailgateProcess(
        ["worker", "--processes", "2", "--threads", "2", "--http-port", str(worker_http)], home
    )
    listener.wait_ready()
    worker.wait_ready()
    send_mails(smtp_port, 0, MAILS)
    wait_for(lambda: count_sent(production) == 2 * MAILS, timeout=60)
    assert count_tickets(production) == MAILS

    for port in (listener.http_port, worker_http):
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert health.json() == {"status": "ok", "database": "ok", "broker": "ok"}
    received = metric_values(listener.http_port)
    assert received[("mailgate_mails_received_total", (("source", "smtp"),))] == MAILS
    assert received[("mailgate_spool_backlog", ())] == 0
    worked = metric_values(worker_http)
    assert worked[("mailgate_mails_processed_total", (("state", "processed"),))] == MAILS
    assert worked[("mailgate_outbox_sent_total", ())] == 2 * MAILS
    assert worked[("mailgate_mail_processing_seconds_count", ())] == MAILS
    assert worked[("mailgate_mails_failed_total", ())] == 0

    # A worker process that dies is replaced, and the new one takes mail.
    old_pids = worker_pids(worker)
    assert sorted(old_pids) == [1, 2]
    os.kill(old_pids[1], signal.SIGKILL)
    wait_for(lambda: worker_pids(worker).get(1) != old_pids[1], timeout=30)
    os.kill(worker_pids(worker)[2], signal.SIGKILL)
    wait_for(lambda: worker_pids(worker).get(2) != old_pids[2], timeout=30)
    send_mails(smtp_port, MAILS, 2)
    wait_for(lambda: count_sent(production) == 2 * MAILS + 4, timeout=60)

    assert listener.stop() == 0
    assert worker.stop() == 0
    listener_log, worker_log = listener.log_text(), worker.log_text()
    assert "mailgate serve starting: roles=smtp " in listener_log
    assert "broker=redis 127.0.0.1:6379/15" in listener_log
    assert "mailgate stopped" in listener_log
    assert "mailgate worker starting: processes=2 threads=2" in worker_log
    for slot in (1, 2):
        assert f"mailgate worker process {slot}/2 starting: pid=" in worker_log
        assert f"worker process {slot}/2 stopped" in worker_log
    assert "exited with -9; starting it again" in worker_log
    assert "mailgate worker stopped" in worker_log
    for text in (listener_log, worker_log):
        assert DATABASE_PASSWORD not in text
        assert SIGNING_SECRET not in text


def test_serve_refuses_outdated_schema(
    postgres_server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"mailgate_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        monkeypatch.setenv("MAILGATE_DATABASE_URL", f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}")
        monkeypatch.setenv("MAILGATE_REDIS_URL", "redis://127.0.0.1:6379/15")
        for command in (["serve"], ["worker"]):
            refused = mailgate(*command, "--http-port", str(free_port()))
            assert refused.returncode == 1
            assert b"run 'mailgate db upgrade'" in refused.stderr
            assert b"database schema is at None, this mailgate needs" in refused.stderr
        upgraded = mailgate("db", "upgrade")
        assert upgraded.returncode == 0, upgraded.stderr
        monkeypatch.setenv("MAILGATE_REDIS_NAMESPACE", f"mailgate-test-{uuid.uuid4().hex[:8]}")
        server = ServeProcess(tmp_path / "home", free_port())
        server.wait_ready()
        assert server.stop() == 0
    finally:
        with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.parametrize(
    ("roles", "message"),
    [
        ("imap", b"roles without 'worker' need MAILGATE_REDIS_URL"),
        ("smtp", b"roles without 'worker' need MAILGATE_REDIS_URL"),
        ("smtp,mailer", b"unknown role 'mailer'"),
    ],
)
def test_serve_rejects_unusable_roles(roles: str, message: bytes) -> None:
    result = mailgate("serve", "--role", roles)
    assert result.returncode == 2
    assert message in result.stderr


def test_sigterm_lets_data_finish(tmp_path: Path) -> None:
    home = tmp_path / "home"
    app = App.create(load_settings(home=home, domain="support.example.org"))
    add_queue(app.sessions, "Support", SUPPORT)
    port = free_port()
    server = ServeProcess(home, port, MAILGATE_SHUTDOWN_GRACE_SECONDS="20")
    server.wait_ready()
    raw = customer_mail(message_id="<in-data@example.com>").as_bytes().replace(b"\n", b"\r\n")
    sending = smtplib.SMTP("127.0.0.1", port, timeout=30)
    sending.ehlo("client.example.com")
    sending.mail("ana@example.com")
    sending.rcpt(SUPPORT)
    sending.putcmd("data")
    assert sending.getreply()[0] == 354
    sending.send(raw[:100])
    idle = smtplib.SMTP("127.0.0.1", port, timeout=30)
    idle.ehlo("client.example.com")

    server.process.send_signal(signal.SIGTERM)
    wait_for(lambda: any("shutting down" in line for line in server.lines), timeout=10)
    time.sleep(0.5)
    assert idle.noop()[0] == 421
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP("127.0.0.1", port, timeout=5)
    assert server.process.poll() is None  # still waiting for the mail in DATA

    sending.send(raw[100:] + b"\r\n.\r\n")
    code, reply = sending.getreply()
    assert code == 250
    assert reply.startswith(b"2.0.0 queued as ")
    assert server.process.wait(30) == 0
    with app.sessions() as session:
        [row] = session.scalars(select(SpoolEntry)).all()
    app.close()
    assert reply == f"2.0.0 queued as {row.id}".encode()
    assert b"<in-data@example.com>" in row.raw


def test_parse_roles_lists_and_all() -> None:
    assert parse_roles([]) == {"smtp", "imap", "http", "worker"}
    assert parse_roles(["all"]) == {"smtp", "imap", "http", "worker"}
    assert parse_roles(["smtp,http"]) == {"smtp", "http"}
    assert parse_roles(["smtp", " Worker "]) == {"smtp", "worker"}
    assert parse_roles(["imap"]) == {"imap"}


def test_sigterm_grace_time_ends_data(tmp_path: Path) -> None:
    home = tmp_path / "home"
    app = App.create(load_settings(home=home, domain="support.example.org"))
    add_queue(app.sessions, "Support", SUPPORT)
    port = free_port()
    server = ServeProcess(home, port, MAILGATE_SHUTDOWN_GRACE_SECONDS="1")
    server.wait_ready()
    sending = smtplib.SMTP("127.0.0.1", port, timeout=30)
    sending.ehlo("client.example.com")
    sending.mail("ana@example.com")
    sending.rcpt(SUPPORT)
    sending.putcmd("data")
    assert sending.getreply()[0] == 354
    sending.send(b"Subject: never finished\r\n\r\nThe first line")

    started = time.monotonic()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(30) == 0
    assert time.monotonic() - started < 15
    # The client never got 250, so it keeps the mail and retries later.
    assert sending.getreply()[0] == 421
    assert "closing 1 sessions in DATA, whose mail is not acknowledged" in server.log_text()
    with app.sessions() as session:
        assert session.scalars(select(SpoolEntry)).all() == []
    app.close()
