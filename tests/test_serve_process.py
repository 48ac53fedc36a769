"""``mailgate serve`` as an operator runs it: start, take mail, stop."""

from __future__ import annotations

import json
import os
import smtplib
import socket
import subprocess
import sys
from email.message import EmailMessage
from pathlib import Path

import httpx

from tests.process import ServeProcess, descendants, free_port, still_running, wait_for


def mailgate(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"MAILGATE_HOME": str(home), "MAILGATE_DOMAIN": "localhost", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "mailgate", *args], capture_output=True, env=env, timeout=60
    )


def test_serve_takes_mail_and_stops(tmp_path: Path) -> None:
    home = tmp_path / "var"
    assert mailgate(home, "queues", "add", "Support", "--address", "support@localhost").returncode == 0
    assert mailgate(home, "users", "add", "agent", "--email", "agent@localhost",
                    "--queue", "Support").returncode == 0
    port = free_port()
    server = ServeProcess(home, port, MAILGATE_DOMAIN="localhost")
    server.wait_ready()
    assert any("mailgate ready: accepting SMTP on 127.0.0.1:" in line for line in server.lines)

    message = EmailMessage()
    message["From"] = "ana@example.com"
    message["To"] = "support@localhost"
    message["Subject"] = "Printer jammed"
    message.set_content("The printer on floor 3 is jammed.")
    with smtplib.SMTP("127.0.0.1", port) as client:
        assert client.send_message(message) == {}

    health = httpx.get(f"http://127.0.0.1:{server.http_port}/healthz", timeout=10)
    assert health.status_code == 200
    assert health.json()["status"] == "ok"

    outbox = home / "outbox" / "new"
    wait_for(lambda: outbox.is_dir() and len(list(outbox.iterdir())) == 2, timeout=60)
    # The parser's forkserver, its parser processes and multiprocessing's
    # resource tracker, started for the mail above.
    children = descendants(server.pid)
    assert children
    assert server.stop() == 0
    assert any("mailgate stopped" in line for line in server.lines)
    assert still_running(children, timeout=10) == []

    shown = mailgate(home, "tickets", "show", "1", "--json")
    assert shown.returncode == 0, shown.stderr
    ticket = json.loads(shown.stdout)
    assert ticket["subject"] == "Printer jammed"
    assert ticket["requester"]["email"] == "ana@example.com"
    assert ticket["messages"][0]["text"].strip() == "The printer on floor 3 is jammed."
    assert [entry["action"] for entry in ticket["history"]][:2] == ["ticket_created", "message_added"]


def test_serve_reports_taken_port(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "mailgate", "serve", "--smtp-port", str(port),
             "--http-port", str(free_port())],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, "MAILGATE_HOME": str(tmp_path / "home")},
        )
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("Error: mailgate serve failed:")
    assert "address already in use" in last_line
    assert str(port) in last_line
    assert "Traceback" not in result.stderr
