"""Open an authenticated IMAP session for a mailbox, and probe a mailbox."""

from __future__ import annotations

import logging
import ssl
from dataclasses import dataclass

from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError, LoginError

from mailgate.imap.config import MailboxConfig
from mailgate.imap.errors import LoginRefused, MailboxUnavailable, TLSFailed
from mailgate.imap.oauth import fetch_access_token
from store.mailboxes import AuthMethod, Security

log = logging.getLogger(__name__)

# imaplib's protocol trace (which IMAPClient sends to this logger at DEBUG)
# contains whole mails; keep it out of ``mailgate -v`` output.
logging.getLogger("imapclient.imaplib").setLevel(logging.INFO)


def make_ssl_context(config: MailboxConfig) -> ssl.SSLContext:
    """Return a context that checks the certificate and host name, unless the
    mailbox turns checks off; ``ca_file`` replaces the system's CAs."""
    context = ssl.create_default_context(cafile=config.ca_file)
    if not config.verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def open_session(config: MailboxConfig, timeout_seconds: float) -> IMAPClient:
    """Connect, set up TLS as configured and log in; return the client.

    Raises MailboxUnavailable, TLSFailed, LoginRefused or TokenCommandFailed.
    """
    client = _connect(config, timeout_seconds)
    try:
        if config.security is Security.STARTTLS:
            _starttls(client, config)
        _login(client, config)
    except BaseException:
        _close_quietly(client)
        raise
    return client


def _connect(config: MailboxConfig, timeout_seconds: float) -> IMAPClient:
    implicit_tls = config.security is Security.TLS
    try:
        return IMAPClient(
            config.host, config.port, ssl=implicit_tls,
            ssl_context=make_ssl_context(config) if implicit_tls else None,
            timeout=timeout_seconds,
        )
    except ssl.SSLCertVerificationError as error:
        raise _certificate_failed(config, error) from None
    except ssl.SSLError as error:
        raise TLSFailed(f"TLS with {config.host}:{config.port} failed: {error}") from None
    except (OSError, IMAPClientError) as error:
        raise MailboxUnavailable(
            f"cannot connect to {config.host}:{config.port}: {error}"
        ) from None


def _starttls(client: IMAPClient, config: MailboxConfig) -> None:
    try:
        offered = b"STARTTLS" in client.capabilities()
        if not offered:
            raise TLSFailed(
                f"{config.host}:{config.port} does not offer STARTTLS; "
                "use --security tls with its TLS port (usually 993)"
            )
        client.starttls(make_ssl_context(config))
    except ssl.SSLCertVerificationError as error:
        raise _certificate_failed(config, error) from None
    except ssl.SSLError as error:
        raise TLSFailed(f"STARTTLS with {config.host}:{config.port} failed: {error}") from None
    except (OSError, IMAPClientError) as error:
        raise MailboxUnavailable(
            f"STARTTLS with {config.host}:{config.port} failed: {error}"
        ) from None


def _certificate_failed(config: MailboxConfig, error: ssl.SSLCertVerificationError) -> TLSFailed:
    return TLSFailed(
        f"certificate of {config.host}:{config.port} does not verify "
        f"({error.verify_message or error}); give its CA with --ca-file"
    )


def _login(client: IMAPClient, config: MailboxConfig) -> None:
    try:
        if config.auth is AuthMethod.XOAUTH2:
            token = fetch_access_token(config.token_command or "", mailbox=config.name)
            client.oauth2_login(config.username, token)
        else:
            client.login(config.username, config.password or "")
    except LoginError as error:
        raise LoginRefused(
            f"{config.host} refused {config.auth.value} login of {config.username}: {error}"
        ) from None
    except (OSError, IMAPClientError) as error:
        raise MailboxUnavailable(f"login to {config.host}:{config.port} failed: {error}") from None
    log.info("mailbox id=%s logged in to %s (%s)", config.id, config.server, config.auth.value)


def _close_quietly(client: IMAPClient) -> None:
    try:
        client.shutdown()
    except (OSError, IMAPClientError):
        pass


def close_session(client: IMAPClient) -> None:
    """Log out, or drop the connection when the server is gone."""
    try:
        client.logout()
    except (OSError, IMAPClientError):
        _close_quietly(client)


@dataclass(frozen=True)
class ProbeResult:
    """What ``mailgate mailboxes test`` reports."""

    capabilities: tuple[str, ...]
    folders: tuple[str, ...]
    missing_folders: tuple[str, ...]


def probe(config: MailboxConfig, timeout_seconds: float) -> ProbeResult:
    """Log in, list folders and capabilities, and log out; change nothing."""
    client = open_session(config, timeout_seconds)
    try:
        capabilities = tuple(sorted(item.decode("ascii", "replace") for item in client.capabilities()))
        folders = tuple(name for _flags, _delimiter, name in client.list_folders())
    except (OSError, IMAPClientError) as error:
        raise MailboxUnavailable(f"listing folders on {config.host} failed: {error}") from None
    finally:
        close_session(client)
    wanted = (*config.folders, *([config.move_to] if config.move_to else []))
    present = {_folder_key(name) for name in folders}
    missing = tuple(folder for folder in wanted if _folder_key(folder) not in present)
    return ProbeResult(capabilities, folders, missing)


def _folder_key(name: str) -> str:
    # RFC 3501 5.1: INBOX is case-insensitive; other names are not.
    return "INBOX" if name.upper() == "INBOX" else name
