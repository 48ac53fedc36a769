"""Logging in to IMAP mailboxes: XOAUTH2 against Dovecot's OAuth2 passdb,
the token command, and TLS with certificate checks."""

from __future__ import annotations

import contextlib
import io
import json
import shlex
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mailgate.cli import main
from mailgate.imap.errors import TokenCommandFailed
from mailgate.imap.oauth import fetch_access_token
from store.mailboxes import AuthMethod, MailboxSpec, Security, add_mailbox, list_mailboxes
from tests.dovecot import Dovecot, dovecot, dovecot_factory, imap_user  # noqa: F401
from tests.harness import Gateway
from tests.imap_support import IMAP_TEST_SETTINGS, make_mail, reading
from tests.process import wait_for

VALID_TOKEN = "ya29.a0-valid-access-token"


class TokenInfo(BaseHTTPRequestHandler):
    """An OAuth2 token introspection endpoint as Dovecot's oauth2 passdb
    calls it: GET tokeninfo_url + token, with the token as a Bearer too."""

    requests: list[tuple[str, str]] = []

    def do_GET(self) -> None:
        self.requests.append((self.path, self.headers.get("Authorization", "")))
        if self.path.endswith("=" + VALID_TOKEN):
            status, body = 200, {"username": self.server.username, "active": "true"}
        else:
            status, body = 401, {"error": "invalid_token"}
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        return None


@pytest.fixture
def token_server(imap_user: str) -> Iterator[ThreadingHTTPServer]:
    TokenInfo.requests = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), TokenInfo)
    server.username = imap_user  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def printing(text: str, status: int = 0) -> str:
    """Return a token command that prints ``text`` and exits with ``status``."""
    script = f"import sys; print({text!r}); sys.exit({status})"
    return shlex.join([sys.executable, "-c", script])


def test_xoauth2_login_against_dovecot(
    tmp_path: Path, dovecot_factory, imap_user: str, token_server: ThreadingHTTPServer
) -> None:
    port = token_server.server_address[1]
    server: Dovecot = dovecot_factory(
        oauth2_tokeninfo_url=f"http://127.0.0.1:{port}/tokeninfo?access_token="
    )
    server_mail = make_mail("Sent to an OAuth2 mailbox", index=1)
    with Gateway.start(home=tmp_path / "gateway", **IMAP_TEST_SETTINGS) as gateway:
        gateway.add_queue()
        for name, command in [
            ("Valid", printing(VALID_TOKEN)),
            ("Expired", printing("ya29.expired-token")),
            ("Broken", printing("", status=3)),
        ]:
            add_mailbox(gateway.app.sessions, MailboxSpec(
                name=name, host="127.0.0.1", port=server.port, username=imap_user,
                queue_name="Support", security=Security.NONE, auth=AuthMethod.XOAUTH2,
                token_command=command,
            ))
        _append_with_token(server, imap_user, server_mail, token_server)
        with reading(gateway):
            wait_for(lambda: len(gateway.ticket_ids()) == 1, timeout=30)
            wait_for(lambda: all(row.last_error or row.last_ok_at
                                 for row in list_mailboxes(gateway.app.sessions)), timeout=30)
            gateway.wait_idle()
        states = {row.name: row for row in list_mailboxes(gateway.app.sessions)}
        assert gateway.ticket(gateway.ticket_ids()[0])["subject"] == "Sent to an OAuth2 mailbox"

    assert states["Valid"].failing_since is None
    assert states["Expired"].failing_since is not None
    assert states["Expired"].last_error.startswith(
        f"127.0.0.1 refused xoauth2 login of {imap_user}: "
    )
    assert states["Broken"].last_error == f"token command {sys.executable} exited with status 3"
    bearers = {header for _path, header in TokenInfo.requests}
    assert f"Bearer {VALID_TOKEN}" in bearers
    assert "Bearer ya29.expired-token" in bearers
    log = server.log_text()
    assert f"Login: user=<{imap_user}>, method=XOAUTH2" in log


def _append_with_token(
    server: Dovecot, user: str, raw: bytes, token_server: ThreadingHTTPServer
) -> None:
    from imapclient import IMAPClient

    with IMAPClient("127.0.0.1", server.port, ssl=False, timeout=30) as client:
        client.oauth2_login(user, VALID_TOKEN)
        client.append("INBOX", raw)


def test_token_command_failures_named() -> None:
    with pytest.raises(TokenCommandFailed, match="printed no token"):
        fetch_access_token(printing("two words"), mailbox="Support")
    with pytest.raises(TokenCommandFailed, match="printed no token"):
        fetch_access_token(printing(""), mailbox="Support")
    with pytest.raises(TokenCommandFailed, match="cannot be run"):
        fetch_access_token("/nonexistent/token-helper --json", mailbox="Support")
    with pytest.raises(TokenCommandFailed, match="is invalid"):
        fetch_access_token('helper "unclosed', mailbox="Support")
    failing = shlex.join([sys.executable, "-c", "import sys; sys.stderr.write('expired refresh token'); sys.exit(2)"])
    with pytest.raises(TokenCommandFailed, match="exited with status 2: expired refresh token"):
        fetch_access_token(failing, mailbox="Support")
    assert fetch_access_token(printing(f"  {VALID_TOKEN}\n"), mailbox="Support") == VALID_TOKEN


def run_cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(argv)
    return status, out.getvalue(), err.getvalue()


@pytest.mark.parametrize(
    ("security", "options", "verified"),
    [
        ("starttls", ["--ca-file", "{cert}"], True),
        ("tls", ["--ca-file", "{cert}"], True),
        ("starttls", [], False),
        ("tls", [], False),
        ("tls", ["--no-verify-certificate"], True),
    ],
)
def test_tls_checks_server_certificate(
    dovecot: Dovecot, imap_user: str, security: str, options: list[str], verified: bool
) -> None:
    assert run_cli(["queues", "add", "Support", "--address", "support@example.org"])[0] == 0
    port = dovecot.tls_port if security == "tls" else dovecot.port
    status, out, err = run_cli([
        "mailboxes", "add", "Support", "--host", "127.0.0.1", "--port", str(port),
        "--security", security, "--username", imap_user, "--password", "secret",
        "--queue", "Support",
        *[option.format(cert=dovecot.certificate) for option in options],
    ])
    assert status == 0, err

    status, out, err = run_cli(["mailboxes", "test", "Support"])

    if verified:
        assert status == 0, err
        assert out.splitlines()[0] == (
            f"mailbox Support: logged in to {imap_user}@127.0.0.1:{port} (password)"
        )
        assert "IDLE" in out.splitlines()[1].split()
        assert out.splitlines()[2] == "folders: INBOX"
    else:
        assert status == 1
        assert f"certificate of 127.0.0.1:{port} does not verify" in err
        assert "self-signed certificate" in err
        assert "give its CA with --ca-file" in err
