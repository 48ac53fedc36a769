"""A mailbox's configuration as the reader uses it, detached from the ORM."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy.orm import Session, sessionmaker

from store.mailboxes import AfterSpool, AuthMethod, Mailbox, Security, list_mailboxes

# RFC 8314 names 993 for IMAP over implicit TLS; RFC 3501 names 143.
DEFAULT_PORTS = {Security.TLS: 993, Security.STARTTLS: 143, Security.NONE: 143}


@dataclass(frozen=True)
class MailboxConfig:
    """Everything needed to read one mailbox; compared to notice changes."""

    id: int
    name: str
    host: str
    port: int
    security: Security
    verify_certificate: bool
    ca_file: str | None
    username: str
    auth: AuthMethod
    password: str | None = field(repr=False)
    token_command: str | None
    folders: tuple[str, ...]
    queue_address: str
    after: AfterSpool
    move_to: str | None

    @classmethod
    def from_row(cls, row: Mailbox) -> MailboxConfig:
        return cls(
            id=row.id,
            name=row.name,
            host=row.host,
            port=row.port,
            security=Security(row.security),
            verify_certificate=row.verify_certificate,
            ca_file=row.ca_file,
            username=row.username,
            auth=AuthMethod(row.auth),
            password=row.password,
            token_command=row.token_command,
            folders=tuple(row.folders),
            queue_address=row.queue.address,
            after=AfterSpool(row.after),
            move_to=row.move_to,
        )

    @property
    def server(self) -> str:
        """``user@host:port``, for logs; never the password."""
        return f"{self.username}@{self.host}:{self.port}"


def load_enabled_configs(sessions: sessionmaker[Session]) -> list[MailboxConfig]:
    return [MailboxConfig.from_row(row) for row in list_mailboxes(sessions, enabled_only=True)]
