"""Hostile mails too large to keep as files, built by name."""

from __future__ import annotations

from collections.abc import Callable

HEAD = (
    "From: {sender}\r\nTo: support@support.example.org\r\n"
    "Date: Mon, 02 Mar 2026 10:00:00 +0000\r\nMessage-ID: <{name}@hostile.example.com>\r\n"
)


def _head(name: str, sender: str) -> bytes:
    return HEAD.format(name=name, sender=sender).encode()


def subject_200kb_folded() -> bytes:
    words = ["word"] * (200 * 1024 // 5)
    lines = [" ".join(words[start : start + 15]) for start in range(0, len(words), 15)]
    subject = "Subject: " + "\r\n ".join(lines) + "\r\n"
    return _head("subject-200kb-folded", "long1@example.com") + subject.encode() + b"\r\nbody\r\n"


def subject_200kb_one_line() -> bytes:
    subject = b"Subject: " + b"word " * (200 * 1024 // 5) + b"\r\n"
    return _head("subject-200kb-one-line", "long2@example.com") + subject + b"\r\nbody\r\n"


def header_block_300kb() -> bytes:
    fields = b"".join(b"X-Filler-%d: %s\r\n" % (number, b"f" * 200) for number in range(1500))
    return _head("header-block-300kb", "long3@example.com") + b"Subject: many fields\r\n" + fields + b"\r\nbody\r\n"


def body_line_100kb() -> bytes:
    return _head("body-line-100kb", "long4@example.com") + b"Subject: long line\r\n\r\n" + b"x" * (100 * 1024) + b"\r\n"


def mime_nesting_1000() -> bytes:
    parts = [_head("mime-nesting-1000", "deep1@example.com"), b"Subject: deep\r\nMIME-Version: 1.0\r\n"]
    for level in range(1000):
        parts.append(b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (level, level))
    parts.append(b"Content-Type: text/plain\r\n\r\nthe innermost part\r\n")
    parts.extend(b"--b%d--\r\n" % level for level in reversed(range(1000)))
    return b"".join(parts)


def rfc822_nesting_30() -> bytes:
    parts = [_head("rfc822-nesting-30", "deep2@example.com"), b"Subject: forwarded 30 times\r\nMIME-Version: 1.0\r\n"]
    for level in range(30):
        parts.append(
            b'Content-Type: multipart/mixed; boundary="f%d"\r\n\r\n--f%d\r\n'
            b"Content-Type: message/rfc822\r\n\r\nSubject: Fwd %d\r\n" % (level, level, level)
        )
    parts.append(b"Content-Type: text/plain\r\n\r\noriginal\r\n")
    parts.extend(b"--f%d--\r\n" % level for level in reversed(range(30)))
    return b"".join(parts)


def mime_parts_50000() -> bytes:
    parts = [
        _head("mime-parts-50000", "wide1@example.com"),
        b'Subject: wide\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="w"\r\n\r\n',
    ]
    parts.extend(b"--w\r\n\r\n%d\r\n" % number for number in range(50_000))
    parts.append(b"--w--\r\n")
    return b"".join(parts)


def attachments_101() -> bytes:
    parts = [
        _head("attachments-101", "wide2@example.com"),
        b'Subject: attachments\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="a"\r\n\r\n',
        b"--a\r\nContent-Type: text/plain\r\n\r\nsee the files\r\n",
    ]
    parts.extend(
        b"--a\r\nContent-Type: application/octet-stream\r\n"
        b'Content-Disposition: attachment; filename="file%d.bin"\r\n\r\nAAAA\r\n' % number
        for number in range(101)
    )
    parts.append(b"--a--\r\n")
    return b"".join(parts)


BUILDERS: dict[str, Callable[[], bytes]] = {
    "subject-200kb-folded": subject_200kb_folded,
    "subject-200kb-one-line": subject_200kb_one_line,
    "header-block-300kb": header_block_300kb,
    "body-line-100kb": body_line_100kb,
    "mime-nesting-1000": mime_nesting_1000,
    "rfc822-nesting-30": rfc822_nesting_30,
    "mime-parts-50000": mime_parts_50000,
    "attachments-101": attachments_101,
}
