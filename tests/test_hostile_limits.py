"""Limits checked before parsing, and the parse in a child process with a
time and memory limit: a hostile mail ends failed and the worker goes on."""

from __future__ import annotations

import os
import signal
import time

import pytest

from mailgate.parsing import LimitExceeded, MessageLimits, ParseError, check_message_limits
from mailgate.parsing.errors import ParserCrashed, ParseTimeout
from mailgate.sandbox import ParserPool, parse_spooled_mail
from mailgate.settings import load_settings
from store.models import SpoolState
from tests.harness import SUPPORT, Gateway
from tests.hostile.builders import mime_nesting_1000, mime_parts_50000, rfc822_nesting_30
from tests.mail import customer_mail

SMALL = MessageLimits(
    max_message_bytes=10_000, max_header_bytes=1_000, max_header_field_bytes=200,
    max_line_bytes=300, max_comment_depth=3, max_mime_depth=3, max_mime_parts=5,
    max_attachments=2, max_attachment_bytes=500,
)
HEAD = b"From: a@example.com\r\nSubject: s\r\n"


def multipart(parts: list[bytes], boundary: bytes = b"b") -> bytes:
    body = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return (
        HEAD + b'Content-Type: multipart/mixed; boundary="' + boundary + b'"\r\n\r\n'
        + body + b"--" + boundary + b"--\r\n"
    )


def attachment(name: str, size: int = 10) -> bytes:
    return (
        b'Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="'
        + name.encode() + b'"\r\n\r\n' + b"AAAAAAAAA\r\n" * (size // 10)
    )


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (HEAD + b"\r\n" + b"x\r\n" * 5000, "over the limit of 10000"),
        (HEAD + b"".join(b"X-F%d: v\r\n" % n for n in range(100)) + b"\r\nbody", "header block"),
        (HEAD + b"To: " + b"a@example.com,\r\n " * 20 + b"\r\n\r\nbody", "header field 'to'"),
        (HEAD + b"\r\n" + b"y" * 400 + b"\r\n", "a line is longer than 300"),
        (b"From: ((((x)))) <a@example.com>\r\n\r\nbody", "nests parentheses 4 deep"),
        (multipart([b"\r\n" + bytes([48 + n]) for n in range(6)]), "more than 5 MIME parts"),
        (multipart([attachment(f"f{n}") for n in range(3)]), "more than 2 attachments"),
        (multipart([attachment("big", 600)]), "a MIME part is"),
    ],
    ids=["message", "header-block", "header-field", "line", "comments", "parts", "attachments",
         "attachment-size"],
)
def test_limit_exceeded_names_limit(raw: bytes, message: str) -> None:
    with pytest.raises(LimitExceeded, match=message):
        check_message_limits(raw, SMALL)


def test_parentheses_in_subject_allowed() -> None:
    check_message_limits(b"Subject: ((((((x))))))\r\nFrom: a@example.com\r\n\r\nbody", SMALL)


def test_quoted_parentheses_not_comments() -> None:
    check_message_limits(b'From: "((((((x))))))" <a@example.com>\r\n\r\nbody', SMALL)


def test_nesting_counted_across_rfc822() -> None:
    inner = b'Content-Type: multipart/mixed; boundary="i"\r\n\r\n--i\r\n\r\ntext\r\n--i--'
    forwarded = b"Content-Type: message/rfc822\r\n\r\nSubject: fwd\r\n" + inner
    raw = multipart([forwarded])
    check_message_limits(raw, MessageLimits(max_mime_depth=3))
    with pytest.raises(LimitExceeded, match="nest deeper than 2"):
        check_message_limits(raw, MessageLimits(max_mime_depth=2))


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (mime_nesting_1000, "nest deeper than 20"),
        (rfc822_nesting_30, "nest deeper than 20"),
        (mime_parts_50000, "more than 500 MIME parts"),
    ],
)
def test_default_limits_stop_bombs_fast(build, message: str) -> None:
    raw = build()
    started = time.monotonic()
    with pytest.raises(LimitExceeded, match=message):
        check_message_limits(raw, MessageLimits())
    assert time.monotonic() - started < 2.0


