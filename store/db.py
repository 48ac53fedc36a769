"""Engines and sessions for SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import sqlite3
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

    @event.listens_for(engine, "connect")
    def on_connect_turn(dbapi_connection: Any, record: Any) -> None:
        dbapi_connection.write_turn = turn

    @event.listens_for(engine, "begin")
    def on_begin(connection: Any) -> None:
        turn.take(connection.connection.dbapi_connection)
        connection.exec_driver_sql("BEGIN IMMEDIATE")


class _WriteTurn:
    """Lets the threads of this process take SQLite's write lock one at a time.

    SQLite's busy handler polls: a writer that finds the lock taken sleeps
    1, 2, 5, 10 ... up to 100 ms between tries, so with several worker
    threads the lock stood free for half the time while they slept. Here a
    thread waits on a semaphore instead and is woken as soon as the holder's
    COMMIT or ROLLBACK has returned. Writers in other processes (the
    command line) still meet the busy handler.
    """

    def __init__(self) -> None:
        self._semaphore = threading.Semaphore()

    def take(self, connection: TurnConnection) -> None:
        """Wait for the turn, unless ``connection`` has it already."""
        if connection.has_turn:
            return
        # After the busy timeout BEGIN IMMEDIATE runs without the turn, and
        # SQLite's own wait decides, as it does for other processes.
        if self._semaphore.acquire(timeout=SQLITE_BUSY_TIMEOUT_MS / 1000):
            connection.has_turn = True
        else:
            log.warning("no turn at the SQLite write lock after %d ms", SQLITE_BUSY_TIMEOUT_MS)

    def give_back(self, connection: TurnConnection) -> None:
        if connection.has_turn:
            connection.has_turn = False
            self._semaphore.release()


class TurnConnection(sqlite3.Connection):
    """A SQLite connection that gives back its write turn once its
    transaction ends, so a connection kept open between transactions
    does not keep the other threads waiting."""

    write_turn: _WriteTurn | None = None
    has_turn = False

    def commit(self) -> None:
        try:
            super().commit()
        finally:
            self._end_turn()

    def rollback(self) -> None:
        try:
            super().rollback()
        finally:
            self._end_turn()

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._end_turn()

    def _end_turn(self) -> None:
        if self.write_turn is not None:
            self.write_turn.give_back(self)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine; SQLite gets WAL, full sync and immediate transactions."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = dict(kwargs.get("connect_args", {}))
        connect_args.setdefault("timeout", SQLITE_BUSY_TIMEOUT_MS / 1000)
        connect_args["factory"] = TurnConnection
        kwargs["connect_args"] = connect_args
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
