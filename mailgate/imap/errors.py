"""Errors of reading IMAP mailboxes.

::

    MailboxFailure (mailgate.errors.MailgateError)
    ├── MailboxUnavailable      TemporaryError: connect failed, timed out or dropped
    ├── LoginRefused            PermanentError: the server refused the credentials
    ├── TokenCommandFailed      PermanentError: the OAuth2 token command failed
    ├── TLSFailed               PermanentError: TLS or the certificate check failed
    └── FolderUnusable          PermanentError: a folder is missing or refuses an action
    LeaseLost                   another process took over the mailbox

The reader retries all of them with backoff, because an operator may fix a
permanent cause (a password, a token, a folder) on the server side without
touching mailgate; the branch decides only how loudly it is logged.
"""

from __future__ import annotations

from mailgate.errors import MailgateError, PermanentError, TemporaryError


class MailboxFailure(MailgateError):
    """Base class of the errors that stop one session with a mailbox."""


class MailboxUnavailable(MailboxFailure, TemporaryError):
    """Raised when the server cannot be reached or the connection drops."""


class LoginRefused(MailboxFailure, PermanentError):
    """Raised when the server answers NO to LOGIN or AUTHENTICATE."""


class TokenCommandFailed(MailboxFailure, PermanentError):
    """Raised when the OAuth2 token command fails, times out or prints nothing."""


class TLSFailed(MailboxFailure, PermanentError):
    """Raised when TLS cannot be set up, e.g. the certificate does not verify."""


class FolderUnusable(MailboxFailure, PermanentError):
    """Raised when a configured folder cannot be selected or created."""


class LeaseLost(MailgateError):
    """Raised when another process holds the lease on a mailbox this one read."""
