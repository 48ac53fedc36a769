"""The result type of reply trimming and the helpers that build it."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class TrimmedReply:
    """A reply body split into the author's text and the parts cut from it.

    Both fields have trailing spaces removed from every line and no blank lines
    at either end.
    """

    body: str
    """Only what the author wrote: no quoted original, attribution line,
    header block or signature."""

    removed: str
    """Everything that was cut, for the caller to store with the note so that
    nothing is lost when trimming is wrong. Cut parts are separated by a blank
    line."""


def tidy(text: str) -> str:
    """Strip trailing spaces from each line and blank lines from both ends."""
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[0]:
        lines.pop(0)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)


def join_parts(parts: Iterable[str]) -> str:
    """Join cut parts with a blank line between them, skipping empty ones."""
    tidied = (tidy(part) for part in parts)
    return "\n\n".join(part for part in tidied if part)


def split_by_mask(lines: Sequence[str], keep: Sequence[bool]) -> TrimmedReply:
    """Build a TrimmedReply from ``lines`` where ``keep[i]`` marks body lines.

    Each run of consecutive dropped lines becomes one part of ``removed``.
    """
    body = [line for line, kept in zip(lines, keep) if kept]
    runs: list[list[str]] = []
    previous_kept = True
    for line, kept in zip(lines, keep):
        if kept:
            previous_kept = True
            continue
        if previous_kept:
            runs.append([])
        runs[-1].append(line)
        previous_kept = False
    return TrimmedReply(
        body=tidy("\n".join(body)),
        removed=join_parts("\n".join(run) for run in runs),
    )
