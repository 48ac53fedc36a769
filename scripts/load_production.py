#!/usr/bin/env python3
"""Load test of the production shape: listeners and workers apart on one
PostgreSQL and one Redis, with a SIGTERM to every process mid-run.

It starts LISTENERS ``mailgate serve --role smtp`` processes and one
``mailgate worker --processes N`` supervisor, and sends MAILS distinct mails
from SENDERS concurrent SMTP clients. Once SIGTERM_AFTER mails are
acknowledged, it sends SIGTERM to every process (each listener, the
supervisor and each worker process) and starts them all again. The senders
retry what was not acknowledged, as an MTA does. At the end it checks that
every mail made exactly one ticket: MAILS tickets, no Message-ID on two
tickets, none lost.

Run from the repository root with PostgreSQL and Redis on 127.0.0.1:

    .venv/bin/python scripts/load_production.py --mails 5000

It creates a database and a Redis namespace of its own and removes them at
the end. It prints what it measured and exits 0 when every check passed, 1
when one failed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path

import psycopg
import redis
from sqlalchemy import func, select

from mailgate.app import App
from mailgate.settings import load_settings
from store import migrate
from store.db import make_engine
from store.directory import add_queue, add_user
from store.models import Message, OutboxEntry, Role, SpoolEntry, SpoolState, Ticket

POSTGRES_ADMIN_URL = os.environ.get(
    "MAILGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("MAILGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
DOMAIN = "support.example.org"
SUPPORT = f"support@{DOMAIN}"
AGENT = "carol@example.org"
# A sender whose connection fails waits this long before it tries again.
RETRY_PAUSE_SECONDS = 0.5


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mails", type=int, default=5000, help="mails to send")
    parser.add_argument("--senders", type=int, default=8, help="concurrent SMTP clients")
    parser.add_argument("--listeners", type=int, default=2, help="SMTP listener processes")
    parser.add_argument("--worker-processes", type=int, default=4, help="worker processes")
    parser.add_argument("--threads", type=int, default=4, help="threads per worker process")
    parser.add_argument(
        "--sigterm-after", type=int, default=None,
        help="acknowledged mails before the SIGTERM to every process "
        "(default: half of --mails; 0: no SIGTERM)",
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds before the run gives up"
    )
    arguments = parser.parse_args(argv)
    if arguments.sigterm_after is None:
        arguments.sigterm_after = arguments.mails // 2
    return arguments


class Process:
    """A ``mailgate`` child process with its log kept in a file."""

    def __init__(self, name: str, args: list[str], environment: dict[str, str], logs: Path):
        self.name = name
        self.log_path = logs / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "mailgate", *args],
            stdout=subprocess.DEVNULL, stderr=self._log, env=environment,
        )

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while "mailgate ready" not in self.log_text():
            if self.popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start; see {self.log_path}")
            time.sleep(0.1)

    def worker_pids(self) -> list[int]:
        """Pids of the worker processes a supervisor started and still runs."""
        pids: dict[str, int] = {}
        for line in self.log_text().splitlines():
            if "mailgate.workers: worker process" in line and "started: pid=" in line:
                slot = line.split("worker process ", 1)[1].split(" ", 1)[0]
                pids[slot] = int(line.rsplit("pid=", 1)[1])
        return list(pids.values())

    def wait(self, timeout: float) -> int:
        code = self.popen.wait(timeout)
        self._log.close()
        return code


@dataclass
class Senders:
    """Mail numbers still to send, and what each acknowledgement named."""

    mails: int
    ports: list[int]
    acknowledged: dict[int, list[str]] = field(default_factory=dict)
    failures: Counter = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)

    def count(self) -> int:
        with self.lock:
            return len(self.acknowledged)

    def run(self, index: int, total: int) -> None:
        numbers = list(range(index, self.mails, total))
        port = self.ports[index % len(self.ports)]
        client: smtplib.SMTP | None = None
        while numbers and not self.stop.is_set():
            number = numbers[0]
            try:
                if client is None:
                    client = smtplib.SMTP("127.0.0.1", port, timeout=60)
                    client.ehlo("load.example.com")
                reply = send_one(client, number)
            except (OSError, smtplib.SMTPException) as error:
                # Not acknowledged: close, wait and send the same mail again.
                with self.lock:
                    self.failures[type(error).__name__] += 1
                client = close_quietly(client)
                time.sleep(RETRY_PAUSE_SECONDS)
                continue
            with self.lock:
                self.acknowledged.setdefault(number, []).append(reply)
            numbers.pop(0)
        close_quietly(client)


def message_id(number: int) -> str:
    return f"load-{number}@example.com"


def send_one(client: smtplib.SMTP, number: int) -> str:
    mail = EmailMessage()
    mail["From"] = f"Customer {number} <c{number}@example.com>"
    mail["To"] = SUPPORT
    mail["Subject"] = f"Load test mail {number}"
    mail["Message-ID"] = f"<{message_id(number)}>"
    mail.set_content(f"Mail number {number} of the load test.\n")
    code, reply = client.mail(f"c{number}@example.com")
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, f"c{number}@example.com")
    code, reply = client.rcpt(SUPPORT)
    if code != 250:
        raise smtplib.SMTPRecipientsRefused({SUPPORT: (code, reply)})
    code, reply = client.data(mail.as_bytes())
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
    return reply.decode()


def close_quietly(client: smtplib.SMTP | None) -> None:
    if client is None:
        return None
    try:
        client.close()
    except OSError:
        pass
    return None


def free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Deployment:
    """The listener processes and the worker supervisor of one run."""

    def __init__(self, arguments: argparse.Namespace, environment: dict[str, str], logs: Path):
        self.arguments = arguments
        self.environment = environment
        self.logs = logs
        self.smtp_ports = [free_port() for _ in range(arguments.listeners)]
        self.processes: list[Process] = []
        self.generation = 0

    def start(self) -> float:
        """Start every process; return the seconds until all were ready."""
        started = time.monotonic()
        self.generation += 1
        self.processes = []
        for number, port in enumerate(self.smtp_ports, 1):
            self.processes.append(Process(
                f"listener{number}-run{self.generation}",
                ["serve", "--role", "smtp", "--smtp-port", str(port),
                 "--http-port", str(free_port())],
                self.environment, self.logs,
            ))
        self.processes.append(Process(
            f"worker-run{self.generation}",
            ["worker", "--processes", str(self.arguments.worker_processes),
             "--threads", str(self.arguments.threads), "--http-port", str(free_port())],
            self.environment, self.logs,
        ))
        for process in self.processes:
            process.wait_ready()
        supervisor = self.processes[-1]
        deadline = time.monotonic() + 120
        while len(supervisor.worker_pids()) < self.arguments.worker_processes:
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker processes did not start; see {supervisor.log_path}")
            time.sleep(0.1)
        return time.monotonic() - started

    def sigterm_everything(self) -> tuple[list[int], float]:
        """SIGTERM every process, workers included; return the exit codes of
        the listeners and the supervisor and the seconds until all exited."""
        started = time.monotonic()
        targets = [process.popen.pid for process in self.processes]
        targets += self.processes[-1].worker_pids()
        for pid in targets:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        codes = [process.wait(120) for process in self.processes]
        return codes, time.monotonic() - started

    def stop(self) -> list[int]:
        for process in self.processes:
            if process.popen.poll() is None:
                process.popen.terminate()
        return [process.wait(120) for process in self.processes]


def create_database() -> str:
    name = f"mailgate_load_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    return name


def drop_database(name: str) -> None:
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def delete_redis_namespace(namespace: str) -> None:
    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(match=f"{namespace}*"))
    if keys:
        client.delete(*keys)
    client.close()


def database_counts(app: App) -> dict[str, int]:
    with app.sessions() as session:
        spool = Counter(dict(session.execute(
            select(SpoolEntry.state, func.count()).group_by(SpoolEntry.state)
        ).all()))
        outbox = Counter(dict(session.execute(
            select(OutboxEntry.state, func.count()).group_by(OutboxEntry.state)
        ).all()))
        tickets = session.scalar(select(func.count(Ticket.id)))
    return {
        "tickets": tickets or 0,
        **{f"spool {state}": count for state, count in spool.items()},
        **{f"outbox {state}": count for state, count in outbox.items()},
    }


def wait_until_drained(app: App, table: str, deadline: float) -> bool:
    """Wait until no row of ``table`` ("spool" or "outbox") is pending;
    return False at the deadline.

    Call it after the senders finished, so every mail is in the spool.
    """
    while time.monotonic() < deadline:
        if database_counts(app).get(f"{table} pending", 0) == 0:
            return True
        time.sleep(0.5)
    return False


def check_results(app: App, senders: Senders, mails: int) -> list[str]:
    """Return the checks that failed; empty when every mail made one ticket."""
    with app.sessions() as session:
        rows = session.execute(select(Message.message_id, Message.ticket_id)).all()
        tickets = session.scalar(select(func.count(Ticket.id)))
        states = Counter(session.scalars(select(SpoolEntry.state)))
    tickets_per_message = Counter(message_id_ for message_id_, _ in rows)
    failed = []
    if tickets != mails:
        failed.append(f"{tickets} tickets, expected {mails}")
    doubled = [key for key, count in tickets_per_message.items() if count > 1]
    if doubled:
        failed.append(f"{len(doubled)} Message-IDs on more than one ticket, e.g. {doubled[0]}")
    lost = [n for n in senders.acknowledged if tickets_per_message[message_id(n)] == 0]
    if lost:
        failed.append(f"{len(lost)} acknowledged mails without a ticket, e.g. {lost[0]}")
    if len(senders.acknowledged) != mails:
        failed.append(f"{len(senders.acknowledged)} of {mails} mails acknowledged")
    unexpected = set(states) - {SpoolState.PROCESSED.value, SpoolState.DUPLICATE.value}
    if unexpected:
        failed.append(f"spool rows in states {sorted(unexpected)}")
    if len({ticket for _, ticket in rows}) != len(rows):
        failed.append("a ticket holds two customer messages")
    return failed


def run(arguments: argparse.Namespace) -> int:
    home = Path(tempfile.mkdtemp(prefix="mailgate-load-"))
    logs = home / "logs"
    logs.mkdir()
    database = create_database()
    namespace = f"mailgate-load-{uuid.uuid4().hex[:8]}"
    database_url = f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{database}"
    environment = {
        **os.environ,
        "MAILGATE_HOME": str(home / "home"),
        "MAILGATE_DATABASE_URL": database_url,
        "MAILGATE_REDIS_URL": REDIS_URL,
        "MAILGATE_REDIS_NAMESPACE": namespace,
        "MAILGATE_DOMAIN": DOMAIN,
        "MAILGATE_SIGNING_KEYS": "k1:" + os.urandom(32).hex(),
        "MAILGATE_SWEEP_INTERVAL_SECONDS": "5",
        "MAILGATE_SHUTDOWN_GRACE_SECONDS": "20",
    }
    engine = make_engine(database_url)
    migrate.upgrade(engine)
    engine.dispose()

    os.environ.update({k: v for k, v in environment.items() if k.startswith("MAILGATE_")})
    app = App.create(load_settings())
    add_queue(app.sessions, "Support", SUPPORT)
    add_user(app.sessions, "carol", AGENT, Role.FRONTLINE, ["Support"])

    deployment = Deployment(arguments, environment, logs)
    print(
        f"load: {arguments.mails} mails from {arguments.senders} senders to "
        f"{arguments.listeners} listeners, {arguments.worker_processes} worker processes x "
        f"{arguments.threads} threads, PostgreSQL and Redis on 127.0.0.1, "
        f"{os.cpu_count()} CPUs"
    )
    try:
        startup = deployment.start()
        print(f"started in {startup:.1f}s")
        return run_senders(arguments, app, deployment)
    finally:
        deployment.stop()
        app.close()
        drop_database(database)
        delete_redis_namespace(namespace)
        shutil.rmtree(home, ignore_errors=True)


def run_senders(arguments: argparse.Namespace, app: App, deployment: Deployment) -> int:
    senders = Senders(arguments.mails, deployment.smtp_ports)
    threads = [
        threading.Thread(target=senders.run, args=(index, arguments.senders), daemon=True)
        for index in range(arguments.senders)
    ]
    started = time.monotonic()
    deadline = started + arguments.timeout
    for thread in threads:
        thread.start()

    if arguments.sigterm_after:
        while senders.count() < arguments.sigterm_after and time.monotonic() < deadline:
            time.sleep(0.01)
        at = senders.count()
        codes, stop_seconds = deployment.sigterm_everything()
        print(
            f"SIGTERM to every process after {at} acknowledged mails: exit codes {codes}, "
            f"all stopped in {stop_seconds:.1f}s"
        )
        print(f"restarted in {deployment.start():.1f}s")

    for thread in threads:
        thread.join(max(1.0, deadline - time.monotonic()))
    senders.stop.set()
    sent_seconds = time.monotonic() - started
    print(
        f"acknowledged {senders.count()} mails in {sent_seconds:.1f}s "
        f"({senders.count() / sent_seconds:.0f} mails/s)"
    )
    for table in ("spool", "outbox"):
        if not wait_until_drained(app, table, deadline):
            print(f"FAILED: {table} rows still pending after {arguments.timeout:.0f}s")
        drained = time.monotonic() - started
        print(f"no {table} row pending after {drained:.1f}s")
    print(f"sender retries after errors: {dict(senders.failures) or 'none'}")
    print(f"database: {database_counts(app)}")

    failed = check_results(app, senders, arguments.mails)
    for failure in failed:
        print(f"FAILED: {failure}")
    if not failed:
        print(
            f"passed: {arguments.mails} tickets, no Message-ID on two tickets, "
            "no acknowledged mail lost"
        )
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_arguments(argv))


if __name__ == "__main__":
    sys.exit(main())
