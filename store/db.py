"""Engines and sessions for SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)

# How long a SQLite writer waits for another writer's lock.
SQLITE_BUSY_TIMEOUT_MS = 30_000


def _prepare_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection: Any, record: Any) -> None:
        # Let SQLAlchemy's "begin" event below start transactions, so every
        # one takes the write lock up front (BEGIN IMMEDIATE). A deferred
        # transaction that reads first and writes later fails at once with
        # SQLITE_BUSY under WAL when another writer got in between.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before we acknowledge mail.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.close()

    turn = _WriteTurn()

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        turn.take(connection.connection.info)
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(engine, "checkin")
    def on_checkin(dbapi_connection: Any, record: Any) -> None:
        if record is not None:
            turn.give_back(record.info)


class _WriteTurn:
    """Lets the threads of this process take SQLite's write lock one at a time.

    SQLite's busy handler polls: a writer that finds the lock taken sleeps
    1, 2, 5, 10 ... up to 100 ms between tries, so with several worker
    threads the lock stood free for half the time while they slept. Here a
    thread waits on a semaphore instead and is woken as soon as the holder's
    connection goes back to the pool, after its COMMIT or ROLLBACK. Writers
    in other processes (the command line) still meet the busy handler.
    """

    def __init__(self) -> None:
        self._semaphore = threading.Semaphore()

    def take(self, info: dict[str, Any]) -> None:
        """Wait for the turn, unless the connection with this pool ``info`` has it."""
        if info.get(_HOLDS_TURN):
            return
        # After the busy timeout BEGIN IMMEDIATE runs without the turn, and
        # SQLite's own wait decides, as it does for other processes.
        if self._semaphore.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            info[_HOLDS_TURN] = True
        else:
            log.warning("no turn at the SQLite write lock after %d ms", SQLITE_BUSY_TIMEOUT_MS)

    def give_back(self, info: dict[str, Any]) -> None:
        if info.pop(_HOLDS_TURN, False):
            self._semaphore.release()


# The key in a pool record's ``info`` while its connection has the turn.
_HOLDS_TURN = "mailgate_write_turn"


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, full sync and immediate transactions."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        engine = create_engine(url, **kwargs)
        _prepare_sqlite(engine)
        return engine
    if parsed.drivername == "postgresql":
        # Prefer psycopg 3, the driver we test with.
        url = parsed.set(drivername="postgresql+psycopg").render_as_string(
            hide_password=False
        )
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def is_sqlite(session_or_engine: Session | Engine) -> bool:
    bind = session_or_engine.get_bind() if isinstance(session_or_engine, Session) else session_or_engine
    return bind.dialect.name == "sqlite"
