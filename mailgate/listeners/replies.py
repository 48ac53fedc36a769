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
