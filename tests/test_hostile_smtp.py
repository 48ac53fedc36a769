"""The SMTP listener's budgets: connections, commands, session time, free
disk, and its handling of bare line ends."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from mailgate.listeners.data import normalize_line_ends
from tests.harness import SUPPORT, Gateway

MAIL = (
    b"From: ana@example.com\r\nTo: support@support.example.org\r\n"
    b"Subject: hello\r\nMessage-ID: <{number}@example.com>\r\n\r\nbody\r\n"
)


class Client:
    """A raw SMTP client that sends exact bytes and reads one reply at a time."""

    def __init__(self, port: int) -> None:
        self.socket = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.file = self.socket.makefile("rb")

    def reply(self) -> str:
        lines = []
        while True:
            line = self.file.readline().decode()
            lines.append(line.rstrip("\r\n"))
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    def command(self, line: bytes) -> str:
        self.socket.sendall(line + b"\r\n")
        return self.reply()

    def send_mail(self, data: bytes) -> str:
        """MAIL, RCPT and DATA with ``data`` sent exactly, then the final reply."""
        assert self.command(b"MAIL FROM:<ana@example.com>").startswith("250")
        assert self.command(f"RCPT TO:<{SUPPORT}>".encode()).startswith("250")
        assert self.command(b"DATA").startswith("354")
        self.socket.sendall(data + b".\r\n")
        return self.reply()

    def closed(self) -> bool:
        return self.file.read() == b""

    def close(self) -> None:
        self.file.close()
        self.socket.close()


@pytest.fixture
def start_desk(tmp_path: Path) -> Iterator:
    with ExitStack() as stack:

        def start(**settings: object) -> Gateway:
            desk = stack.enter_context(Gateway.start(home=tmp_path / "desk", **settings))
            desk.add_queue()
            return desk

        yield start


def connect(desk: Gateway) -> tuple[Client, str]:
    client = Client(desk.port)
    return client, client.reply()


def test_per_address_connection_limit(start_desk) -> None:
    desk = start_desk(max_connections_per_ip=2)
    first, greeting = connect(desk)
    assert greeting.startswith("220")
    second, greeting = connect(desk)
    assert greeting.startswith("220")
    third, greeting = connect(desk)
    assert greeting.startswith("421 4.7.0 Too many connections from your address")
    assert third.closed()
    first.command(b"QUIT")
    first.close()
    # The server counts the connection as closed once it sees it close.
    for _ in range(50):
        fourth, greeting = connect(desk)
        if greeting.startswith("220"):
            break
        fourth.close()
        time.sleep(0.1)
    assert greeting.startswith("220")
    for client in (second, fourth):
        client.close()


def test_total_connection_limit(start_desk) -> None:
    desk = start_desk(max_connections=3, max_connections_per_ip=10)
    clients = [connect(desk) for _ in range(3)]
    assert all(greeting.startswith("220") for _, greeting in clients)
    extra, greeting = connect(desk)
    assert greeting.startswith("421 4.7.0 Too many connections, try again later")
    assert extra.closed()
    for client, _ in clients:
        client.close()


def test_command_budget_closes_session(start_desk) -> None:
    desk = start_desk(max_commands_per_connection=5)
    client, _ = connect(desk)
    assert client.command(b"EHLO client.example.com").startswith("250")
    for _ in range(4):
        assert client.command(b"NOOP").startswith("250")
    assert client.command(b"NOOP").startswith("421 4.7.0 Too many commands")
    assert client.closed()


def test_help_survives_command_budget(start_desk) -> None:
    desk = start_desk()
    client, _ = connect(desk)
    assert client.command(b"HELP MAIL").startswith("250 Syntax: MAIL FROM:")
    client.close()


def test_session_time_limit(start_desk) -> None:
    desk = start_desk(max_session_seconds=1.0)
    client, _ = connect(desk)
    assert client.command(b"EHLO client.example.com").startswith("250")
    time.sleep(1.5)
    assert client.reply().startswith("421 4.4.2 Session time limit reached")
    assert client.closed()


def test_low_disk_temporary_failures(start_desk) -> None:
    desk = start_desk()
    client, _ = connect(desk)
    client.command(b"EHLO client.example.com")
    settings = desk.app.settings
    settings.min_free_disk_bytes = 10**18
    assert client.command(b"MAIL FROM:<ana@example.com>").startswith("452 4.3.1")
    settings.min_free_disk_bytes = 0
    assert client.command(b"MAIL FROM:<ana@example.com>").startswith("250")
    assert client.command(f"RCPT TO:<{SUPPORT}>".encode()).startswith("250")
    assert client.command(b"DATA").startswith("354")
    settings.min_free_disk_bytes = 10**18
    client.socket.sendall(MAIL.replace(b"{number}", b"1") + b".\r\n")
    assert client.reply().startswith("451 4.3.1")
    client.close()
    assert desk.spool_rows() == []


@pytest.mark.parametrize(
    ("data", "normalised", "bare"),
    [
        (b"a\r\nb\r\n", b"a\r\nb\r\n", 0),
        (b"a\nb\n", b"a\r\nb\r\n", 2),
        (b"a\rb\r\n", b"a\r\nb\r\n", 1),
        (b"a\n..b\r\n", b"a\r\n.b\r\n", 1),
        (b"a\n\nb\r\n", b"a\r\n\r\nb\r\n", 2),
    ],
)
def test_bare_line_ends_normalised(data: bytes, normalised: bytes, bare: int) -> None:
    assert normalize_line_ends(data) == (normalised, bare)


@pytest.mark.parametrize(
    "smuggled",
    [b"first\r\n\n.\r\nsecond\r\n", b"first\r\n.\nsecond\r\n", b"first\n.\nsecond\r\n"],
    ids=["lf-dot-crlf", "crlf-dot-lf", "lf-dot-lf"],
)
def test_smuggling_dot_line_rejected(start_desk, smuggled: bytes) -> None:
    desk = start_desk()
    client, _ = connect(desk)
    client.command(b"EHLO client.example.com")
    head = MAIL.replace(b"{number}", b"2").split(b"\r\n\r\n")[0] + b"\r\n\r\n"
    assert client.send_mail(head + smuggled).startswith("550 5.5.2")
    # The next mail on the same connection is judged on its own bytes.
    assert client.send_mail(MAIL.replace(b"{number}", b"3")).startswith("250")
    client.close()
    desk.wait_idle()
    rows = desk.spool_rows()
    assert len(rows) == 1
    assert b"<3@example.com>" in rows[0].raw


def test_bare_lf_mail_kept_with_crlf(start_desk) -> None:
    desk = start_desk()
    client, _ = connect(desk)
    client.command(b"EHLO client.example.com")
    data = MAIL.replace(b"{number}", b"4").replace(b"\r\n", b"\n") + b"..dot line\n\r\n"
    assert client.send_mail(data).startswith("250")
    client.close()
    desk.wait_idle()
    raw = desk.spool_rows()[0].raw
    assert b"\r\n\r\nbody\r\n.dot line\r\n" in raw
    assert b"\n" not in raw.replace(b"\r\n", b"")
