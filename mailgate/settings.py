"""Settings: every ``MAILGATE_*`` environment variable is read here.

Values come, in order of precedence, from the environment, from the TOML file
named by ``MAILGATE_CONFIG`` (default ``$MAILGATE_HOME/mailgate.toml`` when it
exists), and from the defaults below.
"""

from __future__ import annotations

import os
import tomllib
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

# RFC 1870 SIZE limit we advertise unless configured otherwise.
DEFAULT_MAX_MESSAGE_BYTES = 25 * 1024 * 1024
KIB = 1024
# Free disk the SMTP listener keeps, as a multiple of the size limit, when
# MAILGATE_MIN_FREE_DISK_BYTES is unset: room for one more mail in flight
# and for the database to grow by its copy.
DEFAULT_FREE_DISK_FACTOR = 1.5


class SettingsError(Exception):
    """Raised when a setting is invalid; the message names it and the fix."""


class RelaySettings(BaseModel):
    """An outbound SMTP relay parsed from ``MAILGATE_SMTP_RELAY``."""

    host: str
    port: int
    username: str | None = None
    password: str | None = Field(default=None, repr=False)
    starttls: bool = False
    implicit_tls: bool = False
    timeout_seconds: float = 30.0

    def __str__(self) -> str:
        # Never show the password.
        user = f"{self.username}@" if self.username else ""
        return f"{user}{self.host}:{self.port}"


def parse_relay_url(url: str) -> RelaySettings:
    """Parse ``smtp://user:password@host:587?starttls=true`` (or ``smtps://``)."""
    parts = urlsplit(url)
    if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
        raise SettingsError(
            f"MAILGATE_SMTP_RELAY is invalid: {parts.scheme or 'no'} scheme; "
            "expected a URL such as smtp://user:password@relay.example.com:587"
            "?starttls=true"
        )
    query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
    implicit_tls = parts.scheme == "smtps"
    return RelaySettings(
        host=parts.hostname,
        port=parts.port or (465 if implicit_tls else 25),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        starttls=query.get("starttls", "false").lower() in ("1", "true", "yes"),
        implicit_tls=implicit_tls,
        timeout_seconds=float(query.get("timeout", "30")),
    )


