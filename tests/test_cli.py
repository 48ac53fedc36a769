"""The command line, run as a separate process like an operator runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import SUPPORT
from tests.mail import customer_mail

EX_DATAERR = 65
EX_TEMPFAIL = 75


def mailgate(home: Path, *args: str, input: bytes | None = None, **env: str) -> subprocess.CompletedProcess:
    environment = {**os.environ, "MAILGATE_HOME": str(home), "MAILGATE_DOMAIN": "support.example.org", **env}
    return subprocess.run(
        [sys.executable, "-m", "mailgate", *args],
        input=input, capture_output=True, env=environment, timeout=120,
    )


@pytest.fixture
def home(tmp_path: Path, backend_env: dict[str, str]) -> Path:
    """A home with one queue and agent, on each backend (``backend_env``
    puts its settings in the environment that ``mailgate`` inherits)."""
    home = tmp_path / "home"
    assert mailgate(home, "queues", "add", "Support", "--address", SUPPORT).returncode == 0
    result = mailgate(home, "users", "add", "carol", "--email", "carol@example.org",
                      "--role", "frontline", "--queue", "Support")
    assert result.returncode == 0, result.stderr
    return home


def test_users_add_unknown_queue_fails(home: Path) -> None:
    result = mailgate(home, "users", "add", "dave", "--email", "dave@example.org", "--queue", "Sales")
    assert result.returncode == 1
    assert b"queue 'Sales' not found" in result.stderr


def test_queues_list_shows_agents(home: Path) -> None:
    result = mailgate(home, "queues", "list", "--json")
    assert result.returncode == 0
    [queue] = json.loads(result.stdout)
    assert queue["address"] == SUPPORT
    assert queue["agents"] == ["carol"]


def test_ingest_spools_from_stdin(home: Path) -> None:
    raw = customer_mail().as_bytes()
    result = mailgate(home, "ingest", "--sender", "ana@example.com", "--recipient", SUPPORT, input=raw)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == b"queued as 1"
    listing = json.loads(mailgate(home, "spool", "list", "--json").stdout)
    assert [(row["id"], row["state"], row["rcpt_tos"]) for row in listing] == [(1, "pending", [SUPPORT])]
    shown = mailgate(home, "spool", "show", "1", "--raw")
    assert shown.stdout == raw


def test_ingest_from_file(home: Path, tmp_path: Path) -> None:
    path = tmp_path / "mail.eml"
    path.write_bytes(customer_mail().as_bytes())
    result = mailgate(home, "ingest", str(path))
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("raw", [b"", b"\n\n", b" \r\n"])
def test_ingest_rejects_empty_input(home: Path, raw: bytes) -> None:
    result = mailgate(home, "ingest", input=raw)
    assert result.returncode == EX_DATAERR
    assert b"rejected" in result.stderr


def test_ingest_rejects_oversized_mail(home: Path) -> None:
    raw = customer_mail(body="y" * 5000).as_bytes()
    result = mailgate(home, "ingest", input=raw, MAILGATE_MAX_MESSAGE_BYTES="1000")
    assert result.returncode == EX_DATAERR
    assert b"size limit" in result.stderr


def test_ingest_tempfails_without_database(home: Path) -> None:
    raw = customer_mail().as_bytes()
    result = mailgate(
        home, "ingest", input=raw,
        MAILGATE_DATABASE_URL="postgresql://postgres@127.0.0.1:1/none?connect_timeout=2",
    )
    assert result.returncode == EX_TEMPFAIL, result.stderr


def test_bad_setting_names_itself(home: Path) -> None:
    result = mailgate(home, "tickets", "list", MAILGATE_SMTP_PORT="many")
    assert result.returncode == 1
    assert b"MAILGATE_SMTP_PORT" in result.stderr


def test_tickets_show_missing_ticket(home: Path) -> None:
    result = mailgate(home, "tickets", "show", "99", "--json")
    assert result.returncode == 1
    assert b"ticket 99 not found" in result.stderr


def test_spool_retry_refuses_pending_row(home: Path) -> None:
    mailgate(home, "ingest", input=customer_mail().as_bytes())
    result = mailgate(home, "spool", "retry", "1")
    assert result.returncode == 1
    assert b"not failed/rejected" in result.stderr


def test_ingest_keeps_unparseable_mail(home: Path) -> None:
    result = mailgate(home, "ingest", input=b"no header here, just words\n")
    assert result.returncode == 0, result.stderr
    [row] = json.loads(mailgate(home, "spool", "list", "--json").stdout)
    assert row["state"] == "pending"


def test_ingest_missing_file_is_noinput(home: Path, tmp_path: Path) -> None:
    result = mailgate(home, "ingest", str(tmp_path / "absent.eml"))
    assert result.returncode == 66
    assert b"cannot read" in result.stderr


def test_ingest_refuses_missing_database(tmp_path: Path) -> None:
    result = mailgate(tmp_path / "elsewhere", "ingest", input=customer_mail().as_bytes())
    assert result.returncode == EX_TEMPFAIL
    assert b"no mailgate database" in result.stderr
    assert not (tmp_path / "elsewhere" / "mailgate.db").exists()


def test_bad_setting_shows_example(home: Path) -> None:
    result = mailgate(home, "tickets", "list", MAILGATE_SMTP_PORT="many")
    assert b"for example MAILGATE_SMTP_PORT=2525" in result.stderr
