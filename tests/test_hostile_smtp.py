"""The SMTP listener's budgets: connections, commands, session time, free
disk, its handling of bare line ends, and its reading of MAIL and RCPT
addresses."""

from __future__ import annotations

import socket
import sqlite3
import time
from types import SimpleNamespace
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from aiosmtpd.smtp import SMTP
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.engine import make_url

from mailgate.listeners.data import normalize_line_ends
from mailgate.listeners.smtp import parse_simple_address
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


def test_disconnect_before_reply_spools_later_mail(start_desk) -> None:
    desk = start_desk()
    abandoned, _ = connect(desk)
    abandoned.command(b"EHLO client.example.com")
    assert abandoned.command(b"MAIL FROM:<ana@example.com>").startswith("250")
    assert abandoned.command(f"RCPT TO:<{SUPPORT}>".encode()).startswith("250")
    assert abandoned.command(b"DATA").startswith("354")
    # Holding SQLite's write lock keeps the first mail uncommitted until its
    # client is gone, and aiosmtpd cancels that session's handler.
    database = make_url(desk.app.settings.resolved_database_url).database
    blocker = sqlite3.connect(str(database), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        abandoned.socket.sendall(MAIL.replace(b"{number}", b"1") + b".\r\n")
        abandoned.close()
        time.sleep(0.5)
    finally:
        blocker.execute("COMMIT")
        blocker.close()
    client, _ = connect(desk)
    client.command(b"EHLO client.example.com")
    assert client.send_mail(MAIL.replace(b"{number}", b"2")).startswith("250")
    client.close()
    assert len(desk.spool_rows()) == 2


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


def aiosmtpd_getaddr(argument: str) -> tuple[str | None, str | None]:
    return SMTP._getaddr(SimpleNamespace(local_part_limit=0), argument)  # type: ignore[arg-type]


ADDRESS_PIECES = st.sampled_from(
    ["<", ">", "@", ".", " ", "\t", "(", ")", '"', "\\", "[", "]", ",", ":", ";", "=",
     "a", "Z", "0", "-", "+", "_", "!", "#", "~", "\u00e9", "\r", "\n", "ana@example.com",
     "<ana@example.com>", " SIZE=100", " BODY=8BITMIME"]
)


@given(st.lists(ADDRESS_PIECES, max_size=14).map("".join))
def test_simple_address_matches_aiosmtpd(argument: str) -> None:
    simple = parse_simple_address(argument)
    if simple is not None:
        assert simple == aiosmtpd_getaddr(argument)


@pytest.mark.parametrize(
    ("argument", "expected"),
    [
        ("<ana@example.com>", ("ana@example.com", "")),
        ("<Ana.B+tag@Sub.Example.ORG> SIZE=100", ("Ana.B+tag@Sub.Example.ORG", "SIZE=100")),
        ("<ana@example.com> \tSIZE=1 BODY=8BITMIME", ("ana@example.com", "SIZE=1 BODY=8BITMIME")),
        ("<ana@example.com>  ", ("ana@example.com", "")),
    ],
)
def test_simple_address_read(argument: str, expected: tuple[str, str]) -> None:
    assert parse_simple_address(argument) == expected
    assert aiosmtpd_getaddr(argument) == expected


@pytest.mark.parametrize(
    "argument",
    [
        '<"ana smith"@example.com>',
        "<@relay.example.net:ana@example.com>",
        "<ana@[192.0.2.1]>",
        "<ana@example.com> (comment) SIZE=1",
        "<ana..b@example.com>",
        "<ana@example.com>x",
        " <ana@example.com>",
        "ana@example.com",
        "<>",
        "<ana\u00e9@example.com>",
    ],
)
def test_other_address_forms_left_to_aiosmtpd(argument: str) -> None:
    assert parse_simple_address(argument) is None
