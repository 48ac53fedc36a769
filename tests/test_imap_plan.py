"""The IMAP reader's decisions that need no server."""

from __future__ import annotations

import random

import pytest

from mailgate.imap.plan import (
    FetchStep,
    envelope_sender,
    has_new_mail,
    plan_fetches,
    read_before_start_criteria,
    reconnect_delay,
    search_criteria,
    untagged_status,
)
from store.mailboxes import AfterSpool, AuthMethod, MailboxError, MailboxSpec, check_spec

MIB = 1024 * 1024


@pytest.mark.parametrize(
    ("sizes", "expected"),
    [
        ([], []),
        ([(1, 100), (2, 100), (3, 100)], [FetchStep((1, 2), ()), FetchStep((3,), ())]),
        # A byte budget of 1000 closes the step before the mail that overflows it.
        ([(1, 600), (2, 600), (3, 100)], [FetchStep((1,), ()), FetchStep((2, 3), ())]),
        # Larger than the budget but within the limit: fetched alone.
        ([(1, 100), (2, 5000), (3, 100)],
         [FetchStep((1,), ()), FetchStep((2,), ()), FetchStep((3,), ())]),
        # Over the limit: never fetched, kept in UID order with its step.
        ([(4, 100), (2, 20_000), (5, 100), (6, 100)],
         [FetchStep((4, 5), (2,)), FetchStep((6,), ())]),
        ([(7, 20_000)], [FetchStep((), (7,))]),
    ],
)
def test_plan_fetches_batches(sizes, expected) -> None:
    steps = plan_fetches(sizes, max_count=2, max_bytes=1000, max_message_bytes=10_000)
    assert steps == expected


def test_plan_fetches_keeps_uid_order() -> None:
    sizes = [(uid, 10 if uid % 7 else 50 * MIB) for uid in range(1, 101)]
    steps = plan_fetches(sizes, max_count=10, max_bytes=MIB, max_message_bytes=25 * MIB)
    order = [uid for step in steps for uid in step.uids]
    assert order == list(range(1, 101))
    assert sum(len(step.oversize) for step in steps) == 14
    assert all(len(step.fetch) <= 10 for step in steps)


def test_reconnect_delay_grows_to_cap() -> None:
    rng = random.Random(7)
    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 32.0), (9, 60.0), (40, 60.0)]:
        delays = [reconnect_delay(attempt, 1.0, 60.0, rng) for _ in range(50)]
        assert min(delays) >= ceiling / 2
        assert max(delays) <= ceiling


def test_search_criteria_after_last_uid() -> None:
    assert search_criteria(0) == ["UID", "1:*", "UNDELETED"]
    assert search_criteria(41) == ["UID", "42:*", "UNDELETED"]
    assert read_before_start_criteria(0, 10) == ["UID", "1:9", "SEEN"]
    assert read_before_start_criteria(8, 10) == ["UID", "9:9", "SEEN"]
    assert read_before_start_criteria(9, 10) is None
    assert read_before_start_criteria(0, 1) is None


def test_idle_responses_read() -> None:
    assert has_new_mail([(b"OK", b"Still here"), (3, b"EXISTS")])
    assert not has_new_mail([(b"OK", b"Still here"), (2, b"EXPUNGE"), (1, b"RECENT")])
    assert not has_new_mail([])
    bye = [(b"BYE", b"IMAP", b"session", b"state", b"is", b"inconsistent.")]
    assert untagged_status(bye, b"BYE") == "IMAP session state is inconsistent."
    assert untagged_status(bye, b"NO") is None
    assert untagged_status([(b"NO", b"Internal error occurred.")], b"NO") == "Internal error occurred."


@pytest.mark.parametrize(
    ("head", "sender"),
    [
        (b"Return-Path: <bounce+x@lists.example.com>\r\nFrom: a@example.com\r\n", "bounce+x@lists.example.com"),
        (b"Return-Path: <>\r\nFrom: MAILER-DAEMON@example.com\r\n", ""),
        (b"From: a@example.com\r\n", ""),
        # The delivering server puts its Return-Path first.
        (b"Return-Path: <first@example.com>\r\nReturn-Path: <second@example.com>\r\n", "first@example.com"),
        (b"Return-Path: <lf@example.com>\nFrom: a@example.com\n", "lf@example.com"),
    ],
)
def test_envelope_sender_from_return_path(head: bytes, sender: str) -> None:
    body = b"\r\n\r\nReturn-Path: <in-body@example.com>\r\n"
    assert envelope_sender(head + body) == sender


BASE = dict(name="Support", host="imap.example.org", port=993, username="support@example.org",
            queue_name="Support", password="secret")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"host": " "}, "--host is empty"),
        ({"port": 70000}, "--port 70000 is invalid"),
        ({"folders": ()}, "--folder is empty"),
        ({"password": None}, "password authentication needs --password"),
        ({"auth": AuthMethod.XOAUTH2, "password": None}, "--auth xoauth2 needs --token-command"),
        ({"after": AfterSpool.MOVE}, "--after move needs --move-to FOLDER"),
        ({"move_to": "Done"}, "--move-to is only used with --after move"),
        ({"after": AfterSpool.MOVE, "move_to": "INBOX"}, "--move-to INBOX is also a folder to read"),
    ],
)
def test_mailbox_spec_rejects_invalid(changes: dict, message: str) -> None:
    with pytest.raises(MailboxError, match=message):
        check_spec(MailboxSpec(**{**BASE, **changes}))


def test_mailbox_spec_accepts_xoauth2() -> None:
    check_spec(MailboxSpec(**{**BASE, "password": None, "auth": AuthMethod.XOAUTH2,
                              "token_command": "oauth2l fetch"}))
