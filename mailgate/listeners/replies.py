"""The SMTP replies the listener sends, named (RFC 5321 codes, RFC 3463
enhanced status codes)."""

SENDER_OK = "250 2.1.0 Sender OK"
# RFC 6531: a non-ASCII address needs the SMTPUTF8 parameter on MAIL FROM.
NON_ASCII_ADDRESS = "553 5.6.7 Non-ASCII address requires SMTPUTF8"
RCPT_OK = "250 2.1.5 Recipient OK"
RCPT_NOT_SERVED = "550 5.1.1 <{address}>: recipient not served here"
RCPT_INVALID = "501 5.1.3 Invalid recipient address"
NOT_A_MESSAGE = "554 5.6.0 Not a message: {problem}"
SPOOL_UNAVAILABLE = "451 4.3.0 Spool unavailable, try again later"
QUEUED = "250 2.0.0 queued as {spool_id}"
# RFC 5321 3.8: a server that shuts down answers 421 and closes the session.
SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"
# RFC 5321 4.5.3.1.10 and RFC 3463 4.3.1: not enough disk to take the mail.
INSUFFICIENT_STORAGE_MAIL = "452 4.3.1 Insufficient system storage, try again later"
INSUFFICIENT_STORAGE_DATA = "451 4.3.1 Insufficient system storage, try again later"
# Sent on connect, then the connection is closed (RFC 5321 3.8: 421).
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try again later"
TOO_MANY_CONNECTIONS_FROM_PEER = "421 4.7.0 Too many connections from your address, try again later"
TOO_MANY_COMMANDS = "421 4.7.0 Too many commands in one session, closing"
SESSION_TOO_LONG = "421 4.4.2 Session time limit reached, closing"
# A line "." next to a bare LF is how SMTP smuggling hides a second mail.
BARE_LF_DOT = "550 5.5.2 Bare LF next to a line with a single dot; send CRLF line ends"
# After a DATA over the SIZE limit (RFC 1870) or with a line over the
# line length limit; the texts are aiosmtpd's own.
DATA_TOO_LARGE = "552 Error: Too much mail data"
DATA_LINE_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"
