"""Regular expressions of ``matches`` conditions, compiled with RE2.

RE2 (the google-re2 bindings) matches in time linear in the length of the
input and never backtracks, so no pattern an admin saves can stall
processing, whatever mail it meets. A time limit around Python's ``re``
would also stop a runaway pattern, but only after it had burnt that time
on every mail, for every rule. The price of RE2 is its syntax: no
backreferences and no look-around; a pattern that uses them is rejected
when its rule is saved, with RE2's message.
"""

from __future__ import annotations

from typing import Any

import re2

# RE2's memory budget per compiled pattern (its default is 8 MiB). A
# pattern that needs more is rejected when saved, so a rule set of
# thousands of patterns stays within a known bound.
MAX_PATTERN_MEMORY_BYTES = 2 * 1024 * 1024


class PatternError(ValueError):
    """Raised for a pattern RE2 cannot compile; the message is RE2's."""


def compile_pattern(pattern: str, *, case_sensitive: bool) -> Any:
    """Compile ``pattern`` with RE2 for searching UTF-8 bytes or text.

    Raises:
        PatternError: the pattern is invalid, uses syntax RE2 lacks
            (backreferences, look-around) or needs more memory than
            MAX_PATTERN_MEMORY_BYTES.
    """
    options = re2.Options()
    options.case_sensitive = case_sensitive
    options.max_mem = MAX_PATTERN_MEMORY_BYTES
    # RE2 would otherwise write each rejected pattern to stderr itself.
    options.log_errors = False
    try:
        return re2.compile(pattern, options)
    except re2.error as error:
        detail = error.args[0] if error.args else str(error)
        if isinstance(detail, bytes):
            detail = detail.decode("utf-8", "replace")
        raise PatternError(detail) from None
