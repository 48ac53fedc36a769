"""OAuth2 access tokens for XOAUTH2, obtained by running a configured command.

The command (for example ``oauth2l fetch --credentials creds.json
--scope https://mail.google.com/`` or a script of the operator's) is split
like a shell would split it and run without a shell. It must print the
access token on standard output and exit 0. It runs before each login, so
it should return a cached token while one is valid.
"""

from __future__ import annotations

import logging
import shlex
import subprocess

from mailgate.imap.errors import TokenCommandFailed

log = logging.getLogger(__name__)

TOKEN_COMMAND_TIMEOUT_SECONDS = 30.0
# Enough of the command's standard error to explain a failure in a log line.
STDERR_EXCERPT_CHARS = 300


def fetch_access_token(command: str, *, mailbox: str) -> str:
    """Run ``command`` and return the token it prints.

    Raises TokenCommandFailed when the command cannot be run, times out,
    exits non-zero or prints no token. The token is never logged.
    """
    try:
        argv = shlex.split(command)
    except ValueError as error:
        raise TokenCommandFailed(f"token command of mailbox {mailbox} is invalid: {error}") from None
    if not argv:
        raise TokenCommandFailed(f"token command of mailbox {mailbox} is empty")
    try:
        result = subprocess.run(
            argv, capture_output=True, timeout=TOKEN_COMMAND_TIMEOUT_SECONDS, check=False,
            stdin=subprocess.DEVNULL,
        )
    except subprocess.TimeoutExpired:
        raise TokenCommandFailed(
            f"token command {argv[0]} timed out after {TOKEN_COMMAND_TIMEOUT_SECONDS:.0f}s"
        ) from None
    except OSError as error:
        raise TokenCommandFailed(f"token command {argv[0]} cannot be run: {error}") from None
    if result.returncode != 0:
        stderr = result.stderr.decode("utf-8", "replace").strip()[-STDERR_EXCERPT_CHARS:]
        raise TokenCommandFailed(
            f"token command {argv[0]} exited with status {result.returncode}"
            + (f": {stderr}" if stderr else "")
        )
    token = result.stdout.decode("utf-8", "replace").strip()
    if not token or any(character.isspace() for character in token):
        raise TokenCommandFailed(
            f"token command {argv[0]} printed no token; it must print only the access token"
        )
    log.debug("mailbox %s: got an access token from %s", mailbox, argv[0])
    return token
