"""Mutations of real mail for the property test and the fuzz run.

A mutation is ``(operation, a, b)``: the name of an operation and two
non-negative integers it reads as positions, lengths or choices, taken
modulo what fits, so any tuple applies to any mail and shrinks well.
"""

from __future__ import annotations

import random

# Fragments that broke mail parsers before: end-of-data and boundary
# lines, nested comments, broken encoded-words, NUL, lone CR and LF,
# a header injection, a base64 switch and a long run without a line end.
FRAGMENTS = (
    b"\r\n.\r\n",
    b"\n.\n",
    b"(" * 300,
    b")" * 50,
    b"\r\n--boundary\r\n",
    b"\r\nContent-Type: multipart/mixed; boundary=boundary\r\n",
    b"\r\nContent-Type: message/rfc822\r\n\r\n",
    b"=?utf-8?b?////?=",
    b"=?utf-8?q?a=0D=0ABcc:_victim@example.net?=",
    b"\x00",
    b"\r",
    b"\n",
    b"\r\nContent-Transfer-Encoding: base64\r\n",
    b"A" * 5000,
    b"\r\nFrom: <<<@@@>>>\r\n",
    b"\r\nReferences: " + b"<x@y> " * 200 + b"\r\n",
    b"\xff\xfe\xfd",
    b"\r\n\r\n",
)
OPERATIONS = ("flip", "delete", "duplicate", "insert", "truncate", "shout", "bare_lf")


def mutate(raw: bytes, mutations: list[tuple[str, int, int]]) -> bytes:
    """Apply ``mutations`` to ``raw`` in order and return the result."""
    data = bytearray(raw)
    for operation, a, b in mutations:
        size = max(len(data), 1)
        start = a % size
        if operation == "flip":
            if data:
                data[start] = b % 256
        elif operation == "delete":
            del data[start : start + b % 200]
        elif operation == "duplicate":
            piece = data[start : start + b % 2000]
            data[start:start] = piece * (1 + b % 3)
        elif operation == "insert":
            data[start:start] = FRAGMENTS[b % len(FRAGMENTS)]
        elif operation == "truncate":
            del data[start:]
        elif operation == "shout":
            data[start : start + 200] = data[start : start + 200].upper()
        elif operation == "bare_lf":
            data[:] = data.replace(b"\r\n", b"\n")
    return bytes(data)


def random_mutations(rng: random.Random, count: int) -> list[tuple[str, int, int]]:
    return [
        (rng.choice(OPERATIONS), rng.randrange(10**6), rng.randrange(10**6))
        for _ in range(count)
    ]