def test_default_limits_pass_corpus(corpus_paths) -> None:
    for path in corpus_paths:
        check_message_limits(path.read_bytes(), MessageLimits())


@pytest.fixture(scope="module")
def corpus_paths():
    from tests.conftest import SHARED

    paths = sorted((SHARED / "corpus").glob("*/*.eml")) + sorted((SHARED / "cases").glob("*.eml"))
    if not paths:
        pytest.skip("the sample mail in ../shared is absent")
    return paths


def test_pool_times_out_and_recovers() -> None:
    pool = ParserPool(size=1, timeout_seconds=1.0, memory_limit_bytes=None)
    try:
        # Start the child first, so the timing below is the parse alone.
        pool.parse(customer_mail().as_bytes())
        started = time.monotonic()
        with pytest.raises(ParseTimeout, match="longer than 1 s"):
            pool.parse(mime_parts_50000())
        assert time.monotonic() - started < 5.0
        parsed = pool.parse(customer_mail().as_bytes())
        assert parsed.mail.subject == "Printer on floor 3 is jammed"
    finally:
        pool.close()


def test_pool_survives_dead_child() -> None:
    pool = ParserPool(size=1, timeout_seconds=10.0, memory_limit_bytes=None)
    try:
        pool.parse(customer_mail().as_bytes())
        child = pool._idle[0]
        os.kill(child.process.pid, signal.SIGKILL)
        child.process.join(5)
        parsed = pool.parse(customer_mail(subject="after").as_bytes())
        assert parsed.mail.subject == "after"
    finally:
        pool.close()


def test_memory_limit_stops_parse() -> None:
    # 16 MiB of address space is far too little for 50,000 parts.
    pool = ParserPool(size=1, timeout_seconds=30.0, memory_limit_bytes=16 * 1024 * 1024)
    try:
        with pytest.raises(ParseError) as caught:
            pool.parse(mime_parts_50000())
        assert isinstance(caught.value, ParserCrashed) or "MemoryError" in str(caught.value)
    finally:
        pool.close()


def test_parse_errors_come_back_named(tmp_path) -> None:
    settings = load_settings(home=tmp_path, worker_threads=1)
    with pytest.raises(ParseError, match="no header field"):
        parse_spooled_mail(b"\x00\x01 not a mail", settings)
    with pytest.raises(LimitExceeded, match="more than 500 MIME parts"):
        parse_spooled_mail(mime_parts_50000(), settings)


def test_slow_parse_fails_worker_continues(tmp_path) -> None:
    with Gateway.start(
        home=tmp_path / "desk", max_mime_parts=100_000, parse_timeout_seconds=1.0
    ) as desk:
        desk.add_queue()
        desk.send(mime_parts_50000(), "wide@example.com", [SUPPORT])
        desk.send(customer_mail(), "ana@example.com", [SUPPORT])
        desk.wait_idle()
        slow, normal = desk.spool_rows()
        assert slow.state == SpoolState.FAILED.value
        assert "parsing took longer than 1 s" in slow.error
        assert normal.state == SpoolState.PROCESSED.value
        assert len(desk.ticket_ids()) == 1


def test_recursion_error_fails_one_mail(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mailgate import pipeline

    def recurse(*args: object) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    with Gateway.start(home=tmp_path / "desk") as desk:
        desk.add_queue()
        monkeypatch.setattr(pipeline, "_new_ticket", recurse)
        desk.send(customer_mail(subject="first"), "ana@example.com", [SUPPORT])
        desk.wait_idle()
        monkeypatch.undo()
        desk.send(customer_mail(subject="second"), "ana@example.com", [SUPPORT])
        desk.wait_idle()
        first, second = desk.spool_rows()
        assert first.state == SpoolState.FAILED.value
        assert first.error == "RecursionError: maximum recursion depth exceeded"
        assert second.state == SpoolState.PROCESSED.value
