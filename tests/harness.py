"""An in-process gateway for tests: the real SMTP listener on a free port,
the real store and real Dramatiq workers (in-process broker or Redis)."""

from __future__ import annotations

import asyncio
import atexit
import email
import os
import re
import email.policy
import smtplib
import threading
import time
import uuid
from contextlib import ExitStack, contextmanager
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Iterator

import dramatiq
from sqlalchemy import func, select

from mailgate.actors import QUEUE_NAME, Actors, declare_actors, make_broker, start_worker
from mailgate.app import App
from mailgate.http.server import start_http_server
from mailgate.listeners.smtp import start_smtp_server
from mailgate.settings import load_settings
from mailgate.sweeper import Sweeper
from mailgate.views import ticket_detail
from store import migrate
from store.db import make_engine
from store.directory import add_queue, add_user
from store.models import OutboxEntry, OutboxState, Role, SpoolEntry, SpoolState, Ticket
from store.tickets import load_ticket

DOMAIN = "support.example.org"
SUPPORT = f"support@{DOMAIN}"

POSTGRES_ADMIN_URL = os.environ.get(
    "MAILGATE_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("MAILGATE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
DATABASES = ("sqlite", "postgresql")
BROKERS = ("stub", "redis")

_template_lock = threading.Lock()
_template_name: str | None = None


def _postgres_url(name: str) -> str:
    return f"{POSTGRES_ADMIN_URL.rsplit('/', 1)[0]}/{name}"


def _migrated_template() -> str:
    """Return a database at the head revision to copy, made once per process."""
    global _template_name
    import psycopg

    with _template_lock:
        if _template_name is None:
            name = f"mailgate_test_template_{uuid.uuid4().hex[:12]}"
            with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as db:
                db.execute(f'CREATE DATABASE "{name}"')
            atexit.register(_drop_database, name)
            engine = make_engine(_postgres_url(name))
            migrate.upgrade(engine)
            # CREATE DATABASE ... TEMPLATE needs the template without sessions.
            engine.dispose()
            _template_name = name
        return _template_name


def _drop_database(name: str) -> None:
    import psycopg

    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as db:
        db.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """Yield the URL of a new PostgreSQL database at the head revision; drop it after."""
    import psycopg

    template = _migrated_template()
    name = f"mailgate_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True, connect_timeout=5) as db:
        db.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
    try:
        yield _postgres_url(name)
    finally:
        _drop_database(name)


@contextmanager
def backend_settings(database: str = "sqlite", broker: str = "stub") -> Iterator[dict[str, str]]:
    """Yield settings for a fresh ``database`` and a ``broker`` namespace of
    its own: ``{}`` for SQLite under the home folder and the in-process broker.
    """
    if database not in DATABASES or broker not in BROKERS:
        raise ValueError(f"unknown backend {database}/{broker}; use {DATABASES} and {BROKERS}")
    settings: dict[str, str] = {}
    with ExitStack() as stack:
        if broker == "redis":
            namespace = f"mailgate-test-{uuid.uuid4().hex[:8]}"
            settings.update(redis_url=REDIS_URL, redis_namespace=namespace)
            stack.callback(_delete_redis_namespace, namespace)
        if database == "postgresql":
            settings["database_url"] = stack.enter_context(fresh_postgres_database())
        yield settings


def _delete_redis_namespace(namespace: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{namespace}*"))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


def as_environment(settings: dict[str, str]) -> dict[str, str]:
    """Return ``settings`` as MAILGATE_* variables, for a child process."""
    return {f"MAILGATE_{name.upper()}": value for name, value in settings.items()}


class Gateway:
    def __init__(self, app: App, broker: dramatiq.Broker, actors: Actors, worker: dramatiq.Worker):
        self.app = app
        self.broker = broker
        self.actors = actors
        self.worker = worker
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @classmethod
    @contextmanager
    def start(
        cls, home: Path, database: str = "sqlite", broker: str = "stub", *, sweep: bool = False,
        **settings: Any,
    ) -> Iterator[Gateway]:
        """Run a gateway on ``database`` ("sqlite" or "postgresql", a fresh
        one dropped afterwards) and ``broker`` ("stub" or "redis", in a
        namespace of its own). A ``database_url`` or ``redis_url`` in
        ``settings`` wins over these."""
        settings.setdefault("domain", DOMAIN)
        settings.setdefault("ticket_tag_prefix", "#")
        with ExitStack() as stack:
            settings = {**stack.enter_context(backend_settings(database, broker)), **settings}
            if settings.get("redis_url"):
                settings.setdefault("redis_namespace", f"mailgate-test-{uuid.uuid4().hex[:8]}")
            loaded = load_settings(home=home, **settings)
            if loaded.database_url:
                engine = make_engine(loaded.database_url)
                migrate.upgrade(engine)
                engine.dispose()
            app = App.create(loaded)
            dramatiq_broker = make_broker(app.settings)
            actors = declare_actors(app, dramatiq_broker)
            worker = start_worker(dramatiq_broker, 2)
            gateway = cls(app, dramatiq_broker, actors, worker)
            gateway._serve()
            sweeper = None
            if sweep:
                sweeper = Sweeper(app, actors, app.settings.sweep_interval_seconds)
                sweeper.start()
            try:
                yield gateway
            finally:
                if sweeper is not None:
                    sweeper.stop()
                gateway.stop()

    def _serve(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(
            start_smtp_server(self.app, "127.0.0.1", 0, self.actors.received_batch), self.loop
        )
        self.server = future.result(timeout=10)
        self.port = self.server.sockets[0].getsockname()[1]
        self.http_server = None

    @property
    def http_url(self) -> str:
        """Start the HTTP API on a free port (once) and return its base URL."""
        if self.http_server is None:
            future = asyncio.run_coroutine_threadsafe(
                start_http_server(self.app, "127.0.0.1", 0), self.loop
            )
            self.http_server, self._http_task = future.result(timeout=10)
        sockets = self.http_server.servers[0].sockets
        return f"http://127.0.0.1:{sockets[0].getsockname()[1]}"

    async def _close_connections(self) -> None:
        self.server.close()
        if self.http_server is not None:
            self.http_server.should_exit = True
            await self._http_task
        current = asyncio.current_task()
        tasks = [task for task in asyncio.all_tasks() if task is not current]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close_connections(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.worker.stop(timeout=10_000)
        if hasattr(self.broker, "client"):
            self.broker.flush_all()
        self.broker.close()
        self.app.close()

    def cli_env(self) -> dict[str, str]:
        """The environment for a ``mailgate`` child process on this gateway's
        database and broker."""
        settings = self.app.settings
        env = {**os.environ, "MAILGATE_HOME": str(settings.home), "MAILGATE_DOMAIN": settings.domain}
        if settings.database_url:
            env["MAILGATE_DATABASE_URL"] = settings.database_url
        if settings.redis_url:
            env["MAILGATE_REDIS_URL"] = settings.redis_url
            env["MAILGATE_REDIS_NAMESPACE"] = settings.redis_namespace
        return env

    # -- set-up ---------------------------------------------------------

    def add_queue(self, name: str = "Support", address: str = SUPPORT) -> None:
        add_queue(self.app.sessions, name, address)

    def add_agent(
        self, username: str, email_address: str, queue: str = "Support",
        role: Role = Role.FRONTLINE,
    ) -> None:
        add_user(self.app.sessions, username, email_address, role, [queue], username)

    # -- mail -----------------------------------------------------------

    def smtp(self) -> smtplib.SMTP:
        return smtplib.SMTP("127.0.0.1", self.port, timeout=30)

    def send(self, raw: bytes | EmailMessage, mail_from: str, rcpt_tos: list[str]) -> str:
        """Send over SMTP and return the final reply text (raises on errors)."""
        if isinstance(raw, EmailMessage):
            raw = raw.as_bytes()
        # A mail client sends CRLF line ends; smtplib converts only str.
        raw = re.sub(rb"\r?\n", b"\r\n", raw)
        with self.smtp() as client:
            client.ehlo("client.example.com")
            client.mail(mail_from)
            for rcpt in rcpt_tos:
                code, message = client.rcpt(rcpt)
                if code >= 400:
                    raise smtplib.SMTPRecipientsRefused({rcpt: (code, message)})
            code, message = client.data(raw)
        if code != 250:
            raise smtplib.SMTPDataError(code, message)
        return message.decode()

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Wait until no spool or outbox row is pending and the broker is empty."""
        deadline = time.monotonic() + timeout
        # Rows written by other processes (the CLI) reach the workers through
        # the sweeper in a real gateway; do its work here at once.
        self._enqueue_pending_outbox()
        while time.monotonic() < deadline:
            if hasattr(self.broker, "join") and not hasattr(self.broker, "client"):
                self.broker.join(QUEUE_NAME, timeout=int(timeout * 1000))
                self.worker.join()
            if self.pending_counts() == (0, 0):
                return
            time.sleep(0.05)
        raise TimeoutError(f"still pending after {timeout}s: {self.pending_counts()}")

    def _enqueue_pending_outbox(self) -> None:
        with self.app.sessions() as session:
            ids = list(session.scalars(select(OutboxEntry.id).where(
                OutboxEntry.state == OutboxState.PENDING.value, OutboxEntry.attempts == 0
            )))
        for outbox_id in ids:
            self.actors.enqueue_outbox(outbox_id)

    def pending_counts(self) -> tuple[int, int]:
        with self.app.sessions() as session:
            spool = session.scalar(
                select(func.count()).where(SpoolEntry.state == SpoolState.PENDING.value)
            )
            # Pending rows not yet tried, or being sent right now (claimed,
            # no error yet); rows waiting for a retry after an error are not
            # counted, so tests of retries and dead rows do not wait for them.
            outbox = session.scalar(
                select(func.count()).where(
                    OutboxEntry.state == OutboxState.PENDING.value,
                    OutboxEntry.last_error.is_(None),
                )
            )
        return spool or 0, outbox or 0

    # -- reading results --------------------------------------------------

    def ticket_ids(self) -> list[int]:
        with self.app.sessions() as session:
            return list(session.scalars(select(Ticket.id).order_by(Ticket.id)))

    def ticket(self, ticket_id: int) -> dict[str, Any]:
        with self.app.sessions() as session:
            ticket = load_ticket(session, ticket_id)
            assert ticket is not None, f"ticket {ticket_id} not found"
            return ticket_detail(ticket)

    def spool_rows(self) -> list[SpoolEntry]:
        with self.app.sessions() as session:
            return list(session.scalars(select(SpoolEntry).order_by(SpoolEntry.id)))

    def outbox_rows(self) -> list[OutboxEntry]:
        with self.app.sessions() as session:
            return list(session.scalars(select(OutboxEntry).order_by(OutboxEntry.id)))

    def delivered(self) -> list[email.message.EmailMessage]:
        """Mail written to the outbox Maildir, oldest first."""
        folder = self.app.settings.outbox_maildir / "new"
        paths = sorted(folder.glob("mailgate-outbox-*"), key=lambda p: int(p.name.split("-")[2]))
        return [
            email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
            for path in paths
        ]
