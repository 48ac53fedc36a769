"""Exceptions raised by mailgate.

::

    MailgateError
    ├── TemporaryError          retry later; nothing was lost
    │   ├── SpoolUnavailable        the spool could not be written
    │   └── TemporaryDeliveryError  a relay replied 4xx, timed out or refused the connection
    └── PermanentError          retrying cannot help
        ├── MessageRejected         a mail we can never accept (ingest exit 65)
        ├── PermanentDeliveryError  a relay answered 5xx
        └── InvalidRules            a routing rule or rule file failed validation
"""


class MailgateError(Exception):
    """Base class of mailgate's own errors."""


class TemporaryError(MailgateError):
    """A failure that a later retry may fix."""


class PermanentError(MailgateError):
    """A failure that a retry cannot fix."""


class SpoolUnavailable(TemporaryError):
    """Raised when a mail could not be committed to the spool."""


class TemporaryDeliveryError(TemporaryError):
    """Raised when a relay replies 4xx, times out or refuses the connection."""


class PermanentDeliveryError(PermanentError):
    """Raised when a relay replies 5xx to the sender or the recipient."""


class MessageRejected(PermanentError):
    """Raised for input that is not a mail we can accept, e.g. empty or too large."""


class InvalidRules(PermanentError):
    """Raised when routing rules fail validation; nothing was saved.

    ``problems`` lists every problem found, each naming its rule and field.
    """

    def __init__(self, problems: list) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(problem) for problem in self.problems))