class Settings(BaseSettings):
    """The gateway's configuration, validated at start."""

    model_config = SettingsConfigDict(env_prefix="MAILGATE_", extra="ignore")

    home: Path = Path("var")
    database_url: str | None = None
    redis_url: str | None = None
    # Prefix of Dramatiq's Redis keys, so several gateways can share a Redis.
    redis_namespace: str = "mailgate"
    smtp_relay: str | None = Field(default=None, repr=False)
    domain: str = "localhost"
    # Signing keys for reply tokens as "kid:hexsecret" entries separated by
    # commas; the first one signs. Unset: a key generated under home.
    signing_keys: str | None = Field(default=None, repr=False)
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 2525
    http_host: str = "127.0.0.1"
    http_port: int = 8025
    # Reverse proxies whose X-Forwarded-For is believed, as uvicorn's
    # forwarded_allow_ips takes them ("127.0.0.1,10.0.0.2"); empty: none.
    http_trusted_proxies: str = ""
    # Key that signs web session cookies. Unset: a key generated under home.
    web_secret: str | None = Field(default=None, repr=False)
    # A web session ends this many hours after sign-in.
    web_session_hours: float = 12.0
    # Send the session cookie over HTTPS only; set it behind a TLS proxy.
    web_secure_cookies: bool = False
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    worker_threads: int = 4
    worker_processes: int = 1
    # On SIGTERM, how long SMTP sessions in DATA and busy workers get to
    # finish before the process stops anyway.
    shutdown_grace_seconds: float = 30.0
    ticket_tag_prefix: str = "#"
    reply_token_ttl_days: int = 90
    # Cap on acknowledgements to one sender per hour, against mail loops.
    ack_limit_per_hour: int = 5
    sweep_interval_seconds: float = 30.0
    outbox_max_attempts: int = 8
    # First retry delay of an outbox row; each later one doubles, up to an hour.
    outbox_backoff_seconds: float = 30.0
    # While a worker sends a row, others leave it alone this long; a worker
    # killed between the relay's 250 and its commit re-sends after it.
    outbox_send_lease_seconds: float = 300.0
    # Rows a worker thread leases in one transaction and then sends one by
    # one, and the most bytes of mail they may add up to (one row always).
    outbox_batch_size: int = 8
    outbox_batch_max_bytes: int = 8 * 1024 * 1024
    # Connections one process opens to the relay at the same time.
    relay_max_connections: int = 4
    # A folder of templates that replace the packaged ones of the same name.
    templates_dir: Path | None = None
    default_queue: str | None = None
    # Replaces the permissions of the roles it names, e.g. in the TOML file:
    # [role_permissions] frontline = ["ticket.create", "ticket.note"]
    role_permissions: dict[str, list[str]] = Field(default_factory=dict)

    # IMAP mailboxes (``mailgate mailboxes``). ``serve`` reads them unless
    # imap_in_serve is false, for a separate ``mailgate imap`` process.
    imap_in_serve: bool = True
    # How often folders are checked when the server has no IDLE, and how
    # often folders other than the first are checked when it has.
    imap_poll_interval_seconds: float = 60.0
    # RFC 2177 asks clients to end IDLE and start it again at least every
    # 29 minutes, because servers may log out a client idle for 30.
    imap_idle_seconds: float = 600.0
    imap_batch_size: int = 50
    imap_batch_max_bytes: int = 32 * 1024 * 1024
    imap_timeout_seconds: float = 60.0
    imap_reconnect_min_seconds: float = 1.0
    imap_reconnect_max_seconds: float = 300.0
    # A mailbox failing this long raises an alert to the admins.
    imap_alert_after_seconds: float = 900.0
    # How often the list of mailboxes is read again, so one added, changed
    # or removed with the CLI is picked up without a restart.
    imap_reload_seconds: float = 10.0

    # Sender authentication of agents' replies. Authentication-Results
    # fields are read only when their authserv-id is one of these (our own
    # MTA's); a comma-separated list in the environment.
    trusted_authserv_ids: Annotated[tuple[str, ...], NoDecode] = ()
    # Verify DKIM signatures ourselves (dkimpy, DNS lookups), for when no
    # trusted MTA adds Authentication-Results.
    verify_dkim: bool = False

    # Limits checked on the raw bytes before parsing (mailgate.parsing.limits).
    max_header_bytes: int = 256 * KIB
    max_header_field_bytes: int = 64 * KIB
    max_line_bytes: int = 64 * KIB
    max_mime_depth: int = 20
    max_mime_parts: int = 500
    max_attachments: int = 100
    max_attachment_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    # Each parse runs in a child process with these limits (mailgate.sandbox).
    parse_timeout_seconds: float = 30.0
    parse_memory_limit_bytes: int = 2 * 1024 * KIB * KIB

    # Automatic mail to one recipient about one ticket, against loops.
    auto_mail_cap_per_ticket_10_minutes: int = 5
    auto_mail_cap_per_ticket_day: int = 20
    # Hard bounces after which an address gets no more automatic mail.
    suppress_after_hard_bounces: int = 3

    # SMTP listener budgets.
    max_connections: int = 100
    max_connections_per_ip: int = 10
    max_commands_per_connection: int = 1000
    max_session_seconds: float = 900.0
    # Below this much free disk under home, MAIL gets 452 and DATA 451.
    # Unset: 1.5 times max_message_bytes.
    min_free_disk_bytes: int | None = None

    @field_validator(
        "max_message_bytes", "smtp_port", "http_port", "worker_threads", "relay_max_connections",
        "imap_batch_size", "imap_batch_max_bytes", "worker_processes",
        "outbox_batch_size", "outbox_batch_max_bytes",
        "max_header_bytes", "max_header_field_bytes", "max_line_bytes", "max_mime_depth",
        "max_mime_parts", "max_attachments", "max_attachment_bytes",
        "parse_memory_limit_bytes", "auto_mail_cap_per_ticket_10_minutes",
        "auto_mail_cap_per_ticket_day", "suppress_after_hard_bounces", "max_connections",
        "max_connections_per_ip", "max_commands_per_connection",
    )
    @classmethod
    def _positive(cls, value: int) -> int:
        if value <= 0:
            raise ValueError(f"must be a positive number, got {value}")
        return value

    @field_validator(
        "imap_poll_interval_seconds", "imap_idle_seconds", "imap_timeout_seconds",
        "imap_reconnect_min_seconds", "imap_reconnect_max_seconds", "imap_reload_seconds",
        "parse_timeout_seconds", "max_session_seconds",
    )
    @classmethod
    def _positive_seconds(cls, value: float) -> float:
        if value <= 0:
            raise ValueError(f"must be a positive number of seconds, got {value}")
        return value

    @field_validator("trusted_authserv_ids", mode="before")
    @classmethod
    def _authserv_ids(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else list(value or ())
        return tuple(str(item).strip().lower() for item in items if str(item).strip())

    @property
    def free_disk_margin_bytes(self) -> int:
        if self.min_free_disk_bytes is not None:
            return self.min_free_disk_bytes
        return int(self.max_message_bytes * DEFAULT_FREE_DISK_FACTOR)

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        value = value.strip().lower()
        if not value or "@" in value or " " in value:
            raise ValueError(f"{value!r} is not a domain; example: support.example.com")
        return value

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.home / 'mailgate.db').resolve()}"

    @cached_property
    def relay(self) -> RelaySettings | None:
        return parse_relay_url(self.smtp_relay) if self.smtp_relay else None

    @property
    def outbox_maildir(self) -> Path:
        return self.home / "outbox"

    @property
    def temporary_dir(self) -> Path:
        """Files of mail in progress: DATA being received, attachments
        being parsed. Under home, so the free disk margin covers them."""
        return self.home / "tmp"

    @property
    def is_embedded(self) -> bool:
        """True when Dramatiq runs on the in-process broker."""
        return not self.redis_url

    def summary(self) -> str:
        """Return a one-line description for start-up logs, without secrets."""
        database = self.resolved_database_url
        if "@" in database:
            database = database.split("://", 1)[0] + "://…@" + database.rsplit("@", 1)[1]
        broker = "in-process"
        if self.redis_url:
            redis = urlsplit(self.redis_url)
            broker = f"redis {redis.hostname}:{redis.port or 6379}{redis.path} "
            broker += f"namespace={self.redis_namespace}"
        outbound = f"relay {self.relay}" if self.relay else f"maildir {self.outbox_maildir}"
        return (
            f"home={self.home} database={database} broker={broker} "
            f"outbound={outbound} domain={self.domain}"
        )


