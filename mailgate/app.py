"""The application context: settings, database, templates, keys, sender."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from jinja2 import Environment
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from mailgate.keys import load_signing_keys
from mailgate.outbound import Sender, make_sender
from mailgate.outbound.rendering import make_environment
from mailgate.settings import Settings, SettingsError
from mailgate.tokens import SigningKey, find_token
from store import migrate
from store.db import is_sqlite, make_engine, make_sessionmaker
from store.directory import normalize_address, queue_addresses
from store.permissions import configure_roles, reset_roles

log = logging.getLogger(__name__)

# How long the set of served addresses is cached for RCPT checks, so a queue
# added from the CLI is served within this time without a restart.
SERVED_ADDRESSES_TTL_SECONDS = 2.0


class SchemaOutOfDate(RuntimeError):
    """Raised when the database schema is older than this code."""


class DatabaseMissing(RuntimeError):
    """Raised when a command that needs an existing database finds none."""


@dataclass
class App:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    templates: Environment
    signing_keys: list[SigningKey]
    sender: Sender
    # Set by a process that runs workers, so rows written outside the
    # pipeline (CLI, API) are sent at once; the sweeper sends them otherwise.
    enqueue_outbox: Callable[[int], None] | None = None
    # (time.monotonic() when loaded, addresses); never loaded at first.
    _served: tuple[float, frozenset[str]] = (float("-inf"), frozenset())
    _served_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def create(
        cls, settings: Settings, *, migrate_embedded: bool = True, must_exist: bool = False
    ) -> App:
        """Open the database and check its schema.

        SQLite databases are upgraded in place; any other database must be
        upgraded with ``mailgate db upgrade`` first. With ``must_exist`` a
        missing SQLite file is an error instead of a new, empty database,
        so a command run from the wrong folder does not spool mail where no
        server reads it.
        """
        database = make_url(settings.resolved_database_url)
        if must_exist and database.get_backend_name() == "sqlite":
            path = Path(database.database or "")
            if not path.is_file():
                raise DatabaseMissing(
                    f"no mailgate database at {path}; set MAILGATE_HOME (now {settings.home}) "
                    "or MAILGATE_DATABASE_URL, or create it with 'mailgate db upgrade'"
                )
        settings.home.mkdir(parents=True, exist_ok=True)
        reset_roles()
        try:
            configure_roles(settings.role_permissions)
        except ValueError as error:
            raise SettingsError(f"MAILGATE_ROLE_PERMISSIONS is invalid: {error}") from None
        engine = make_engine(settings.resolved_database_url)
        if not migrate.is_up_to_date(engine):
            if is_sqlite(engine) and migrate_embedded:
                migrate.upgrade(engine)
            else:
                raise SchemaOutOfDate(
                    f"database schema is at {migrate.current_revision(engine)}, "
                    f"this mailgate needs {migrate.head_revision()}; "
                    "run 'mailgate db upgrade'"
                )
        return cls(
            settings=settings,
            engine=engine,
            sessions=make_sessionmaker(engine),
            templates=make_environment(settings.templates_dir),
            signing_keys=load_signing_keys(settings),
            sender=make_sender(settings),
        )

    @property
    def keys_by_id(self) -> dict[str, SigningKey]:
        return {key.key_id: key for key in self.signing_keys}

    def served_addresses(self) -> frozenset[str]:
        with self._served_lock:
            loaded_at, addresses = self._served
            if time.monotonic() - loaded_at > SERVED_ADDRESSES_TTL_SECONDS:
                with self.sessions() as session:
                    addresses = frozenset(queue_addresses(session))
                self._served = (time.monotonic(), addresses)
            return addresses

    def serves(self, address: str) -> bool:
        """True when we take mail for ``address``: a queue or a reply address.

        Everything else is rejected at RCPT, so we are never an open relay.
        Do not call this inside a write transaction on SQLite: it may open
        a second connection, which would wait for the first one's lock.
        """
        return is_served(address, self.served_addresses(), self.settings.domain)

    def serves_from_cache(self, address: str) -> bool | None:
        """Return ``serves(address)`` from the cached served addresses, or
        None when the cache is older than its TTL and needs a database read.

        It reads no database and takes no lock, so the SMTP listener calls
        it on its event loop.
        """
        loaded_at, addresses = self._served
        if time.monotonic() - loaded_at > SERVED_ADDRESSES_TTL_SECONDS:
            return None
        return is_served(address, addresses, self.settings.domain)

    def outbox_committed(self, outbox_ids: list[int]) -> None:
        """Hand committed outbox rows to the workers, if this process has them."""
        if self.enqueue_outbox is not None:
            for outbox_id in outbox_ids:
                self.enqueue_outbox(outbox_id)

    def close(self) -> None:
        self.sender.close()
        self.engine.dispose()


def is_served(address: str, queue_addresses: frozenset[str] | set[str], domain: str) -> bool:
    """True for a queue address, the queue address with a ``+tag``, or a
    reply or bounce address at our own ``domain``."""
    address = normalize_address(address)
    local, _, address_domain = address.rpartition("@")
    if not local:
        return False
    if address in queue_addresses:
        return True
    base, plus, tag = local.partition("+")
    if plus and f"{base}@{address_domain}" in queue_addresses:
        return True
    if not plus or address_domain != domain:
        return False
    # At our own domain only reply addresses (a token) and bounce addresses
    # (bounces+<outbox id>) exist.
    return find_token(tag) is not None or (base == "bounces" and tag.isdigit())
