"""``mailgate mailboxes`` and ``mailgate imap``, and mailboxes read by the
``serve`` and ``imap`` processes side by side."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from sqlalchemy import func, select

from mailgate.cli import main
from store.db import make_engine
from store.models import Ticket
from tests.dovecot import Dovecot, dovecot, imap_user  # noqa: F401
from tests.imap_support import make_mail
from tests.process import ServeProcess, free_port, wait_for


def run_cli(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            status = main(argv)
    finally:
        sys.stdin = old_stdin
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def queue() -> None:
    assert run_cli(["queues", "add", "Support", "--address", "support@example.org"])[0] == 0


ADD = ["mailboxes", "add", "Support", "--host", "imap.example.org", "--username",
       "support@example.org", "--queue", "Support"]


def test_mailboxes_add_list_remove(queue: None) -> None:
    status, out, err = run_cli([*ADD, "--after", "move", "--move-to", "Processed",
                                "--folder", "INBOX", "--folder", "Urgent"], stdin="hunter2\n")
    assert status == 0, err
    assert out.splitlines()[-1] == (
        "mailbox 1 Support support@example.org@imap.example.org:993 -> queue Support, after: move"
    )

    status, out, _ = run_cli(["mailboxes", "list", "--json"])
    [row] = json.loads(out)
    assert row["name"] == "Support"
    assert row["port"] == 993
    assert row["security"] == "tls"
    assert row["verify_certificate"] is True
    assert row["folders"] == ["INBOX", "Urgent"]
    assert row["after"] == "move"
    assert row["move_to"] == "Processed"
    assert row["state"] == "not read yet"
    assert row["reader"] is None
    assert "password" not in row
    assert "hunter2" not in out

    status, out, _ = run_cli(["mailboxes", "list"])
    assert "hunter2" not in out
    assert out.split()[:3] == ["1", "Support", "support@example.org@imap.example.org:993"]

    assert run_cli(["mailboxes", "remove", "Support"])[:2] == (0, "mailbox Support removed\n")
    assert json.loads(run_cli(["mailboxes", "list", "--json"])[1]) == []
    status, _, err = run_cli(["mailboxes", "remove", "Support"])
    assert status == 1
    assert "mailbox 'Support' not found" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--after", "move"], "--after move needs --move-to FOLDER"),
        (["--move-to", "Done"], "--move-to is only used with --after move"),
        (["--after", "move", "--move-to", "INBOX"], "--move-to INBOX is also a folder to read"),
        (["--auth", "xoauth2"], "--auth xoauth2 needs --token-command"),
        (["--port", "0"], "--port 0 is invalid"),
    ],
)
def test_mailboxes_add_rejects_invalid(queue: None, extra: list[str], message: str) -> None:
    status, _, err = run_cli([*ADD, "--password", "secret", *extra])
    assert status == 1
    assert message in err
    assert json.loads(run_cli(["mailboxes", "list", "--json"])[1]) == []


def test_mailboxes_add_unknown_queue() -> None:
    status, _, err = run_cli([*ADD, "--password", "secret"])
    assert status == 1
    assert "queue 'Support' not found; add it with 'mailgate queues add Support" in err


def test_mailboxes_add_duplicate_name(queue: None) -> None:
    assert run_cli([*ADD, "--password", "secret"])[0] == 0
    status, _, err = run_cli([*ADD, "--password", "secret"])
    assert status == 1
    assert "a mailbox named 'Support' exists already" in err


def test_mailboxes_test_reports_login_failure(dovecot: Dovecot, imap_user: str, queue: None) -> None:
    assert run_cli([
        "mailboxes", "add", "Support", "--host", "127.0.0.1", "--port", str(dovecot.port),
        "--security", "none", "--username", imap_user, "--password", "wrong",
        "--queue", "Support", "--folder", "INBOX", "--folder", "Missing",
    ])[0] == 0
    status, _, err = run_cli(["mailboxes", "test", "Support"])
    assert status == 1
    assert f"mailbox Support: 127.0.0.1 refused password login of {imap_user}" in err

    assert run_cli(["mailboxes", "remove", "Support"])[0] == 0
    assert run_cli([
        "mailboxes", "add", "Support", "--host", "127.0.0.1", "--port", str(dovecot.port),
        "--security", "none", "--username", imap_user, "--password", "secret",
        "--queue", "Support", "--folder", "INBOX", "--folder", "Missing",
    ])[0] == 0
    status, out, err = run_cli(["mailboxes", "test", "Support"])
    assert status == 1
    assert out.splitlines()[2] == "folders: INBOX"
    assert "folders to read not found on the server: Missing" in err


class ImapProcess:
    """``mailgate imap`` as a child process with its log lines collected."""

    def __init__(self, home: Path, **env: str) -> None:
        environment = {**os.environ, "MAILGATE_HOME": str(home), **env}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "mailgate", "imap"],
            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=environment,
        )
        self.lines: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for raw in self.process.stderr:
            self.lines.append(raw.decode("utf-8", "replace").rstrip())

    def stop(self) -> int:
        self.process.terminate()
        return self.process.wait(60)


def test_serve_and_imap_share_mailbox(tmp_path: Path, dovecot: Dovecot, imap_user: str) -> None:
    home = tmp_path / "var"
    env = {
        "MAILGATE_HOME": str(home), "MAILGATE_DOMAIN": "support.example.org",
        "MAILGATE_IMAP_RELOAD_SECONDS": "0.5", "MAILGATE_SWEEP_INTERVAL_SECONDS": "1",
    }
    cli = [sys.executable, "-m", "mailgate"]
    for argv in (
        ["queues", "add", "Support", "--address", "support@support.example.org"],
        ["mailboxes", "add", "Support", "--host", "127.0.0.1", "--port", str(dovecot.port),
         "--security", "none", "--username", imap_user, "--password", "secret",
         "--queue", "Support", "--after", "delete"],
    ):
        done = subprocess.run([*cli, *argv], capture_output=True, env={**os.environ, **env})
        assert done.returncode == 0, done.stderr
    mails = [make_mail(f"Side by side {n}", index=n) for n in range(5)]
    dovecot.append(imap_user, "INBOX", mails[:2])

    serve = ServeProcess(home, free_port(), **env)
    imap = ImapProcess(home, **env)
    try:
        serve.wait_ready()
        wait_for(lambda: any("mailgate imap ready" in line for line in imap.lines), timeout=60)
        dovecot.append(imap_user, "INBOX", mails[2:])
        wait_for(lambda: _ticket_count(home) == 5, timeout=60)
        wait_for(lambda: not dovecot.folder_flags(imap_user, "INBOX"), timeout=30)
    finally:
        serve_status = serve.stop()
        imap_status = imap.stop()

    assert serve_status == 0
    assert imap_status == 0
    spool = json.loads(subprocess.run(
        [*cli, "spool", "list", "--json"], capture_output=True, env={**os.environ, **env},
    ).stdout)
    assert len(spool) == 5
    assert {row["source"] for row in spool} == {"imap"}
    readers = [lines for lines in (serve.lines, imap.lines)
               if any("logged in to" in line for line in lines)]
    waiting = [lines for lines in (serve.lines, imap.lines)
               if any("waiting for its lease" in line for line in lines)]
    assert len(readers) == 1
    assert len(waiting) == 1
    assert any("mailgate imap stopped" in line for line in imap.lines)


def _ticket_count(home: Path) -> int:
    engine = make_engine(f"sqlite:///{home / 'mailgate.db'}")
    try:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(Ticket)) or 0
    finally:
        engine.dispose()