def _file_values(environ: dict[str, str]) -> dict[str, Any]:
    home = Path(environ.get("MAILGATE_HOME", "var"))
    path = Path(environ.get("MAILGATE_CONFIG", home / "mailgate.toml"))
    if "MAILGATE_CONFIG" not in environ and not path.exists():
        return {}
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise SettingsError(f"MAILGATE_CONFIG names {path}, which does not exist") from None
    except tomllib.TOMLDecodeError as error:
        raise SettingsError(f"{path} is not valid TOML: {error}") from None


def _example(field: str) -> str:
    """Return ", for example NAME=VALUE" from the setting's default, if any."""
    info = Settings.model_fields.get(field)
    if info is None:
        return ""
    default = info.get_default(call_default_factory=True)
    if default in (None, "", (), [], {}):
        return ""
    if isinstance(default, bool):
        default = "true" if default else "false"
    return f", for example MAILGATE_{field.upper()}={default}"


def load_settings(**overrides: Any) -> Settings:
    """Load and validate settings; raise SettingsError naming the bad one."""
    environ = dict(os.environ)
    values = _file_values(environ)
    # Environment variables win over the file, so only pass file values that
    # the environment does not set.
    values = {
        key: value
        for key, value in values.items()
        if f"MAILGATE_{key.upper()}" not in environ
    }
    values.update({key: value for key, value in overrides.items() if value is not None})
    try:
        settings = Settings(**values)
    except ValidationError as error:
        first = error.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        name = "MAILGATE_" + field.upper() if field else "settings"
        raise SettingsError(
            f"{name} is invalid ({first.get('input')!r}): {first['msg']}{_example(field)}"
        ) from None
    if settings.smtp_relay:
        settings.relay  # noqa: B018 - validate the URL now, not at first send
    return settings
